#!/bin/sh
# cli.sh -- the command line of SPEC sections 3-5, driven from outside:
# exit statuses, error messages, the files of a run directory, reruns,
# config.ini reloads, init_from, divergence, plot and etf.
#
# Needs UFM (absolute path of the ufm binary); make check sets it, with
# UFM_PLOTDIR. Everything happens in a mktemp -d directory (also the working
# directory, so even a default out=runs/NAME lands there), removed at exit.
# Prints one line per check and ends with "cli: N passed, M failed".
set -eu

: "${UFM:?set UFM to the ufm binary}"
case $UFM in /*) ;; *) UFM=$(pwd)/$UFM ;; esac

T=$(mktemp -d "${TMPDIR:-/tmp}/ufm-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 130' HUP INT TERM
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$T"

# shellcheck source=tests/checks.sh
. "$HERE/checks.sh"
# first N bytes of a file as hex
magic() { head -c "$2" "$1" | od -An -tx1 | tr -d ' \n'; }
# the checksum of every regular file in a directory, sorted by name
sums() { (cd "$1" && for f in *; do [ -f "$f" ] && cksum "$f"; done) | sort; }
have_gnuplot=0
if command -v gnuplot >/dev/null 2>&1; then have_gnuplot=1; fi

# ----------------------------------------------------------- version and help
echo "# --version, --help, usage errors"
run "$UFM" --version
check "--version exits 0" is_rc 0
check "--version names GSL" grep -q '^GSL [0-9]' "$T/out"
check "--version has a BLAS line" grep -q '^BLAS .' "$T/out"
check "--version reports a thread count" grep -Eq '[0-9]+ threads?' "$T/out"
LDCONFIG=
for l in ldconfig /sbin/ldconfig /usr/sbin/ldconfig; do
  if command -v "$l" >/dev/null 2>&1; then LDCONFIG=$l; break; fi
done
if [ -n "$LDCONFIG" ] && "$LDCONFIG" -p 2>/dev/null | grep -q libopenblas; then
  check "--version: BLAS is not gslcblas (libopenblas is installed)" \
    sh -c "grep '^BLAS' '$T/out' | grep -vqi gslcblas"
  # OpenBLAS 0.3.21 takes CPUs it does not know for SSE3 machines (Prescott);
  # ufm then re-executes itself with the kernels the CPU can run (version.h)
  SSE_CORES='Prescott|Core2|Penryn|Dunnington|Nehalem|Atom'
  if [ -z "${OPENBLAS_CORETYPE+set}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null \
     && grep -qw fma /proc/cpuinfo; then
    check "--version: an AVX2 CPU gets AVX2 or AVX-512 kernels, not SSE ones" \
      sh -c "grep '^BLAS' '$T/out' | grep -Evq '$SSE_CORES'"
  fi
  run env OPENBLAS_CORETYPE=Prescott "$UFM" --version
  check "OPENBLAS_CORETYPE set by the user is kept" grep -q '^BLAS .*Prescott' "$T/out"
  check "--version says who chose the kernels" grep -q 'kernels set by OPENBLAS_CORETYPE=Prescott' "$T/out"
  if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then
    check "--version names the faster kernels the user's OPENBLAS_CORETYPE keeps out" \
      grep -Eq 'this CPU runs (SkylakeX|Haswell), which ufm chooses when OPENBLAS_CORETYPE is unset' "$T/out"
  fi
  if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    run env OPENBLAS_CORETYPE=SkylakeX "$UFM" --version
    check "--version: no such note when the user's kernels are the best ufm knows" \
      sh -c "grep -q 'kernels set by OPENBLAS_CORETYPE=SkylakeX' '$T/out' && ! grep -q 'this CPU runs' '$T/out'"
  fi
  # other kernels, other rounding, the same run to 1e-9
  run env OPENBLAS_CORETYPE=Prescott "$UFM" run -q --no-plot classes=40 dim=48 n=4 iterations=200 out=kp
  run "$UFM" run -q --no-plot --force classes=40 dim=48 n=4 iterations=200 out=ka
  check "runs on the SSE3 and on the chosen kernels agree to 1e-9" awk -F'\t' '
    NR == FNR { if ($1 == "loss" || $1 == "etf_W") v[$1] = $2; next }
    ($1 in v) { d = $2 - v[$1]; if (d < 0) d = -d; s = v[$1] < 0 ? -v[$1] : v[$1];
                if (!(d <= 1e-9 * (s > 1 ? s : 1))) bad = 1; n++ }
    END { exit bad || n != 2 }' kp/summary.tsv ka/summary.tsv
else
  echo "note - libopenblas not installed (or no ldconfig): BLAS name not checked"
fi
run "$UFM" --threads 1 --version
check "--threads 1 --version exits 0" is_rc 0
check "--threads 1 --version reports 1 thread" grep -Eq '(^|[^0-9])1 threads?([^0-9]|$)' "$T/out"
run "$UFM" --threads=1 --version
check "--threads=1 --version reports 1 thread" grep -Eq '(^|[^0-9])1 threads?([^0-9]|$)' "$T/out"
for c in "" run plot etf theory; do
  # shellcheck disable=SC2086
  run "$UFM" $c --help
  check "ufm $c --help exits 0 with text on stdout" sh -c "[ $rc -eq 0 ] && [ -s '$T/out' ]"
done
run "$UFM" run --help
check "ufm run --help lists the keys" sh -c "grep -q 'lambda_W' '$T/out' && grep -q 'init_from' '$T/out'"
run "$UFM" frobnicate
check "unknown command exits 2" is_rc 2
run "$UFM" --frobnicate
check "unknown option exits 2" is_rc 2
run "$UFM" run --frobnicate
check "unknown run option exits 2" is_rc 2
run "$UFM" --threads 0 --version
check "--threads 0 exits 2" is_rc 2
run "$UFM"
check "no command exits 2" is_rc 2
check "usage errors wrote no run directory" sh -c "[ ! -e '$T/runs' ]"

# ---------------------------------------------------------- bad experiment files
echo "# bad experiment files: exit 2, FILE:LINE: key:, nothing written"
mkdir "$T/bad"
# bad_file NAME LINE KEY TEXT: TEXT (with out= on line 2) must be refused at LINE.
bad_file() {
  f=$T/bad/$1.ini
  o=$T/o-$1
  printf '# a bad experiment: %s\nout = %s\n%s' "$1" "$o" "$4" >"$f"
  run "$UFM" run --quiet "$f"
  check "$1: exit 2" is_rc 2
  check "$1: stderr says $f:$2: $3:" grep -qF "$f:$2: $3: " "$T/err"
  check "$1: nothing on stdout" sh -c "[ ! -s '$T/out' ]"
  check "$1: no output directory" sh -c "[ ! -e '$o' ]"
}
bad_file unknown-key 4 widht 'classes = 4
widht = 3
'
bad_file malformed 6 lr 'classes = 4

# step size
lr = 1e
'
bad_file classes-1 3 classes 'classes = 1
'
bad_file lr-0 4 lr 'dim = 8
lr = 0
'
bad_file negative-lambda 4 lambda_W 'dim = 8
lambda_W = -2.385e-3
'
# a good file with a bad override on the command line
f=$T/bad/good.ini
printf 'out = %s\nclasses = 4\ndim = 8\nn = 5\niterations = 3\n' "$T/o-override" >"$f"
run "$UFM" run --quiet "$f" lr=abc
check "bad override lr=abc: exit 2" is_rc 2
check "bad override: message starts with 'command line' and names lr" \
  grep -q '^ufm: command line (argument [0-9]*): lr: ' "$T/err"
check "bad override: no output directory" sh -c "[ ! -e '$T/o-override' ]"
run "$UFM" run --quiet "$T/bad/no-such-file.ini" out="$T/o-nofile"
check "nonexistent experiment file: exit 2" is_rc 2
check "nonexistent experiment file: named on stderr" grep -qF "$T/bad/no-such-file.ini" "$T/err"
check "nonexistent experiment file: no output directory" sh -c "[ ! -e '$T/o-nofile' ]"

# ------------------------------------------------------------------ a real run
echo "# a small run and its run directory"
R=$T/r
SMALL="classes=4 dim=8 n=5"
# shellcheck disable=SC2086
run "$UFM" run --quiet out="$R" $SMALL iterations=300 log_points=20
check "run exits 0" is_rc 0
check "run --quiet prints nothing" sh -c "[ ! -s '$T/out' ] && [ ! -s '$T/err' ]"
for f in config.ini metrics.tsv summary.tsv W.npy H.npy b.npy labels.npy; do
  check "run wrote $f" test -s "$R/$f"
done
check "metrics.tsv header starts iter<TAB>loss<TAB>objective" \
  sh -c "head -n 1 '$R/metrics.tsv' | grep -q '^iter${tab}loss${tab}objective'"
check "metrics.tsv has rows for iterations 0 and 300" \
  sh -c "cut -f 1 '$R/metrics.tsv' | grep -qx 0 && cut -f 1 '$R/metrics.tsv' | grep -qx 300"
check "summary.tsv: status finished" grep -qx "status${tab}finished" "$R/summary.tsv"
for f in W H b labels; do
  check "$f.npy: magic \\x93NUMPY, version 1.0" [ "$(magic "$R/$f.npy" 8)" = 934e554d50590100 ]
done
check "W.npy: <f8, shape (4, 8)" sh -c "head -c 128 '$R/W.npy' | grep -q \"'<f8'.*'shape': (4, 8)\""
check "H.npy: <f8, shape (8, 20)" sh -c "head -c 128 '$R/H.npy' | grep -q \"'<f8'.*'shape': (8, 20)\""
check "b.npy: <f8, shape (4,)" sh -c "head -c 128 '$R/b.npy' | grep -q \"'<f8'.*'shape': (4,)\""
check "labels.npy: <i4, shape (20,)" sh -c "head -c 128 '$R/labels.npy' | grep -q \"'<i4'.*'shape': (20,)\""
check "W.npy size: 128-byte header + 4*8 doubles" [ "$(wc -c <"$R/W.npy")" -eq $((128 + 4 * 8 * 8)) ]
if [ "$have_gnuplot" = 1 ]; then
  check "dashboard.png is a PNG" [ "$(magic "$R/dashboard.png" 8)" = 89504e470d0a1a0a ]
  check "dashboard.pdf is a PDF" [ "$(head -c 4 "$R/dashboard.pdf")" = "%PDF" ]
  check "grams.png is a PNG" [ "$(magic "$R/grams.png" 8)" = 89504e470d0a1a0a ]
  # above 300 classes the heat maps show one class in ceil(C/300), read as bytes
  run "$UFM" run --quiet out="$T/rc301" classes=301 dim=4 n=1 iterations=2 log_points=2
  check "C = 301: the run exits 0, quietly" sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ]"
  check "C = 301: grams.png and grams.pdf drawn from grams.npy" \
    sh -c "[ \"\$(od -An -tx1 -N8 '$T/rc301/grams.png' | tr -d ' \n')\" = 89504e470d0a1a0a ] && [ \"\$(head -c 4 '$T/rc301/grams.pdf')\" = '%PDF' ]"
  # grams_classes: grams.npy keeps every K-th class above it, none at 0
  run "$UFM" run --quiet out="$T/rg100" classes=301 dim=4 n=1 iterations=2 log_points=2 grams_classes=100
  check "grams_classes=100 at C = 301: exits 0 quietly, summary.tsv says grams_stride 4" \
    sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ] && grep -qx 'grams_stride	4' '$T/rg100/summary.tsv'"
  check "... grams.npy holds classes 0, 4, ..., 300: shape (6, 76, 76)" \
    sh -c "head -c 128 '$T/rg100/grams.npy' | grep -q \"'shape': (6, 76, 76)\""
  check "... and grams.png, grams.pdf are drawn from it" \
    sh -c "[ \"\$(od -An -tx1 -N8 '$T/rg100/grams.png' | tr -d ' \n')\" = 89504e470d0a1a0a ] && [ \"\$(head -c 4 '$T/rg100/grams.pdf')\" = '%PDF' ]"
  run "$UFM" run --quiet --force out="$T/rg100" classes=301 dim=4 n=1 iterations=2 log_points=2 grams_classes=0
  check "grams_classes=0: exits 0 quietly; no grams.npy, grams.png or grams_stride (a rerun removed them)" \
    sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ] && [ ! -e '$T/rg100/grams.npy' ] && [ ! -e '$T/rg100/grams.png' ] && ! grep -q grams_stride '$T/rg100/summary.tsv' && [ -s '$T/rg100/geometry.png' ]"
else
  echo "note - gnuplot not installed: figures not checked"
fi
check "config.ini records the overrides" \
  sh -c "grep -qx 'classes = 4' '$R/config.ini' && grep -qx 'dim = 8' '$R/config.ini'"
check "no temporary files left in the run directory" sh -c "! ls '$R' | grep -q tmp"

echo "# reruns into the same directory"
before=$(sums "$R")
# shellcheck disable=SC2086
run "$UFM" run --quiet out="$R" $SMALL iterations=300 log_points=20
check "rerun without --force exits 2" is_rc 2
check "rerun without --force says --force" grep -q -- '--force' "$T/err"
check "rerun without --force leaves every file untouched" [ "$(sums "$R")" = "$before" ]
cp "$R/W.npy" "$T/W-first.npy"
# shellcheck disable=SC2086
run "$UFM" run --quiet --force out="$R" $SMALL iterations=300 log_points=20
check "rerun with --force exits 0" is_rc 0
check "rerun with --force reproduces W.npy byte for byte" cmp -s "$R/W.npy" "$T/W-first.npy"
# shellcheck disable=SC2086
run "$UFM" --threads 1 run --quiet --no-plot out="$T/r1" $SMALL iterations=300 log_points=20
check "the run on 1 thread exits 0" is_rc 0
check "1 thread gives the same W.npy and H.npy" \
  sh -c "cmp -s '$R/W.npy' '$T/r1/W.npy' && cmp -s '$R/H.npy' '$T/r1/H.npy'"
run "$UFM" run "$R/config.ini" out="$T/r2" --quiet
check "run from config.ini exits 0" is_rc 0
check "run from config.ini reproduces W.npy byte for byte" cmp -s "$R/W.npy" "$T/r2/W.npy"
check "run from config.ini reproduces metrics.tsv" cmp -s "$R/metrics.tsv" "$T/r2/metrics.tsv"
run "$UFM" run "$R/config.ini" out="$T/r3" n=7 --quiet --no-plot
check "an override of n on a reloaded config.ini exits 0" is_rc 0
check "an override of n on a reloaded config.ini takes effect" grep -q "^counts${tab}7,7,7,7\$" "$T/r3/summary.tsv"
run "$UFM" run --quiet "out=$T/a#b" iterations=1
check "a '#' in out is refused with exit 2" is_rc 2
check "a '#' in out writes nothing" [ ! -e "$T/a#b" ]

# ------------------------------------------------------------------------ plot
echo "# plot"
if [ "$have_gnuplot" = 1 ]; then
  rm -f "$R/dashboard.png" "$R/dashboard.pdf"
  run "$UFM" plot "$R"
  check "plot DIR exits 0" is_rc 0
  check "plot redrew dashboard.png" [ "$(magic "$R/dashboard.png" 8)" = 89504e470d0a1a0a ]
  check "plot redrew dashboard.pdf" [ "$(head -c 4 "$R/dashboard.pdf")" = "%PDF" ]
  check "a screen PDF is 9 in wide (648 pt) in DejaVu Sans" \
    sh -c "grep -a -q 'MediaBox \\[ 0 0 648 468 \\]' '$R/dashboard.pdf' && grep -a -q 'FontName /[A-Z]*+DejaVuSans' '$R/dashboard.pdf'"
  run "$UFM" plot "$R" figure_style=paper figure_width=column
  check "plot DIR figure_style=paper figure_width=column exits 0" is_rc 0
  check "a paper PDF at column width is 3.4 in wide (244.8 pt, cairo rounds), height in proportion" \
    grep -a -q -E 'MediaBox \[ 0 0 24[45] 17[67] \]' "$R/dashboard.pdf"
  check "a paper PDF is set in Latin Modern" grep -a -q 'FontName /[A-Z]*+LMRoman10' "$R/dashboard.pdf"
  run "$UFM" plot "$R" figure_width=17cm lr=2
  check "plot refuses keys other than figure_* (exit 2)" is_rc 2
  run "$UFM" plot "$R" figure_width=17furlongs
  check "plot refuses a bad figure_width (exit 2)" is_rc 2
  check "... naming the key" grep -q 'figure_width' "$T/err"
  # one gnuplot per figure, as many at a time as threads: a figure whose
  # script fails is named, and the others are drawn all the same
  BP="$T/badplots"
  mkdir -p "$BP"
  cp "${UFM_PLOTDIR:-$HERE/../plots}"/*.gp "$BP"/
  printf 'exit status 3\n' > "$BP/geometry.gp"
  for th in 1 2; do
    rm -f "$R"/dashboard.p?? "$R"/geometry.p?? "$R"/grams.p??
    run env UFM_PLOTDIR="$BP" "$UFM" --threads "$th" plot "$R"
    check "a failing figure script ($th thread(s)): plot exits 1" is_rc 1
    check "... naming it" grep -q 'gnuplot failed (status 3) drawing .*/geometry.gp' "$T/err"
    check "... the dashboard and Gram figures drawn all the same" \
      sh -c "[ -s '$R/dashboard.png' ] && [ -s '$R/dashboard.pdf' ] && [ -s '$R/grams.png' ] && [ -s '$R/grams.pdf' ]"
    check "... the failed figure not, nor any temporary file" \
      sh -c "[ ! -e '$R/geometry.png' ] && [ ! -e '$R/geometry.pdf' ] && ! ls '$R' | grep -q tmp"
  done
  run "$UFM" --threads 2 plot "$R"
  check "the three figures drawn side by side (2 threads): exit 0" is_rc 0
  check "... dashboard, geometry and grams, PNG and PDF" \
    sh -c "for f in dashboard geometry grams; do [ \"\$(od -An -tx1 -N8 '$R'/\$f.png | tr -d ' \n')\" = 89504e470d0a1a0a ] && [ \"\$(head -c 4 '$R'/\$f.pdf)\" = '%PDF' ] || exit 1; done"
