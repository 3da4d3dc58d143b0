#!/bin/sh
# paper/build.sh [--fast] -- run the paper's experiments, draw its figures
# and build paper/ufm.pdf (--fast: shorter runs, paper/ufm-fast.pdf).
#
# Called by `make paper` / `make paper-fast` from the top of the source tree
# (UFM and UFM_BENCH name the programs; defaults ./ufm, ./bench/ufm-bench).
#
# Reuse: each experiment runs into paper/runs/NAME (paper/runs-fast/NAME)
# and, once finished, leaves NAME.cmd holding the command that made it. A
# later build whose command is the same and whose experiment file is older
# than NAME.cmd only redraws the figures; an interrupted sweep is continued
# (ufm runs only its unfinished points), an interrupted run resumes from its
# checkpoint; anything else reruns from the start. The benchmark table is
# reused while bench.md exists (delete it to measure again).
#
# Output: paper/runs*/ (runs and figures), paper/generated*/ (numbers.tex,
# table-theory.tex, table-bench.tex, paths.tex, build.log) and the PDF.
set -eu
cd "$(dirname "$0")/.."

MODE=full
case "${1:-}" in
  --fast) MODE=fast ;;
  "") ;;
  *) echo "usage: paper/build.sh [--fast]" >&2; exit 2 ;;
esac
UFM=${UFM:-./ufm}
UFM_BENCH=${UFM_BENCH:-./bench/ufm-bench}
if [ "$MODE" = fast ]; then
  RUNS=paper/runs-fast GEN=paper/generated-fast JOB=ufm-fast
else
  RUNS=paper/runs GEN=paper/generated JOB=ufm
fi

# ------------------------------------------------------------------ tools
missing=""
[ -x "$UFM" ] || missing="$missing ufm(run ./setup.sh)"
[ -x "$UFM_BENCH" ] || missing="$missing bench/ufm-bench(make bench/ufm-bench)"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot(gnuplot-nox)"
command -v pdflatex >/dev/null 2>&1 || missing="$missing pdflatex(texlive-latex-base)"
for sty in booktabs.sty caption.sty geometry.sty; do
  command -v kpsewhich >/dev/null 2>&1 && [ -z "$(kpsewhich $sty 2>/dev/null)" ] &&
    missing="$missing $sty(texlive-latex-recommended)"
done
fc-list 2>/dev/null | grep -q 'Latin Modern Roman' || missing="$missing Latin-Modern-font(fonts-lmodern)"
if [ -n "$missing" ]; then
  echo "make paper: missing:$missing" >&2
  echo "make paper: install them with: ./setup.sh --paper" >&2
  exit 2
fi

mkdir -p "$RUNS" "$GEN"
LOG=$GEN/build.log
: >"$LOG"
say() { echo "paper: $*" | tee -a "$LOG" >&2; }
T0=$(date +%s)

# --------------------------------------------------------------- the runs
# experiment NAME WIDTH FAST-OVERRIDES: run experiments/NAME.ini into $RUNS/NAME
# with paper figures of width WIDTH (column or page).
experiment() {
  name=$1 width=$2 fast=$3
  ini=experiments/$name.ini out=$RUNS/$name stamp=$RUNS/$name.cmd
  set -- "$ini" "out=$out" figure_style=paper "figure_width=$width"
  if [ "$MODE" = fast ] && [ -n "$fast" ]; then
    # word splitting on purpose: the overrides contain no spaces
    # shellcheck disable=SC2086
    set -- "$@" $fast
  fi
  cmd="ufm run $*"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$cmd" ] && [ "$stamp" -nt "$ini" ]; then
    say "$name: reusing $out (finished: $cmd)"
    "$UFM" plot "$out" figure_style=paper "figure_width=$width" >>"$LOG" 2>&1
    return 0
  fi
  rm -f "$stamp"
  t=$(date +%s)
  if [ -d "$out/checkpoint" ] && [ -f "$out/config.ini" ] && "$UFM" run -q --resume "$out" >>"$LOG" 2>&1; then
    say "$name: resumed from its checkpoint"
  elif [ -f "$out/sweep.ini" ] && "$UFM" run -q "$@" >>"$LOG" 2>&1; then
    say "$name: continued the sweep"
  else
    say "$name: $cmd"
    "$UFM" run -q --force "$@" >>"$LOG" 2>&1 || { say "$name: ufm run failed (see $LOG)"; exit 1; }
  fi
  echo "$cmd" >"$stamp"
  say "$name: done in $(($(date +%s) - t)) s"
}

