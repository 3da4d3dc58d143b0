#!/bin/sh
# validate.sh -- `make validate`: THEORY.md checked in full (about a minute
# on 2 idle cores; the budget is 10 minutes on a shared machine).
#
#  1. tests/test_theory --full: every closed form against independent
#     formulas, the predicted minimisers for stationarity, and converged
#     simulations at many parameter points (sections 1-2), the trivial
#     regime, minority collapse on both sides of its threshold (section 3),
#     the SVM value and margin bound (section 4), fitted rates (section 5);
#  2. tests/theory_reference.py: `ufm theory` recomputed in NumPy by other
#     routes (full SVDs, its own gradient descent);
#  3. the rate figure: experiments/rate.ini run into runs/rate, drawn by
#     plots/rate.gp into runs/rate/rate.png and rate.pdf.
#
# Usage (make validate does this): UFM=ufm validate.sh TEST_THEORY SRCDIR
# Writes runs/rate/ and validate.log in the current directory; exit status
# 0 iff every step passed.
set -u
: "${UFM:?set UFM to the ufm binary}"
TT=$1
SRC=$2
LOG=validate.log
t0=$(date +%s)
fails=""
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }
step() { # step NAME PATTERN COMMAND...: run, log, echo the lines matching PATTERN
  name=$1
  pat=$2
  shift 2
  say ""
  say "== $name"
  s0=$(date +%s)
  out=$(mktemp)
  if "$@" >"$out" 2>&1; then r=ok; else r=FAILED; fails="$fails
  $name"; fi
  cat "$out" >>"$LOG"
  grep -E "$pat" "$out" | sed 's/^/   /'
  rm -f "$out"
  say "== $name: $r ($(($(date +%s) - s0)) s)"
}

step "1. tests/test_theory --full" '^# |PASSED|FAILED|ERROR|LINE' "$TT" --full
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  step "2a. NumPy closed forms (tests/theory_reference.py formulas)" '^(ok|FAIL) |failed' \
    /usr/bin/python3 "$SRC/tests/theory_reference.py" formulas "$UFM"
  step "2b. NumPy minimisation (tests/theory_reference.py minimise)" '^(ok|FAIL) |failed' \
    /usr/bin/python3 "$SRC/tests/theory_reference.py" minimise "$UFM"
else
  say "== 2. skipped: /usr/bin/python3 with numpy not found (setup.sh installs python3-numpy)"
fi
step "3a. rate experiment (experiments/rate.ini -> runs/rate)" 'ufm' \
  "$UFM" run --quiet --force "$SRC/experiments/rate.ini" out=runs/rate
if command -v gnuplot >/dev/null 2>&1; then
  step "3b. rate figure (plots/rate.gp -> runs/rate/rate.png, rate.pdf)" 'rate.gp' \
    gnuplot -e "dir='runs/rate'; title='experiments/rate.ini'" "$SRC/plots/rate.gp"
else
  say "== 3b. skipped: gnuplot not found"
fi
say ""
say "validate: $(($(date +%s) - t0)) s in all; log in $LOG"
if [ -n "$fails" ]; then
  say "validate: FAILED:$fails"
  exit 1
fi
say "validate: all passed"