else
  echo "note - gnuplot not installed: 'ufm plot DIR' not checked"
fi
run "$UFM" plot "$T/no-such-run"
check "plot of a nonexistent directory exits 2" is_rc 2
run "$UFM" plot
check "plot without a directory exits 2" is_rc 2

# ------------------------------------------------------------------------- etf
echo "# etf"
run "$UFM" etf 4
check "etf 4 exits 0" is_rc 0
# shellcheck disable=SC2016
check "etf 4: 4 rows of 3 unit vectors, pairwise dot products -1/3 (1e-12)" \
  awk -F '\t' '
    /^#/ || NF == 0 { next }
    { n++; if (NF != 3) bad = 1; for (k = 1; k <= NF; k++) v[n, k] = $k + 0 }
    END {
      if (n != 4 || bad) exit 1
      for (i = 1; i <= 4; i++)
        for (j = i; j <= 4; j++) {
          d = 0
          for (k = 1; k <= 3; k++) d += v[i, k] * v[j, k]
          want = (i == j) ? 1 : -1 / 3
          e = d - want; if (e < 0) e = -e
          if (e > 1e-12) exit 1
        }
    }' "$T/out"
run "$UFM" etf 5 2
check "etf 5 2 (no room) exits 2" is_rc 2
run "$UFM" etf 1
check "etf 1 exits 2" is_rc 2
run "$UFM" etf abc
check "etf abc exits 2" is_rc 2