experiment etf-ce page "iterations=3000"
experiment mse-bias page "iterations=3000"
experiment sweep-lambda page "iterations=2000 seeds=1"
experiment sweep-C-p page "iterations=1500 classes=2,4,8,16 dim=2,4,8,16,32"
experiment minority-collapse page "iterations=2500 ratio=log:1:100:5"
experiment seli page "iterations=5000"
experiment max-margin page ""
experiment rate column ""

# the figures the sweeps do not draw themselves
for p in p0000 p0001; do
  "$UFM" plot "$RUNS/mse-bias/$p" figure_style=paper figure_width=column >>"$LOG" 2>&1
done
RATE_OUT=$(gnuplot -e "dir='$RUNS/rate'; title='rate'; figstyle='paper'; figwidth=3.4" plots/rate.gp 2>&1)
echo "$RATE_OUT" >>"$LOG"

# ---------------------------------------------------------------- numbers
# val FILE NAME: the value of NAME in a name<TAB>value file ("nan" if absent)
val() { awk -F '\t' -v k="$2" '$1 == k { v = $2 } END { print (v == "" ? "nan" : v) }' "$1"; }
# tex X: a number for LaTeX, 4 significant digits, powers of ten as 10^{k}
tex() {
  awk -v x="$1" 'BEGIN {
    if (x == "nan" || x == "") { print "--"; exit }
    x += 0
    if (x == 0) { print "$0$"; exit }
    a = x < 0 ? -x : x
    if (a >= 1e-3 && a < 1e5) { printf "$%.5g$\n", x; exit }
    e = int(log(a) / log(10)); if (10 ^ e > a) e--
    m = x / 10 ^ e
    if (m >= 9.9995 || m <= -9.9995) { m /= 10; e++ }
    printf "$%.3f\\times 10^{%d}$\n", m, e
  }'
}
# absval X: |X| ("nan" stays)
absval() { awk -v x="$1" 'BEGIN { if (x == "nan" || x == "") print "nan"; else { x += 0; printf "%.17g\n", (x < 0 ? -x : x) } }'; }
# point SWEEPDIR KEY: the directory of the first point whose KEY is largest
point_max() {
  awk -F '\t' -v k="$2" 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == k) c = i; if ($i == "dir") d = i } next }
    best == "" || $c + 0 > best + 0 { best = $c; dir = $d } END { print dir }' "$1/results.tsv"
}

R=$RUNS
# macro NAME VALUE: a LaTeX \newcommand (printf: dash's echo would expand \t)
macro() { printf '\\newcommand{\\%s}{%s}\n' "$1" "$2"; }
{
  echo "% generated by paper/build.sh ($MODE): do not edit"
  macro runsdir "${R#paper/}/"
  macro buildmode "$MODE"
} >"$GEN/paths.tex"

