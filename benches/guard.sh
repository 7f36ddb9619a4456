#!/usr/bin/env bash
# The instruction-count guard that CI runs: counts baseplate-serve's CPU
# instructions per request for each suite in benches/baseline.txt (with
# callgrind, two runs whose difference cancels startup; see
# benches/counts.rs) and fails when one has grown more than 3% over its
# baseline. A suite over the bound is counted twice more and fails only if
# all three counts are over (one count varies by up to 2% here).
#
#   bash benches/guard.sh             # check every suite
#   UPDATE=1 bash benches/guard.sh    # print fresh baseline lines instead
#
# Raising a baseline is a deliberate commit that says why.
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT_PERCENT=${LIMIT_PERCENT:-3}

if ! command -v valgrind >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
cargo build --release --locked --quiet --bin baseplate-serve --bench counts
COUNTS=$(ls -t target/release/deps/counts-* | grep -v '\.d$' | head -1)
SERVE=target/release/baseplate-serve

count() { "$COUNTS" --counts instructions "$1" -- "$SERVE" --bind '127.0.0.1:{port}' "fixtures/$2" | awk '{print $2}'; }

failed=0
while read -r suite request file baseline; do
  case $suite in ''|'#'*) continue ;; esac
  now=$(count "$request" "$file")
  if [ -n "${UPDATE:-}" ]; then
    echo "$suite $request $file $now"
    continue
  fi
  limit=$(( baseline * (100 + LIMIT_PERCENT) / 100 ))
  # Over the limit: the least of three counts decides (timing only ever
  # adds work: a wake-up, a park).
  for attempt in 2 3; do
    [ "$now" -gt "$limit" ] || break
    again=$(count "$request" "$file")
    echo "$suite: count $attempt: $again (limit $limit)" >&2
    [ "$again" -lt "$now" ] && now=$again
  done
  ratio=$(awk -v a="$now" -v b="$baseline" 'BEGIN { printf "%.3f", a / b }')
  if [ "$now" -gt "$limit" ]; then
    echo "FAIL $suite: $now instructions per request, baseline $baseline (x$ratio, limit +$LIMIT_PERCENT%)"
    failed=1
  else
    echo "ok   $suite: $now instructions per request, baseline $baseline (x$ratio)"
  fi
done < benches/baseline.txt
exit $failed