# ---------------------------------------------------------------------- theory
echo "# theory"
run "$UFM" theory classes=4 dim=8 n=5 lambda_W=4.1e-3 lambda_H=2.385e-3 bias=false
check "theory exits 0" is_rc 0
check "theory: first line regime<TAB>etf" sh -c "head -n 1 '$T/out' | grep -qx 'regime${tab}etf'"
check "theory: every line is name<TAB>value" awk -F '\t' 'NF != 2 || $1 == "" || $2 == "" { exit 1 }' "$T/out"
for k in loss objective norm_W norm_H norm_b margin nmargin logit_true logit_other w_norm_3 svm_value gap_rate; do
  check "theory prints $k" grep -q "^$k${tab}" "$T/out"
done
# shellcheck disable=SC2016
check "theory: norm_W = sqrt(C rho), rho = ((C-1)/C) s ln((1-(C-1)r)/r) (awk, 1e-12)" awk -F '\t' '
  $1 == "norm_W" { w = $2 }
  END { r = sqrt(5 * 4.1e-3 * 2.385e-3); s = sqrt(5 * 2.385e-3 / 4.1e-3)
        rho = 0.75 * s * log((1 - 3 * r) / r); d = w - sqrt(4 * rho); if (d < 0) d = -d
        exit !(w > 0 && d <= 1e-12 * w) }' "$T/out"
