#!/bin/sh
# reliability.sh -- ufm under interruption, faults and hostile input, driven from outside:
# kill -9 at random moments then --resume (bit-identical results), SIGTERM and
# SIGINT (exit 143 / 130, a checkpoint, the resume command), the column-block step
# (1 and 2 threads, SIGTERM and --resume), sweeps stopped and
# resumed, divergence, a full disk (RLIMIT_FSIZE; a tiny tmpfs when mount works),
# unwritable and foreign directories, malformed inputs of every class.
#
# Needs UFM (absolute path of the ufm binary); make check sets it. Everything
# happens in a mktemp -d directory, removed at exit. The kill -9 moments are
# drawn from UFM_TEST_SEED (default 2385, printed). Ends with
# "reliability: N passed, M failed".
set -eu

: "${UFM:?set UFM to the ufm binary}"
case $UFM in /*) ;; *) UFM=$(pwd)/$UFM ;; esac

T=$(mktemp -d "${TMPDIR:-/tmp}/ufm-rel.XXXXXX")
MNT=
cleanup() {
  if [ -n "$MNT" ]; then umount "$MNT" 2>/dev/null || true; fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' HUP INT TERM
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$T"

START=$(date +%s.%N)
# section TITLE: a heading with the seconds since the start
section() { echo "# [$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')] $1"; }
SEED=${UFM_TEST_SEED:-2385}
echo "# UFM_TEST_SEED=$SEED"
# shellcheck source=tests/checks.sh
. "$HERE/checks.sh"
# same_run A B: the final state and metrics byte for byte, summary.tsv but
# for its timing and thread-count lines
same_run() {
  for f in W.npy H.npy b.npy labels.npy metrics.tsv; do
    cmp -s "$1/$f" "$2/$f" || { echo "       $f differs: $1 $2"; return 1; }
  done
  grep -v -e '^wall_time' -e '^iters_per_sec' -e '^threads' "$1/summary.tsv" >"$T/sa"
  grep -v -e '^wall_time' -e '^iters_per_sec' -e '^threads' "$2/summary.tsv" >"$T/sb"
  cmp -s "$T/sa" "$T/sb" || { echo "       summary.tsv differs: $1 $2"; return 1; }
}
no_tmp() { ! find "$1" -name '*.tmp.*' | grep -q .; }
# wait_for FILE: poll until FILE exists (up to 20 s)
wait_for() {
  i=0
  while [ ! -e "$1" ] && [ $i -lt 400 ]; do
    sleep 0.05
    i=$((i + 1))
  done
  [ -e "$1" ]
}
# a random delay in [0.05, 0.25] s, from the seed and a counter
delay() { awk -v s="$SEED" -v k="$1" 'BEGIN { srand(s * 1000 + k); printf "%.2f", 0.05 + 0.20 * rand() }'; }
sums() { (cd "$1" && find . -type f | sort | xargs cksum); }
# the same, without the checkpoint and temporary files
results() { (cd "$1" && find . -type f ! -path './checkpoint/*' ! -name '*.tmp.*' | sort | xargs cksum); }
# put_bytes FILE OFFSET OCTAL-ESCAPES: overwrite bytes in place
put_bytes() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null; }

# A run of ~0.5 s (unloaded), with a checkpoint every 1000 of its 20000 steps.
# long enough that a kill after the largest random delay (0.25 s) finds it
# running: 20000 iterations took 0.17 s in session 12, and a kill at 0.14 s
# once came too late; 60000 take about 1 s with checkpoints
BASE="classes=6 dim=16 n=10 iterations=60000 log_points=60 optimizer=momentum lr=0.5"
LONG="$BASE checkpoint_every=1000"
Q="--quiet --no-plot"

section "the uninterrupted reference runs, with and without checkpoints"
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/ref" $BASE
check "reference run exits 0" is_rc 0
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/refck" $LONG
check "with checkpoint_every=1000: exit 0, no checkpoint left" \
  sh -c "[ $rc -eq 0 ] && [ ! -e '$T/refck/checkpoint' ]"
check "... and the same results: checkpoints do not change a bit" same_run "$T/ref" "$T/refck"

# ---------------------------------------------------------------- kill -9
section "kill -9 at random moments, then --resume"
D=$T/k9
hits=0
k=0
while [ $k -lt 8 ] && [ ! -e "$D/summary.tsv" ]; do
  k=$((k + 1))
  d=$(delay $k)
  if [ ! -e "$D/config.ini" ]; then # (killed before it wrote config.ini: start again)
    # shellcheck disable=SC2086
    "$UFM" run $Q --force out="$D" $LONG 2>"$T/err" &
  else
    "$UFM" run $Q --resume "$D" 2>"$T/err" &
  fi
  pid=$!
  # the random delay counts from the moment the run directory holds its
  # config.ini (an MPI build spends its first tenths of a second in MPI_Init)
  w=0
  while [ ! -e "$D/config.ini" ] && kill -0 "$pid" 2>/dev/null && [ $w -lt 200 ]; do
    sleep 0.05
    w=$((w + 1))
  done
  sleep "$d"
  kill -9 "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" || rc=$?
  it=$(sed -n 's/^iteration\t//p' "$D/checkpoint/checkpoint.tsv" 2>/dev/null || true)
  section "  kill $k after ${d}s: status $rc, checkpoint at iteration ${it:-none}"
  [ "$rc" -eq 137 ] && hits=$((hits + 1))
done
check "at least one kill -9 landed in a running run ($hits of $k)" [ "$hits" -ge 1 ]
run "$UFM" run $Q --resume "$D"
check "--resume after kill -9 exits 0" is_rc 0
check "the resumed run equals the uninterrupted one (W, H, b, labels, metrics.tsv, summary.tsv)" same_run "$T/ref" "$D"
check "... and config.ini too (but for its out line)" \
  sh -c "grep -v '^out = ' '$T/refck/config.ini' > '$T/ca'; grep -v '^out = ' '$D/config.ini' > '$T/cb'; cmp -s '$T/ca' '$T/cb'"
check "no temporary files or checkpoint are left" sh -c "! find '$D' -name '*.tmp.*' | grep -q . && [ ! -e '$D/checkpoint' ]"
# a kill after summary.tsv (written last) but before the checkpoint went:
# --resume of the finished run removes what is left, and changes nothing else
# shellcheck disable=SC2086
run "$UFM" run $Q --keep all out="$T/late" $LONG
: >"$T/late/grams.npy.tmp.999999"
before=$(results "$T/late")
run "$UFM" run $Q --resume "$T/late"
check "--resume of a finished run with a checkpoint and a temporary file left: exit 0" is_rc 0
check "... both removed" sh -c "[ ! -e '$T/late/checkpoint' ] && [ ! -e '$T/late/grams.npy.tmp.999999' ]"
check "... every result file untouched" [ "$(results "$T/late")" = "$before" ]
before=$(sums "$D")
run "$UFM" run $Q --resume "$D"
after=$(sums "$D")
check "--resume of a finished run exits 0 and changes nothing" sh -c "[ $rc -eq 0 ] && [ '$after' = '$before' ]"

# ------------------------------------------------------------ SIGTERM, SIGINT
for sig in TERM INT; do
  want=143
  [ $sig = INT ] && want=130
  section "SIG$sig"
  D=$T/sig$sig
  # shellcheck disable=SC2086
  "$UFM" run $Q out="$D" $LONG 2>"$T/err" &
  pid=$!
  wait_for "$D/checkpoint/checkpoint.tsv" || true
  kill -$sig "$pid"
  rc=0
  wait "$pid" || rc=$?
  check "SIG$sig: exit status $want" is_rc $want
  check "SIG$sig: the message names SIG$sig and 'ufm run --resume $D'" \
    sh -c "grep -q 'SIG$sig' '$T/err' && grep -qF 'ufm run --resume $D' '$T/err'"
  check "SIG$sig: a checkpoint and metrics.tsv, no summary.tsv" \
    sh -c "[ -s '$D/checkpoint/checkpoint.tsv' ] && [ -s '$D/metrics.tsv' ] && [ ! -e '$D/summary.tsv' ]"
  check "SIG$sig: metrics.tsv holds the rows up to the checkpoint" \
    sh -c "[ \$(tail -n 1 '$D/metrics.tsv' | cut -f 1) -le \$(sed -n 's/^iteration\t//p' '$D/checkpoint/checkpoint.tsv') ]"
  check "SIG$sig: no temporary files" no_tmp "$D"
  run "$UFM" run $Q --resume "$D"
  check "SIG$sig: --resume exits 0" is_rc 0
  check "SIG$sig: the resumed run equals the uninterrupted one" same_run "$T/ref" "$D"
done

# ------------------------------------------------- the column-block step
section "the column-block step (thin shapes): 1 and 2 threads, SIGTERM and --resume"
# C = 100, p = 8, N = 6000: Z would be 4.8 MB, so the step takes the
# products in column blocks (src/grad.c section 5), 6 slots of 1 block;
# about 1.5 ms a step unloaded, so the SIGTERM after the first checkpoint
# (iteration 100) lands well before the end (1000)
THIN="classes=100 dim=8 n=60 iterations=1000 log_points=20 lr=0.5"
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/thin" $THIN
check "thin: exit 0" is_rc 0
# shellcheck disable=SC2086
run "$UFM" --threads 1 run $Q out="$T/thin1" $THIN
check "thin: 1 thread gives the same bits as 2" same_run "$T/thin" "$T/thin1"
# shellcheck disable=SC2086
"$UFM" run $Q out="$T/thint" $THIN checkpoint_every=100 2>"$T/err" &
pid=$!
wait_for "$T/thint/checkpoint/checkpoint.tsv" || true
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
check "thin: SIGTERM mid-run: exit 143, a checkpoint, no summary.tsv" \
  sh -c "[ $rc -eq 143 ] && [ -s '$T/thint/checkpoint/checkpoint.tsv' ] && [ ! -e '$T/thint/summary.tsv' ]"
run "$UFM" run $Q --resume "$T/thint"
check "thin: the resumed run equals the uninterrupted one" same_run "$T/thin" "$T/thint"

# -------------------------------------------------------------------- sweeps
section "a sweep stopped by SIGTERM, then resumed"
# long enough (about 2 s on 2 idle cores) that the SIGTERM, sent at the first
# checkpoint, always finds points unfinished
SW="classes=3,4 dim=6 n=5 iterations=40000 log_points=30 checkpoint_every=500 seeds=2"
# shellcheck disable=SC2086
run "$UFM" --threads 2 run $Q out="$T/swref" $SW
check "reference sweep exits 0" is_rc 0
# shellcheck disable=SC2086
"$UFM" --threads 2 run $Q out="$T/sw" $SW 2>"$T/err" &
pid=$!
i=0
while ! ls "$T"/sw/p*/checkpoint/checkpoint.tsv >/dev/null 2>&1 && [ $i -lt 400 ]; do
  sleep 0.05
  i=$((i + 1))
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
check "sweep: SIGTERM gives exit 143" is_rc 143
check "sweep: the message names 'ufm run --resume $T/sw'" grep -qF "ufm run --resume $T/sw" "$T/err"
nfin=$(ls "$T"/sw/p*/summary.tsv 2>/dev/null | wc -l)
nck=$(ls -d "$T"/sw/p*/checkpoint 2>/dev/null | wc -l)
section "  stopped with $nfin of 4 points finished, $nck checkpointed"
check "sweep: some points were left unfinished" [ "$nfin" -lt 4 ]
check "sweep: results.tsv lists only the finished points" [ "$(($(wc -l <"$T/sw/results.tsv") - 1))" -eq "$nfin" ]
run "$UFM" --threads 2 run $Q --resume "$T/sw"
check "sweep: --resume exits 0" is_rc 0
check "sweep: results.tsv and summary.tsv equal the uninterrupted sweep's" \
  sh -c "cmp -s '$T/swref/results.tsv' '$T/sw/results.tsv' && cmp -s '$T/swref/summary.tsv' '$T/sw/summary.tsv'"