NUM=$GEN/numbers.tex
{
  echo "% generated by paper/build.sh ($MODE) from the runs' summary.tsv: do not edit"
  d=$R/etf-ce
  macro ceIters "$(val $d/summary.tsv iterations)"
  macro ceNCone "$(tex "$(val $d/summary.tsv nc1)")"
  macro ceETFW "$(tex "$(val $d/summary.tsv etf_W)")"
  macro ceETFM "$(tex "$(val $d/summary.tsv etf_M)")"
  macro ceNCthree "$(tex "$(val $d/summary.tsv nc3)")"
  macro ceNCfour "$(tex "$(val $d/summary.tsv nc4)")"
  macro ceLossGap "$(tex "$(absval "$(val $d/summary.tsv loss_gap)")")"
  d=$R/mse-bias
  macro mseETFWbias "$(tex "$(val $d/p0000/summary.tsv etf_W)")"
  macro mseETFWnobias "$(tex "$(val $d/p0001/summary.tsv etf_W)")"
  macro mseMaxangleNobias "$(tex "$(val $d/p0001/summary.tsv maxangle_W)")"
  d=$R/max-margin
  macro mmNmargin "$(tex "$(val $d/summary.tsv nmargin)")"
  macro mmIters "$(val $d/summary.tsv iterations)"
  d=$R/seli/p0001
  nuc=$("$UFM" seli "$(val $d/summary.tsv counts)" | awk -F '\t' '$1 == "nmargin" { print $2 }')
  macro seliNmargin "$(tex "$(val $d/summary.tsv nmargin)")"
  macro seliNmarginOpt "$(tex "$nuc")"
  macro seliW "$(tex "$(val $d/summary.tsv seli_W)")"
  macro seliETFW "$(tex "$(val $d/summary.tsv etf_W)")"
  slope=$(echo "$RATE_OUT" | sed -n 's/.*ratio \([0-9.]*\).*/\1/p' | head -1)
  macro rateRatio "${slope:-?}"
  macro buildSeconds "BUILDSECONDS"
} >"$NUM.tmp"

# ------------------------------------------------- table: simulation vs theory
# row LABEL SUMMARY NAME [PREDICTED]: simulated NAME, its prediction
# (NAME_theory, or PREDICTED) and the relative gap (absolute if predicted 0)
row() {
  sim=$(val "$2" "$3")
  th=${4:-$(val "$2" "$3_theory")}
  gap=$(awk -v s="$sim" -v t="$th" 'BEGIN { if (t == "nan" || s == "nan") { print "nan"; exit }
    s += 0; t += 0; g = s - t; if (t != 0) g /= (t < 0 ? -t : t); print (g < 0 ? -g : g) }')
  printf '%s & %s & %s & %s \\\\\n' "$1" "$(tex "$sim")" "$(tex "$th")" "$(tex "$gap")"
}
TAB=$GEN/table-theory.tex
{
  echo "% generated by paper/build.sh ($MODE): do not edit"
  printf '%s\n' '\begin{tabular}{@{}lrrr@{}}'
  printf '%s\n' '\toprule'
  printf '%s\n' 'quantity & simulated & predicted & gap \\'
  printf '%s\n' '\midrule'
  d=$R/etf-ce/summary.tsv
  row "CE: loss \\(\\mathcal L\\)" $d loss
  row "CE: objective \\(F\\)" $d objective
  row "CE: \\(\\|W\\|_F\\)" $d norm_W
  row "CE: \\(\\|H\\|_F\\)" $d norm_H
  row "CE: margin" $d margin
  d=$R/mse-bias/p0000/summary.tsv
  row "MSE, bias: objective" $d objective
  row "MSE, bias: \\(\\|W\\|_F\\)" $d norm_W
  row "MSE, bias: \\(\\|b\\|\\)" $d norm_b
  d=$R/mse-bias/p0001/summary.tsv
  row "MSE, no bias: objective" $d objective
  row "MSE, no bias: \\(\\|W\\|_F\\)" $d norm_W
  lp=$(point_max $R/sweep-lambda lambda_W)
  row "CE, \\(\\lambda_W{=}1\\): \\(\\|W\\|_F\\) (trivial)" $R/sweep-lambda/$lp/summary.tsv norm_W
  row "max margin: normalised margin" $R/max-margin/summary.tsv nmargin
  row "SELI, \\(R{=}10\\): normalised margin" $R/seli/p0001/summary.tsv nmargin "$nuc"
  printf '%s\n' '\bottomrule'
  printf '%s\n' '\end{tabular}'
} >"$TAB"

# ---------------------------------------------------- table: performance
BENCH=$GEN/bench.md
if [ -s "$BENCH" ]; then
  say "bench: reusing $BENCH"