run "$UFM" theory --out "$T/th" classes=3 dim=4 n=4 loss=mse
check "theory --out DIR exits 0" is_rc 0
for f in theory.tsv WWt.tsv gram_mu.tsv gram_M.tsv logits.tsv; do
  check "theory --out wrote $f" test -s "$T/th/$f"
done
check "theory --out: WWt.tsv is 3 x 3" awk -F '\t' 'NF != 3 { exit 1 } END { exit NR != 3 }' "$T/th/WWt.tsv"
check "theory --out: theory.tsv is what was printed" cmp -s "$T/out" "$T/th/theory.tsv"
run "$UFM" theory classes=4 dim=8 counts=9,6,4,2 lambda_W=4.1e-3 lambda_H=2.385e-3
check "theory of an imbalanced CE setting exits 0" is_rc 0
check "... says regime unknown" grep -qx "regime${tab}unknown" "$T/out"
check "... with a note line" grep -q "^note${tab}." "$T/out"
check "... and a comment on stderr" grep -q 'no closed form' "$T/err"
run "$UFM" theory classes=4 dim=8 n=12 imbalance=step ratio=4 lambda_W=0.08 lambda_H=0.05
check "theory of a step-imbalanced setting prints the minority-collapse threshold" \
  sh -c "grep -q '^mc_threshold${tab}0.0577350269189625' '$T/out' && grep -qx 'minority_collapse${tab}yes' '$T/out'"