allsame=1
for p in "$T"/swref/p*; do same_run "$p" "$T/sw/${p##*/}" || allsame=0; done
check "sweep: every point equals the uninterrupted one" [ $allsame -eq 1 ]

# ---------------------------------------------------------------- divergence
section "divergence"
SMALL="classes=4 dim=8 n=5"
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/div" $SMALL loss=mse lr=1e6 iterations=100
check "a step that would overflow: exit 1" is_rc 1
check "... status diverged, the iteration and a hint in summary.tsv" \
  sh -c "grep -qx 'status${tab}diverged' '$T/div/summary.tsv' && grep -q '^message${tab}.*iteration [0-9]*.*smaller lr' '$T/div/summary.tsv'"
check "... and on stderr" grep -q 'diverged.*iteration [0-9].*lr' "$T/err"
check "... metrics.tsv up to the divergence" sh -c "[ \$(wc -l < '$T/div/metrics.tsv') -ge 2 ]"
# a finite state whose logits overflow: W[0,0] = H[0,0] = 1e200
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/big0" $SMALL iterations=0
mkdir "$T/big"
cp "$T/big0/W.npy" "$T/big0/H.npy" "$T/big/"
put_bytes "$T/big/W.npy" 128 '\132\142\327\327\030\347\164\151'
put_bytes "$T/big/H.npy" 128 '\132\142\327\327\030\347\164\151'
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/div2" $SMALL init_from="$T/big" iterations=10
check "logits overflowing at a finite state: exit 1, diverged at iteration 0" \
  sh -c "[ $rc -eq 1 ] && grep -q '^message${tab}.*not finite at iteration 0' '$T/div2/summary.tsv'"