else
  if [ "$MODE" = fast ]; then set -- --sizes S --reps 2 --time 0.2; else set -- --reps 3; fi
  say "bench: $UFM_BENCH $*"
  "$UFM_BENCH" "$@" --ufm "$UFM" >"$BENCH.tmp" 2>>"$LOG" || { say "bench failed (see $LOG)"; exit 1; }
  mv "$BENCH.tmp" "$BENCH"
fi
{
  echo "% generated by paper/build.sh ($MODE) from $BENCH: do not edit"
  printf '%s\n' '\begin{tabular}{@{}lrrrrrrrrrrr@{}}'
  printf '%s\n' '\toprule'
  printf '%s\n' 'size & $C$ & $p$ & $N$ & ms/step & 3 dgemm ms & step/dgemm & metrics/step'
  printf '%s\n' '  & NumPy ms & PyTorch ms & vs NumPy & vs PyTorch \\'
  printf '%s\n' '\midrule'
  awk -F '|' '/^\| [SML] \|/ {
      for (i = 2; i <= NF; i++) { gsub(/^ +| +$/, "", $i); sub(/x$/, "", $i) }
      printf "%s & %s & %s & %s & %s & %s & %s & %s & %s & %s & %s & %s \\\\\n", \
             $2, $3, $4, $5, $6, $7, $8, $10, $11, $12, $13, $14
    }' "$BENCH"
  printf '%s\n' '\bottomrule'
  printf '%s\n' '\end{tabular}'
} >"$GEN/table-bench.tex"
awk '/^Peak memory/ { sub(/\r$/, ""); print }' "$BENCH" |
  sed 's/%/\\%/g; s/`\([^`]*\)`/\\texttt{\1}/g' >"$GEN/bench-memory.tex"
grep -q '&' "$GEN/table-bench.tex" || { say "bench: no table rows in $BENCH"; exit 1; }

# ------------------------------------------------------------------ LaTeX
sed "s/BUILDSECONDS/$(($(date +%s) - T0))/" "$NUM.tmp" >"$NUM"
rm -f "$NUM.tmp"
cd paper
for pass in 1 2; do
  pdflatex -interaction=nonstopmode -halt-on-error -jobname="$JOB" \
    "\\def\\gendir{${GEN#paper/}/}\\input{ufm.tex}" >"${GEN#paper/}/latex.log" 2>&1 ||
    { cd ..; say "pdflatex failed: see $GEN/latex.log and paper/$JOB.log"; tail -20 "paper/$JOB.log" >&2; exit 1; }
done
cd ..

# ------------------------------------------------------------------ check
# every figure the paper names was included (pdflatex lists each file it
# embeds in its log), and the PDF has as many captions as figures
nfig=0
for f in $(sed -n 's/^[^%]*\\ufmfig[a-z]*{\([^}]*\)}.*/\1/p' paper/ufm.tex); do
  nfig=$((nfig + 1))
  [ -f "$RUNS/$f.pdf" ] || { say "check: missing figure $RUNS/$f.pdf"; exit 1; }
  tr -d '\n' <"paper/$JOB.log" | grep -q "${RUNS#paper/}/$f.pdf" ||
    { say "check: $RUNS/$f.pdf is not in the PDF (paper/$JOB.log)"; exit 1; }
done
if command -v pdftotext >/dev/null 2>&1; then
  ncap=$(pdftotext "paper/$JOB.pdf" - | grep -c '^Figure [0-9]*:' || true)
  [ "$ncap" -ge "$nfig" ] || { say "check: $ncap figure captions in the PDF, $nfig figures"; exit 1; }
  pages=$(pdfinfo "paper/$JOB.pdf" | awk '/^Pages:/ { print $2 }')
  say "check: paper/$JOB.pdf: $pages pages, $nfig figures embedded, $ncap captions"
else
  say "check: paper/$JOB.pdf: $nfig figures embedded (pdftotext absent: captions not counted)"
fi
say "paper/$JOB.pdf built in $(($(date +%s) - T0)) s"