run "$UFM" theory widht=3
check "theory with an unknown key exits 2" is_rc 2
check "... naming it as run does" grep -q 'command line (argument [0-9]*): widht: unknown key' "$T/err"
printf 'classes = 4\nlr = 0\n' >"$T/bad/theory-lr.ini"
run "$UFM" theory "$T/bad/theory-lr.ini"
check "theory of a bad experiment file exits 2 with FILE:LINE: key:" \
  sh -c "[ $rc -eq 2 ] && grep -qF '$T/bad/theory-lr.ini:2: lr: ' '$T/err'"
run "$UFM" theory "$T/bad/theory-lr.ini" "$T/bad/theory-lr.ini"
check "theory with two experiment files exits 2" is_rc 2
run "$UFM" theory --frobnicate
check "theory with an unknown option exits 2" is_rc 2

echo "# theory.tsv and the summary's NAME_theory / NAME_gap lines"
TH="classes=4 dim=8 n=5 bias=false lambda_W=4.1e-3 lambda_H=2.385e-3 lr=1"
# shellcheck disable=SC2086
run "$UFM" run --quiet --no-plot out="$T/rt" $TH iterations=30000 tol=1e-11
check "a run to convergence exits 0 (status converged)" \
  sh -c "[ $rc -eq 0 ] && grep -qx 'status${tab}converged' '$T/rt/summary.tsv'"
# shellcheck disable=SC2086
"$UFM" theory $TH >"$T/th-printed" 2>/dev/null || true
check "run wrote theory.tsv, the lines 'ufm theory' prints" cmp -s "$T/th-printed" "$T/rt/theory.tsv"
for k in loss objective norm_W norm_H norm_b margin nmargin; do
  check "summary.tsv has ${k}_theory and ${k}_gap" \
    sh -c "grep -q '^${k}_theory${tab}' '$T/rt/summary.tsv' && grep -q '^${k}_gap${tab}' '$T/rt/summary.tsv'"
done
# shellcheck disable=SC2016
check "converged: |norm_W_gap|, |norm_H_gap|, |objective_gap| <= 1e-6" awk -F '\t' '
  $1 ~ /^(norm_W|norm_H|objective)_gap$/ { n++; v = $2 < 0 ? -$2 : $2; if (!(v <= 1e-6)) bad = 1 }
  END { exit bad || n != 3 }' "$T/rt/summary.tsv"