check "... the saved state is the (finite) starting point" cmp -s "$T/big/W.npy" "$T/div2/W.npy"
run "$UFM" run $Q out="$T/divsw" $SMALL loss=mse lr=0.5,1e6 iterations=100
check "a sweep with a diverging point: exit 1" is_rc 1
check "... the other point finished, the diverging one is marked" \
  sh -c "grep -q '${tab}finished${tab}' '$T/divsw/results.tsv' && grep -q '${tab}diverged${tab}' '$T/divsw/results.tsv'"
check "... the message counts it" grep -q '1 of 2 points failed or diverged' "$T/err"

# ---------------------------------------------------------------- full disk
section "a full disk: RLIMIT_FSIZE (ulimit -f), and a tiny tmpfs when mount works"
BIG="classes=4 dim=64 n=64 iterations=300 log_points=10 checkpoint_every=100"
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/fref" $BIG
# a run killed after its last checkpoint: --keep all, then the final files gone
# shellcheck disable=SC2086
run "$UFM" run $Q --keep all out="$T/full" $BIG
rm -f "$T/full/summary.tsv" "$T/full/W.npy" "$T/full/H.npy" "$T/full/b.npy" "$T/full/labels.npy"
before=$(sums "$T/full/checkpoint")
# H.npy (128 KB) does not fit under 64 blocks (32 KB or 64 KB, by the shell's unit)
run sh -c "ulimit -f 64 && exec '$UFM' run $Q --resume '$T/full'"
check "file-size limit: exit 1" is_rc 1
check "... the message says 'File too large'" grep -q 'File too large' "$T/err"
check "... no temporary files left" no_tmp "$T/full"
check "... the checkpoint intact" [ "$(sums "$T/full/checkpoint")" = "$before" ]
run "$UFM" run $Q --resume "$T/full"
check "... then --resume without the limit exits 0" is_rc 0
check "... and equals the uninterrupted run" same_run "$T/fref" "$T/full"
# a new run under the limit: refuses cleanly, no partial files
# shellcheck disable=SC2086
run sh -c "ulimit -f 64 && exec '$UFM' run $Q out='$T/full2' $BIG"
check "file-size limit on a new run: exit 1, 'File too large'" \
  sh -c "[ $rc -eq 1 ] && grep -q 'File too large' '$T/err'"
