# tests/checks.sh -- the check helpers shared by tests/cli.sh and tests/reliability.sh
# (sourced, after T is set: the scratch directory holding out and err).
pass=0
fail=0
tab=$(printf '\t')

ok() {
  pass=$((pass + 1))
  echo "ok   - $1"
}
bad() {
  fail=$((fail + 1))
  echo "FAIL - $1"
  if [ -s "$T/err" ]; then sed 's/^/       stderr: /' "$T/err" | head -n 5; fi
}
# check DESCRIPTION COMMAND...: the command's status decides.
check() {
  d=$1
  shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}
# run COMMAND...: sets rc; stdout in $T/out, stderr in $T/err.
run() {
  rc=0
  "$@" >"$T/out" 2>"$T/err" || rc=$?
}
is_rc() { [ "$rc" -eq "$1" ]; }