check "the _theory value is the theory.tsv value" sh -c "
  a=\$(awk -F '\t' '\$1 == \"norm_W\" { print \$2 }' '$T/rt/theory.tsv')
  b=\$(awk -F '\t' '\$1 == \"norm_W_theory\" { print \$2 }' '$T/rt/summary.tsv')
  [ -n \"\$a\" ] && [ \"\$a\" = \"\$b\" ]"
run "$UFM" run --quiet --no-plot --force out="$T/rt" classes=4 dim=8 n=5 lambda_W=0 iterations=5
check "a rerun with no prediction (lambda_W = 0) exits 0" is_rc 0
check "... removes the old theory.tsv" [ ! -e "$T/rt/theory.tsv" ]
check "... and writes no _theory lines" sh -c "! grep -q '_theory${tab}' '$T/rt/summary.tsv'"
if [ "$have_gnuplot" = 1 ]; then
  run "$UFM" plot "$T/rt"
  check "plot of a run without theory.tsv: exit 0, nothing on stderr" sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ]"
  # shellcheck disable=SC2086
  run "$UFM" run --quiet --force out="$T/rt" $TH iterations=200
  check "a run with theory.tsv draws its figure silently (--quiet)" \
    sh -c "[ $rc -eq 0 ] && [ -s '$T/rt/theory.tsv' ] && [ -s '$T/rt/dashboard.png' ] && [ ! -s '$T/err' ]"
fi

# ------------------------------------------------------------------- init_from
echo "# init_from"
# shellcheck disable=SC2086
run "$UFM" run --quiet --no-plot out="$T/i" $SMALL init_from="$R" iterations=0
check "init_from=RUN iterations=0 exits 0" is_rc 0
check "init_from=RUN iterations=0 writes the same W.npy" cmp -s "$R/W.npy" "$T/i/W.npy"
check "... and the same H.npy and b.npy" \
  sh -c "cmp -s '$R/H.npy' '$T/i/H.npy' && cmp -s '$R/b.npy' '$T/i/b.npy'"
run "$UFM" run --quiet --no-plot out="$T/d16" classes=4 dim=16 n=5 iterations=5
check "a run with dim 16 exits 0" is_rc 0
mkdir "$T/mix"
cp "$T/d16/W.npy" "$T/mix/W.npy"
cp "$R/H.npy" "$R/b.npy" "$T/mix/"
# shellcheck disable=SC2086
run "$UFM" run --quiet --no-plot out="$T/o-mix" $SMALL init_from="$T/mix" iterations=5
check "init_from with a (4,16) W.npy for dim 8: exit 2" is_rc 2
check "... the message names W.npy" grep -qF "$T/mix/W.npy" "$T/err"
check "... and both shapes" sh -c "grep -Eq '4, ?16' '$T/err' && grep -Eq '4, ?8[^0-9]' '$T/err'"
check "... and no output directory" sh -c "[ ! -e '$T/o-mix' ]"
# shellcheck disable=SC2086
run "$UFM" run --quiet --no-plot out="$T/o-none" $SMALL init_from="$T/no-such-run"
check "init_from a nonexistent directory: exit 2, no output directory" \
  sh -c "[ $rc -eq 2 ] && [ ! -e '$T/o-none' ]"

# ------------------------------------------------------------------ divergence
echo "# divergence"
# shellcheck disable=SC2086
run "$UFM" run --quiet --no-plot out="$T/div" $SMALL loss=mse lr=1e6 iterations=100
check "a diverging run exits 1" is_rc 1
check "... summary.tsv says status diverged" grep -qx "status${tab}diverged" "$T/div/summary.tsv"
check "... W.npy, H.npy and b.npy are written" \
  sh -c "[ -s '$T/div/W.npy' ] && [ -s '$T/div/H.npy' ] && [ -s '$T/div/b.npy' ]"
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1; then
  check "... the saved W.npy, H.npy and b.npy are finite (numpy)" /usr/bin/python3 -c '
import sys, numpy as np
d = sys.argv[1]
for f, shape in (("W", (4, 8)), ("H", (8, 20)), ("b", (4,))):
    a = np.load(d + "/" + f + ".npy")
    assert a.dtype == np.dtype("<f8") and a.shape == shape, (f, a.dtype, a.shape)
    assert np.isfinite(a).all(), f
' "$T/div"
else
  echo "note - /usr/bin/python3 with numpy not available: finiteness of W.npy not checked"
fi