check "... no temporary or partial .npy files" \
  sh -c "! find '$T/full2' -name '*.tmp.*' | grep -q . && [ ! -e '$T/full2/H.npy' ]"
MP=$T/tiny
mkdir "$MP"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=256k ufmtest "$MP" 2>/dev/null; then
  MNT=$MP
  # shellcheck disable=SC2086
  run "$UFM" run $Q out="$MP/run" classes=4 dim=64 n=256 iterations=5
  check "tmpfs of 256 KB: a run needing more exits 1" is_rc 1
  check "... with 'No space left on device'" grep -q 'No space left on device' "$T/err"
  check "... no temporary files, no partial H.npy" \
    sh -c "! find '$MP' -name '*.tmp.*' | grep -q . && [ ! -e '$MP/run/H.npy' ]"
  check "... config.ini intact" grep -q '^classes = 4$' "$MP/run/config.ini"
  umount "$MP" && MNT=
else
  echo "note - cannot mount a tmpfs here (not root, or no permission): ENOSPC not checked"
fi

# ---------------------------------------------------- unwritable and foreign
section "unwritable and foreign directories"
echo data >"$T/afile"
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/afile/run" $SMALL iterations=5
check "out under a regular file: exit 1, 'cannot create directory'" \
  sh -c "[ $rc -eq 1 ] && grep -q 'cannot create directory' '$T/err'"
