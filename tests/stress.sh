#!/usr/bin/env bash
# Runs tests again and again while a CPU hog keeps both cores busy
# (stress-ng --cpu 2), and counts the runs that pass. Flaky is broken:
# every run must pass.
#
#   bash tests/stress.sh              # cargo test --workspace, 10 runs
#   bash tests/stress.sh stall        # the Thrift stall scenarios, 50 runs
#   RUNS=3 bash tests/stress.sh       # fewer (or more) runs
#
# Failed runs' output is kept in target/stress/.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-suite}
case $mode in
  suite) runs=${RUNS:-10}; command=(cargo test --workspace --locked) ;;
  stall) runs=${RUNS:-50}; command=(cargo test --locked --test thrift_isolation -- sleeper) ;;
  *) echo "usage: bash tests/stress.sh [suite|stall]" >&2; exit 2 ;;
esac

if ! command -v stress-ng >/dev/null 2>&1; then
  echo "installing stress-ng" >&2
  apt-get update -qq && apt-get install -y -qq stress-ng >/dev/null
fi

# Build everything first, without the hog, so each run only tests.
cargo test --workspace --locked --no-run --quiet

mkdir -p target/stress
stress-ng --cpu 2 --quiet &
hog=$!
trap 'kill "$hog" 2>/dev/null || true' EXIT

passed=0
failed=0
for run in $(seq "$runs"); do
  log="target/stress/$mode-$run.log"
  started=$(date +%s)
  # A hung run is a failed run: 10 minutes is four times a run's length
  # under the hog here.
  if timeout --kill-after=10 600 "${command[@]}" >"$log" 2>&1; then
    passed=$((passed + 1))
    rm -f "$log"
    echo "run $run: passed ($(( $(date +%s) - started )) s)" >&2
  else
    failed=$((failed + 1))
    echo "run $run: FAILED ($(( $(date +%s) - started )) s), output in $log:" >&2
    tail -3 "$log" | grep -q . || echo "  (no output: hung?)" >&2
    grep -E "^test .* FAILED|panicked at|^    [a-z_]+$" "$log" | head -20 >&2 || true
  fi
done
echo "stress ($mode, under stress-ng --cpu 2): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