# ------------------------------------------------------- shipped experiments
echo "# shipped experiment files"
if [ -n "${UFM_EXPERIMENTS:-}" ] && [ -d "$UFM_EXPERIMENTS" ]; then
  for f in "$UFM_EXPERIMENTS"/*.ini; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .ini)
    run "$UFM" run --quiet --no-plot "$f" out="$T/exp-$name" iterations=3 log_points=2
    if [ -f "$T/exp-$name/sweep.ini" ]; then
      check "experiments/$name.ini (a sweep) runs every point (3 iterations)" \
        sh -c "[ $rc -eq 0 ] && [ \$(cut -f1 '$T/exp-$name/results.tsv' | wc -l) -gt 2 ] && ! grep -v -q -e '${tab}finished${tab}' -e '^point' '$T/exp-$name/results.tsv'"
    else
      check "experiments/$name.ini runs (3 iterations)" \
        sh -c "[ $rc -eq 0 ] && grep -qx 'status${tab}finished' '$T/exp-$name/summary.tsv'"
    fi
  done
else
  echo "note - UFM_EXPERIMENTS not set: shipped experiment files not checked"
fi

# ---------------------------------------------------------------------- sweeps
echo "# sweeps"
run "$UFM" run --dry-run out="$T/dry" classes=3,4 dim=log:2:8:3 seeds=2
check "--dry-run exits 0" is_rc 0
check "--dry-run lists 12 points and a header" [ "$(wc -l < "$T/out")" -eq 13 ]
check "--dry-run writes nothing" [ ! -e "$T/dry" ]
if [ "$have_gnuplot" = 1 ]; then
  # one minority class only: the minority metrics are NaN at every point
  run "$UFM" run --quiet out="$T/nanpanel" classes=4 majority=3 n=4 dim=4 imbalance=step ratio=1,2 iterations=20
  check "a sweep with an all-NaN metric exits 0 and says nothing" sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ]"
  check "... and draws sweep.pdf (the all-NaN panel says so)" [ "$(head -c 4 "$T/nanpanel/sweep.pdf")" = "%PDF" ]
  # compute_seli_H = false: seli_H is nan at every iteration of every point
  run "$UFM" run --quiet out="$T/noseli" compute_seli_H=false classes=4 dim=12 n=5 imbalance=step ratio=1,2 iterations=20
  check "compute_seli_H=false: a sweep exits 0 and says nothing" sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ]"
  check "... seli_H is nan in every row of both points' metrics.tsv and of results.tsv" \
    sh -c "for f in '$T/noseli/p0000/metrics.tsv' '$T/noseli/p0001/metrics.tsv' '$T/noseli/results.tsv'; do
             awk -F '\t' 'NR == 1 { for (j = 1; j <= NF; j++) if (\$j == \"seli_H\") c = j; next }
                           { n++; if (!c || \$c != \"nan\") bad = 1 } END { exit bad || n < 2 }' \"\$f\" || exit 1
           done"
  check "... the others are numbers (nc1 in p0001's last row)" \
    sh -c "awk -F '\t' 'NR == 1 { for (j = 1; j <= NF; j++) if (\$j == \"nc1\") c = j; next } { v = \$c } END { exit !(c && v + 0 > 0) }' '$T/noseli/p0001/metrics.tsv'"
  check "... config.ini records compute_seli_H = false" grep -q '^compute_seli_H = false' "$T/noseli/p0001/config.ini"
  check "... and dynamics.pdf is drawn (its seli_H panel says 'not computed')" \
    [ "$(head -c 4 "$T/noseli/dynamics.pdf")" = "%PDF" ]
  # one sample a class: NC1 exactly 0 everywhere, nothing positive for its log panel
  run "$UFM" run --quiet out="$T/nc1zero" classes=4 dim=8 n=1 lr=1,2 iterations=20
  check "a sweep whose NC1 is exactly 0 exits 0, says nothing and draws dynamics.pdf" \
    sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ] && [ \"\$(head -c 4 '$T/nc1zero/dynamics.pdf')\" = '%PDF' ]"
  run "$UFM" run --quiet out="$T/noseli1" compute_seli_H=false classes=4 dim=12 n=5 iterations=20
  check "compute_seli_H=false: a run exits 0 and says nothing" sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ]"
  check "... and draws geometry.png (seli_H 'not computed')" \
    [ "$(magic "$T/noseli1/geometry.png" 8)" = 89504e470d0a1a0a ]
fi
run "$UFM" run --quiet out="$T/badseli" compute_seli_H=maybe
check "compute_seli_H=maybe exits 2 naming the key, writing nothing" \
  sh -c "[ $rc -eq 2 ] && grep -q 'compute_seli_H' '$T/err' && [ ! -e '$T/badseli' ]"
for bad in grams_classes=-1 grams_classes=1,2 grams_classes=1e7; do
  run "$UFM" run --quiet out="$T/badgrams" "$bad"
  check "$bad exits 2 naming the key, writing nothing" \
    sh -c "[ $rc -eq 2 ] && grep -q 'grams_classes' '$T/err' && [ ! -e '$T/badgrams' ]"
done
run "$UFM" run --quiet --shard 0/2 out="$T/sh" classes=3,4
check "--shard 0/2 is refused (I runs from 1)" is_rc 2
run "$UFM" run --quiet out="$T/badlist" classes=3,,4
check "an empty list entry exits 2" is_rc 2
check "an empty list entry writes nothing" [ ! -e "$T/badlist" ]
run "$UFM" run --quiet out="$T/sw" classes=3,4 dim=2,5 n=3 iterations=40 log_points=4 seeds=2
check "a 2x2 sweep with 2 seeds exits 0" is_rc 0
check "the sweep wrote results.tsv with 8 rows" [ "$(wc -l < "$T/sw/results.tsv")" -eq 9 ]
check "the sweep wrote summary.tsv with 4 rows" [ "$(wc -l < "$T/sw/summary.tsv")" -eq 5 ]
if [ "$have_gnuplot" = 1 ]; then
  check "the sweep drew sweep.png" [ "$(magic "$T/sw/sweep.png" 8)" = 89504e470d0a1a0a ]
  check "the sweep drew heatmap.pdf" [ "$(head -c 4 "$T/sw/heatmap.pdf")" = "%PDF" ]
  rm -f "$T/sw/sweep.png"
  run "$UFM" plot "$T/sw"
  check "plot redraws a sweep directory" sh -c "[ $rc -eq 0 ] && [ -s '$T/sw/sweep.png' ]"
fi
run "$UFM" run --quiet out="$T/sw" classes=3,4 dim=2,5 n=3 iterations=41 log_points=4 seeds=2
check "another sweep into the same directory exits 2" is_rc 2
check "... naming the difference" grep -q "different sweep" "$T/err"
run "$UFM" run --quiet --resume "$T/sw"
check "--resume of a finished sweep exits 0" is_rc 0
run "$UFM" merge "$T/sw"
check "merge without out= exits 2" is_rc 2

# ------------------------------------------- an independent NumPy reference
echo "# against tests/reference.py (NumPy): GD steps and every metric"
REF="$HERE/reference.py"
if /usr/bin/python3 -c 'import numpy' 2>/dev/null && [ -f "$REF" ]; then
  G="classes=5 dim=7 counts=3,4,5,2,6"
  # shellcheck disable=SC2086
  run "$UFM" run --quiet --no-plot out="$T/ref0" $G iterations=0 init_scale=0.5
  for combo in "loss=ce bias=true lambda_b=0.02" "loss=ce bias=false" \
               "loss=mse bias=true lambda_b=0" "loss=mse bias=false lambda_W=0 lambda_H=0" \
               "loss=ce optimizer=momentum momentum=0.8"; do
    # shellcheck disable=SC2086
    run "$UFM" run --quiet --no-plot --force out="$T/ref1" $G iterations=25 lr=0.9 init_from="$T/ref0" $combo
    check "25 steps ($combo) agree with NumPy to 1e-9" /usr/bin/python3 "$REF" step "$T/ref0" "$T/ref1"
    check "every metric ($combo) agrees with NumPy" /usr/bin/python3 "$REF" metrics "$T/ref1"
  done
  run "$UFM" run --quiet --no-plot out="$T/ref2" classes=8 dim=3 iterations=300
  check "every metric at p < C-1 agrees with NumPy's pinv" /usr/bin/python3 "$REF" metrics "$T/ref2"
  check "grams.npy (imbalanced counts): the Gram matrices of the saved state" /usr/bin/python3 "$REF" grams "$T/ref1"
  check "grams.npy (balanced): the Gram matrices and the simplex ETF" /usr/bin/python3 "$REF" grams "$T/ref2"
  # shellcheck disable=SC2086
  run "$UFM" run --quiet --no-plot --force out="$T/ref1" $G iterations=25 lr=0.9 init_from="$T/ref0" grams_classes=2
  check "grams.npy with grams_classes=2 (C = 5: classes 0, 3): the whole matrices' entries" \
    sh -c "grep -qx 'grams_stride	3' '$T/ref1/summary.tsv' && /usr/bin/python3 '$REF' grams '$T/ref1'"
  run "$UFM" run --quiet --no-plot --force out="$T/ref2" classes=8 dim=3 iterations=300 grams_classes=3
  check "grams.npy with grams_classes=3 (balanced C = 8: classes 0, 3, 6)" \
    sh -c "grep -qx 'grams_stride	3' '$T/ref2/summary.tsv' && /usr/bin/python3 '$REF' grams '$T/ref2'"
  check "ufm theory agrees with NumPy's closed forms (tests/theory_reference.py formulas)" \
    sh -c "/usr/bin/python3 '$HERE/theory_reference.py' formulas '$UFM' > '$T/thref.log' 2>&1 || { grep FAIL '$T/thref.log'; exit 1; }"
else
  echo "note - /usr/bin/python3 with numpy not found: NumPy reference not checked (setup.sh installs python3-numpy)"
fi

# ------------------------------------------------- --resume keeps the name
echo "# --resume of a run killed before its first checkpoint"
run "$UFM" run --quiet --no-plot out="$T/rn" iterations=50
find "$T/rn" -type f ! -name config.ini -exec rm {} +
run "$UFM" run --quiet --no-plot --resume "$T/rn"
check "--resume of a directory holding only config.ini runs from the start (exit 0)" \
  sh -c "[ $rc -eq 0 ] && [ -f '$T/rn/summary.tsv' ]"
check "... and its config.ini keeps the experiment's name (default, not the directory's)" \
  grep -q "^# ufm experiment 'default'," "$T/rn/config.ini"

# ------------------------------------------------------------------- make paper
echo "# paper/build.sh (make paper): what is missing is said before anything runs"
run env UFM="$T/no-such-ufm" sh "$HERE/../paper/build.sh" --fast
check "paper/build.sh without ufm exits 2" is_rc 2
check "... naming what is missing" grep -q 'make paper: missing: ufm' "$T/err"
check "... and the command that installs it" grep -qF './setup.sh --paper' "$T/err"
run sh "$HERE/../paper/build.sh" --slow
check "paper/build.sh with an unknown option exits 2" is_rc 2

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