# shellcheck disable=SC2086
run "$UFM" run $Q out=/proc/ufm-cannot-write-here $SMALL iterations=5
check "out in /proc: exit 1" is_rc 1
mkdir "$T/foreign"
echo "someone's data" >"$T/foreign/W.npy"
# shellcheck disable=SC2086
run "$UFM" run $Q --force out="$T/foreign" $SMALL iterations=5
check "a directory holding other files: refused (exit 2) even with --force" is_rc 2
check "... its files untouched, nothing added" \
  sh -c "[ \"\$(cat '$T/foreign/W.npy')\" = \"someone's data\" ] && [ \$(ls '$T/foreign' | wc -l) -eq 1 ]"
# shellcheck disable=SC2086
run "$UFM" run $Q --force out="$T/foreign" $SMALL dim=4,8 iterations=5
check "... and a sweep into it: exit 2, nothing added" \
  sh -c "[ $rc -eq 2 ] && [ \$(ls '$T/foreign' | wc -l) -eq 1 ]"
mkdir "$T/empty"
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/empty" $SMALL iterations=5
check "an existing empty directory is used" is_rc 0
before=$(sums "$T/swref")
# shellcheck disable=SC2086
run "$UFM" run $Q out="$T/swref" $SMALL iterations=5
after=$(sums "$T/swref")
check "a single run into a sweep directory without --force: exit 2, nothing changed" \
  sh -c "[ $rc -eq 2 ] && [ '$after' = '$before' ]"

