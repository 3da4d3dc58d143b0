#!/bin/sh
# tests/mpi.sh -- (MPI builds only) a sweep spread over MPI ranks gives the same
# results.tsv and summary.tsv, byte for byte, as the OpenMP run.
set -eu
T=$(mktemp -d "${TMPDIR:-/tmp}/ufm-mpi.XXXXXX")
trap 'rm -rf "$T"' EXIT
# CI runs as root; oversubscribe: 3 ranks on 2 cores
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMP_NUM_THREADS
pass=0
fail=0
check() {
  d=$1
  shift
  if "$@"; then pass=$((pass + 1)); echo "ok   - $d"; else fail=$((fail + 1)); echo "FAIL - $d"; fi
}
G="classes=3,4 dim=2,4,8 n=4 iterations=80 seeds=2 log_points=5 lr=1.5"
# shellcheck disable=SC2086
"$UFM" --threads 2 run --quiet --no-plot out="$T/omp" $G
for np in 2 3; do
  # shellcheck disable=SC2086
  if mpirun --oversubscribe -np "$np" "$UFM" run --quiet --no-plot out="$T/mpi$np" $G; then rc=0; else rc=$?; fi
  check "mpirun -np $np exits 0" [ "$rc" -eq 0 ]
  check "mpirun -np $np: results.tsv equals the OpenMP run's" cmp -s "$T/omp/results.tsv" "$T/mpi$np/results.tsv"
  check "mpirun -np $np: summary.tsv equals the OpenMP run's" cmp -s "$T/omp/summary.tsv" "$T/mpi$np/summary.tsv"
  check "mpirun -np $np: every point ran once" [ "$(ls -d "$T/mpi$np"/p0* | wc -l)" -eq 12 ]
done
# a plain run under mpirun is rank 0's alone
if mpirun --oversubscribe -np 2 "$UFM" run --quiet --no-plot out="$T/plain" classes=3 dim=4 n=3 iterations=20; then rc=0; else rc=$?; fi
check "a plain run under mpirun exits 0" [ "$rc" -eq 0 ]
check "a plain run under mpirun writes its run directory" [ -f "$T/plain/summary.tsv" ]
echo "mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