# --------------------------------------------------------- malformed input
section "malformed input: exit 2, nothing written"
# refused OUT: exit 2 and no directory
refused_out() {
  # shellcheck disable=SC2086
  run "$UFM" run $Q "out=$2" $SMALL iterations=5
  check "$1: exit 2, out: in the message" sh -c "[ $rc -eq 2 ] && grep -q 'out: ' '$T/err'"
}
refused_out "out with a '..' component" "$T/sub/../escaped"
check "... nothing written" sh -c "[ ! -e '$T/sub' ] && [ ! -e '$T/escaped' ]"
refused_out "out with a tab" "$T/a${tab}b"
refused_out "out with a newline" "$T/a
b"
refused_out "out = .. " ".."
printf 'classes = 4\n' >"$T/....ini"
run "$UFM" run $Q "$T/....ini"
check "an experiment file named '....ini' (default out runs/...): fine, exit 0" is_rc 0
printf 'classes = 4\n' >"$T/...ini"
run "$UFM" run $Q "$T/...ini"
check "an experiment file named '...ini' (default out runs/..): exit 2" is_rc 2
run "$UFM" run $Q out="$T/huge" dim=1e8 n=1e6
check "a model too large for memory: exit 2 with the bytes needed, nothing written" \
  sh -c "[ $rc -eq 2 ] && grep -q 'bytes' '$T/err' && [ ! -e '$T/huge' ]"
run "$UFM" run $Q out="$T/huge2" classes=1e7
check "classes = 1e7: out of range, exit 2" sh -c "[ $rc -eq 2 ] && grep -q 'range' '$T/err'"

# init_from files of every bad kind: exit 2, the file named, nothing written
bad_init() {
  # shellcheck disable=SC2086
  run "$UFM" run $Q out="$T/o-$1" $SMALL init_from="$T/$1" iterations=5
  check "init_from $1: exit 2, message names the file and says '$2'" \
    sh -c "[ $rc -eq 2 ] && grep -qF '$T/$1/' '$T/err' && grep -q \"$2\" '$T/err'"
  check "init_from $1: nothing written" [ ! -e "$T/o-$1" ]
}
R=$T/big0
mk() { mkdir "$T/$1" && cp "$R/W.npy" "$R/H.npy" "$R/b.npy" "$T/$1/"; }
mk dtype && cp "$R/labels.npy" "$T/dtype/W.npy"
bad_init dtype "dtype '<i4' is not float64"
mk trunc && head -c 150 "$R/H.npy" >"$T/trunc/H.npy"
bad_init trunc truncated
mk trail && printf 'xxxxxxxx' >>"$T/trail/b.npy"
bad_init trail trailing
mk fortran && put_bytes "$T/fortran/W.npy" 46 'True '
bad_init fortran fortran_order
mk nan && put_bytes "$T/nan/H.npy" 136 '\000\000\000\000\000\000\370\177'
bad_init nan "not finite"
mk magic && printf 'PK\003\004 a zip file, not an array' >"$T/magic/W.npy"
bad_init magic "not a .npy"
mk zero && : >"$T/zero/H.npy"
bad_init zero "empty file"
mk shape && cp "$R/H.npy" "$T/shape/W.npy"
bad_init shape "shape"
run "$UFM" run $Q out="$T/o-sweep" $SMALL dim=8,9 init_from="$T/big0" iterations=5
check "init_from shapes checked for every point of a sweep before it starts: exit 2" \
  sh -c "[ $rc -eq 2 ] && grep -q 'shape' '$T/err' && [ ! -e '$T/o-sweep' ]"

# --resume misuse
run "$UFM" run $Q --resume "$T/no-such-dir"
check "--resume of a nonexistent directory: exit 2" is_rc 2
run "$UFM" run $Q --resume "$T/ref" lr=0.1
check "--resume with key=value: exit 2" is_rc 2
# shellcheck disable=SC2086
run "$UFM" run $Q --keep all out="$T/edit" $SMALL iterations=50 checkpoint_every=10
rm -f "$T/edit/summary.tsv"
sed -i 's/^lr = .*/lr = 0.25/' "$T/edit/config.ini"
run "$UFM" run $Q --resume "$T/edit"
check "--resume after config.ini was edited: exit 2, 'another experiment'" \
  sh -c "[ $rc -eq 2 ] && grep -q 'another experiment' '$T/err'"

echo "reliability: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
