#!/usr/bin/env bash
# Side-by-side benchmarks: each pair runs alternately (A B A B A B), the
# server pinned to CPU 0 and the load generator to CPU 1. Prints a table of
# medians, min–max and ratios, and records it in docs/performance.md.
#
#   bash benches/run.sh            # about 10 minutes on 2 cores
#   SUITES="async-framed sync-vs-tserver" bash benches/run.sh   # only these
#   ROUNDS=5 SECONDS_PER_RUN=8 bash benches/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if ! command -v taskset >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
fi

cargo build --release --workspace --quiet
cargo build --release --benches --quiet
# The volo-thrift peer is a crate of its own (its dependencies never touch
# the workspace or CI).
(cd benches/volo-peer && cargo build --release --quiet)
bench_bin() { ls -t "target/release/deps/$1-"* | grep -v '\.d$' | head -1; }
BARE_HYPER=$(bench_bin bare_hyper)
BARE_THRIFT=$(bench_bin bare_thrift)
TSERVER=$(bench_bin thrift_tserver)
VOLO=benches/volo-peer/target/release/volo-peer
THRIFTLOAD=$(bench_bin thriftload)
MEASURE=$(bench_bin measure)
COUNTS=$(bench_bin counts)
SERVE=target/release/baseplate-serve
SIM=target/release/einhorn-sim
EINHORNSH=target/release/einhornsh

# BEFORE_SERVE=PATH: a baseplate-serve built from an earlier commit, for the
# suites that check a change costs nothing when it is off (*-vs-before).
BEFORE_SERVE=${BEFORE_SERVE:-}

WORK=$(mktemp -d)
trap 'pkill -P $$ >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
# The Thrift suites call `add`, a method the app answers (the server
# answers is_healthy itself, and volo's peer wants its request argument).
# These configs also send is_healthy to the app, for `thriftload --method
# is_healthy` by hand.
app_health() { sed "s/^factory = baseplate.server.thrift$/&\nhealth.answered_by = app/" "$1"; }
app_health fixtures/thrift.ini > "$WORK/thrift.ini"
app_health fixtures/thrift.ini | sed "s/^stop_timeout.*/&\nexecution = inline/" > "$WORK/thrift-inline.ini"
app_health fixtures/thrift-async.ini > "$WORK/thrift-async.ini"
# with_metrics CONFIG PORT: the config with the exporter on PORT, writing
# to a directory of its own.
with_metrics() {
  mkdir -p "$WORK/metrics-$2"
  printf '%s\nmetrics.enabled = true\nmetrics.bind = 127.0.0.1:%s\nmetrics.multiprocess_dir = %s\n' \
    "$(cat "$1")" "$2" "$WORK/metrics-$2"
}
RESULTS="$WORK/results.txt"   # lines: SUITE SIDE METRIC VALUE

# A port below the kernel's ephemeral range (where wrk's client ports, some
# in TIME_WAIT, would collide) that nothing listens on.
free_port() {
  local low; low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  local port
  while :; do
    port=$((10000 + RANDOM % (low - 10000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

wait_http() {
  for _ in $(seq 500); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$1/" && return 0
    sleep 0.02
  done
  echo "server on port $1 did not come up:" >&2; cat "$WORK/server-$1.log" >&2; return 1
}

wait_tcp() {
  for _ in $(seq 500); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.02
  done
  echo "server on port $1 did not come up:" >&2; cat "$WORK/server-$1.log" >&2; return 1
}

# start_server KIND PORT: starts it pinned to CPU 0, prints its pid. Each
# branch execs, so the pid is the server's own and stop_server reaches it.
start_server() {
  local kind=$1 port=$2
  case $kind in
    serve-http)   exec taskset -c 0 "$SERVE" --bind "127.0.0.1:$port" fixtures/example.ini ;;
    serve-quiet)  exec env RUST_LOG=off taskset -c 0 "$SERVE" --bind "127.0.0.1:$port" fixtures/example.ini ;;
    bare-hyper)   exec taskset -c 0 "$BARE_HYPER" "127.0.0.1:$port" 2 ;;
    sim-http)     exec taskset -c 0 "$SIM" -q -d "$WORK/sim-$port.sock" -e "$WORK/sim-$port.pid" -f "$WORK/sim-$port.lock" \
                    -n 2 -m manual -b "127.0.0.1:$port,r" -- "$SERVE" fixtures/example.ini ;;
    serve-metrics) with_metrics fixtures/example.ini "$(free_port)" > "$WORK/http-metrics-$port.ini"
                  exec taskset -c 0 "$SERVE" --bind "127.0.0.1:$port" "$WORK/http-metrics-$port.ini" ;;
    before-http)  exec taskset -c 0 "$BEFORE_SERVE" --bind "127.0.0.1:$port" fixtures/example.ini ;;
    serve-thrift) exec taskset -c 0 "$SERVE" --bind "127.0.0.1:$port" "$WORK/thrift.ini" ;;
    serve-inline) exec taskset -c 0 "$SERVE" --bind "127.0.0.1:$port" "$WORK/thrift-inline.ini" ;;
    serve-async)  exec taskset -c 0 "$SERVE" --bind "127.0.0.1:$port" "$WORK/thrift-async.ini" ;;
    async-metrics) with_metrics "$WORK/thrift-async.ini" "$(free_port)" > "$WORK/thrift-metrics-$port.ini"
                  exec taskset -c 0 "$SERVE" --bind "127.0.0.1:$port" "$WORK/thrift-metrics-$port.ini" ;;
    before-async) exec taskset -c 0 "$BEFORE_SERVE" --bind "127.0.0.1:$port" fixtures/thrift-async.ini ;;
    bare-thrift)  exec taskset -c 0 "$BARE_THRIFT" "127.0.0.1:$port" ;;
    tserver)      exec taskset -c 0 "$TSERVER" "127.0.0.1:$port" 64 ;;
    volo)         exec taskset -c 0 "$VOLO" "127.0.0.1:$port" ;;
  esac >"$WORK/server-$port.log" 2>&1 &
  echo $!
}

stop_server() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Whether SUITE is to run: all of them, or those named in $SUITES.
want() { [ -z "${SUITES:-}" ] || [[ " $SUITES " == *" $1 "* ]]; }

# http_run SUITE SIDE KIND
http_run() {
  want "$1" || return 0
  local port; port=$(free_port)
  local pid; pid=$(start_server "$3" "$port")
  wait_http "$port"
  local out; out=$(taskset -c 1 wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" --latency "http://127.0.0.1:$port/")
  stop_server "$pid"
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}')
  echo "$1 $2 throughput $rps" >> "$RESULTS"
  echo "$1 $2 p99_ms $p99" >> "$RESULTS"
}

# thrift_run SUITE SIDE KIND MODE METHOD
thrift_run() {
  want "$1" || return 0
  local port; port=$(free_port)
  local pid; pid=$(start_server "$3" "$port")
  wait_tcp "$port"
  local out
  if ! out=$(taskset -c 1 "$THRIFTLOAD" "127.0.0.1:$port" --connections 32 --seconds "$SECONDS_PER_RUN" --mode "$4" --method "$5"); then
    echo "suite $1, side $2 ($3): the load generator failed" >&2
    exit 1
  fi
  stop_server "$pid"
  echo "$1 $2 throughput $(echo "$out" | awk '{print $2}')" >> "$RESULTS"
  echo "$1 $2 p99_ms $(echo "$out" | awk '{print $6}')" >> "$RESULTS"
}

# A config of 1M keys in [app:main], for config_run.
CONFIG_1M="$WORK/1m-keys.ini"
awk 'BEGIN {
  print "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nfactory = baseplate.examples.http:make_app"
  for (i = 0; i < 1000000; i++) print "key_" i " = value " i
}' > "$CONFIG_1M"

# seconds COMMAND...: its wall-clock time, output discarded.
seconds() { local TIMEFORMAT=%R; { time "$@" >/dev/null 2>&1; } 2>&1; }

# config_run SUITE: loading the 1M-key config, `baseplate-serve --check`
# (A) against CPython's configparser reading it and its [app:main] (B).
config_run() {
  want "$1" || return 0
  if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is missing: suite $1 skipped" >&2
    return 0
  fi
  echo "$1 A seconds $(seconds taskset -c 0 "$SERVE" --check "$CONFIG_1M")" >> "$RESULTS"
  echo "$1 B seconds $(seconds taskset -c 0 python3 -c '
import configparser, sys
parser = configparser.ConfigParser()
parser.read(sys.argv[1])
dict(parser.items("app:main"))' "$CONFIG_1M")" >> "$RESULTS"
}

# upgrade_run SUITE SIDE [EINHORN-SIM OPTIONS...]: a smooth upgrade of 8
# baseplate-serve workers (-m manual -b), in seconds from `einhornsh -e
# upgrade` to its "Upgrade done". A is einhorn-sim's ACK pacing, B
# Einhorn's pacing (--einhorn-pacing, -s 1).
upgrade_run() {
  want "$1" || return 0
  local suite=$1 side=$2; shift 2
  local port; port=$(free_port)
  local sock="$WORK/up-$port.sock" events="$WORK/up-$port.events"
  "$SIM" -q -d "$sock" -e "$WORK/up-$port.pid" -f "$WORK/up-$port.lock" --events "$events" \
    -n 8 -m manual -b "127.0.0.1:$port,r" "$@" -- "$SERVE" fixtures/example.ini \
    >"$WORK/server-$port.log" 2>&1 &
  local pid=$!
  for _ in $(seq 500); do
    local acks; acks=$(grep -c '"event":"ack"' "$events" 2>/dev/null || true)
    [ "${acks:-0}" -ge 8 ] && break
    sleep 0.02
  done
  echo "$suite $side seconds $(seconds "$EINHORNSH" -d "$sock" -e upgrade)" >> "$RESULTS"
  stop_server "$pid"
}

# counts_run SUITE SIDE REQUEST SERVER ARGS...: instructions, syscalls and
# context switches per request (benches/counts.rs; `{port}` in an argument
# is the server's port). Counts do not depend on the machine's load, so
# each is taken once, not per round.
counts_run() {
  want "$1" || return 0
  local suite=$1 side=$2 request=$3; shift 3
  local out; out=$("$COUNTS" "$request" -- "$@")
  for metric in instructions syscalls switches; do
    echo "$suite $side $metric $(echo "$out" | awk -v m="$metric" '{for (i=1;i<NF;i++) if ($i==m) print $(i+1)}')" >> "$RESULTS"
  done
}

if ! command -v valgrind >/dev/null 2>&1 || ! command -v strace >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq valgrind strace >/dev/null
fi
with_metrics fixtures/example.ini 0 > "$WORK/http-metrics-counts.ini"
with_metrics "$WORK/thrift-async.ini" 0 > "$WORK/thrift-metrics-counts.ini"
echo "counting instructions, syscalls and context switches per request..." >&2
SERVE_ARGS=(--bind '127.0.0.1:{port}')
counts_run http-hello A http-get "$SERVE" "${SERVE_ARGS[@]}" fixtures/example.ini
counts_run http-hello B http-get "$BARE_HYPER" '127.0.0.1:{port}' 2
counts_run http-metrics A http-get "$SERVE" "${SERVE_ARGS[@]}" "$WORK/http-metrics-counts.ini"
counts_run http-metrics B http-get "$BARE_HYPER" '127.0.0.1:{port}' 2
counts_run http-post1k A http-post1k "$SERVE" "${SERVE_ARGS[@]}" fixtures/example.ini
counts_run http-post1k B http-post1k "$BARE_HYPER" '127.0.0.1:{port}' 2
counts_run thrift-async-framed-add A thrift-framed-add "$SERVE" "${SERVE_ARGS[@]}" fixtures/thrift-async.ini
counts_run thrift-async-framed-add B thrift-framed-add "$BARE_THRIFT" '127.0.0.1:{port}'
counts_run thrift-async-header-add A thrift-header-add "$SERVE" "${SERVE_ARGS[@]}" fixtures/thrift-async.ini
counts_run thrift-async-header-add B thrift-framed-add "$BARE_THRIFT" '127.0.0.1:{port}'
counts_run thrift-async-framed-echo1k A thrift-framed-echo1k "$SERVE" "${SERVE_ARGS[@]}" fixtures/thrift-async.ini
counts_run thrift-async-framed-echo1k B thrift-framed-echo1k "$BARE_THRIFT" '127.0.0.1:{port}'
counts_run thrift-async-header-echo1k A thrift-header-echo1k "$SERVE" "${SERVE_ARGS[@]}" fixtures/thrift-async.ini
counts_run thrift-async-header-echo1k B thrift-framed-echo1k "$BARE_THRIFT" '127.0.0.1:{port}'
counts_run thrift-async-vs-volo A thrift-framed-add "$SERVE" "${SERVE_ARGS[@]}" fixtures/thrift-async.ini
counts_run thrift-async-vs-volo B thrift-framed-add "$VOLO" '127.0.0.1:{port}'
counts_run thrift-async-metrics A thrift-framed-add "$SERVE" "${SERVE_ARGS[@]}" "$WORK/thrift-metrics-counts.ini"
counts_run thrift-async-metrics B thrift-framed-add "$BARE_THRIFT" '127.0.0.1:{port}'
counts_run thrift-sync-framed-add A thrift-framed-add "$SERVE" "${SERVE_ARGS[@]}" fixtures/thrift.ini
counts_run thrift-sync-framed-add B thrift-framed-add "$TSERVER" '127.0.0.1:{port}' 64
counts_run thrift-sync-framed-echo1k A thrift-framed-echo1k "$SERVE" "${SERVE_ARGS[@]}" fixtures/thrift.ini
counts_run thrift-sync-framed-echo1k B thrift-framed-echo1k "$TSERVER" '127.0.0.1:{port}' 64
counts_run thrift-sync-header-add A thrift-header-add "$SERVE" "${SERVE_ARGS[@]}" fixtures/thrift.ini
counts_run thrift-sync-header-add B thrift-framed-add "$TSERVER" '127.0.0.1:{port}' 64
# einhorn-sim's hot paths, with no anchor (Einhorn itself needs Ruby): an
# einhornsh round trip (`ehlo`, `state`) and a worker's ACK on a connection
# of its own (`{socket}` is the master's command socket).
counts_run einhorn-ehlo A einhorn-ehlo "$SIM" -d '{socket}' -n 1 -- sleep 100000
counts_run einhorn-state A einhorn-state "$SIM" -d '{socket}' -n 1 -- sleep 100000
counts_run einhorn-ack A einhorn-ack "$SIM" -d '{socket}' -n 1 -m manual -- sleep 100000

echo "running $ROUNDS rounds of ${SECONDS_PER_RUN}s per side..." >&2
for round in $(seq "$ROUNDS"); do
  echo "round $round" >&2
  http_run http-hello A serve-http;   http_run http-hello B bare-hyper
  http_run http-einhorn A sim-http;   http_run http-einhorn B bare-hyper
  http_run logging A serve-http;      http_run logging B serve-quiet
  http_run http-metrics A serve-metrics;       http_run http-metrics B bare-hyper
  http_run http-metrics-cost A serve-metrics;  http_run http-metrics-cost B serve-http
  if [ -n "$BEFORE_SERVE" ]; then
    http_run http-vs-before A serve-http;  http_run http-vs-before B before-http
  fi
  thrift_run thrift-framed A serve-thrift framed add;  thrift_run thrift-framed B bare-thrift framed add
  thrift_run thrift-header A serve-thrift header add;  thrift_run thrift-header B bare-thrift framed add
  thrift_run thrift-echo1k A serve-thrift framed echo1k;      thrift_run thrift-echo1k B bare-thrift framed echo1k
  thrift_run thrift-inline A serve-inline framed add;  thrift_run thrift-inline B bare-thrift framed add
  thrift_run sync-vs-tserver A serve-thrift framed add;  thrift_run sync-vs-tserver B tserver framed add
  thrift_run sync-echo1k-vs-tserver A serve-thrift framed echo1k;  thrift_run sync-echo1k-vs-tserver B tserver framed echo1k
  thrift_run async-framed A serve-async framed add;  thrift_run async-framed B bare-thrift framed add
  thrift_run async-header A serve-async header add;  thrift_run async-header B bare-thrift framed add
  thrift_run async-echo1k A serve-async framed echo1k;      thrift_run async-echo1k B bare-thrift framed echo1k
  thrift_run async-vs-volo A serve-async framed add;  thrift_run async-vs-volo B volo framed add
  thrift_run async-echo1k-vs-volo A serve-async framed echo1k;  thrift_run async-echo1k-vs-volo B volo framed echo1k
  thrift_run thrift-metrics A async-metrics framed add;       thrift_run thrift-metrics B bare-thrift framed add
  thrift_run thrift-metrics-cost A async-metrics framed add;  thrift_run thrift-metrics-cost B serve-async framed add
  if [ -n "$BEFORE_SERVE" ]; then
    thrift_run thrift-vs-before A serve-async framed add;  thrift_run thrift-vs-before B before-async framed add
  fi
  config_run config-1m-keys
  upgrade_run upgrade-8 A;  upgrade_run upgrade-8 B --einhorn-pacing
done
: > "$WORK/measure.txt"
if [ -z "${SUITES:-}" ]; then
  "$MEASURE" startup "$SERVE" fixtures/example.ini > "$WORK/measure.txt"
  "$MEASURE" ack "$SERVE" fixtures/example.ini >> "$WORK/measure.txt"
  "$MEASURE" rss "$SERVE" fixtures/example.ini >> "$WORK/measure.txt"
  "$MEASURE" shutdown "$SERVE" fixtures/example.ini >> "$WORK/measure.txt"
fi

TABLE="$WORK/table.md"
{
  echo "| suite (A vs B) | metric | A median (min–max) | B median (min–max) | A / B |"
  echo "|---|---|---|---|---|"
  awk '
    { key=$1" "$3; vals[key" "$2]=vals[key" "$2]" "$4; keys[key]=1 }
    function stats(list,   n, a, i, j, t, med) {
      n=split(list, a, " ")
      for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (a[j]+0 < a[i]+0) { t=a[i]; a[i]=a[j]; a[j]=t }
      med=a[int((n+1)/2)]
      return sprintf("%s (%s–%s)", med, a[1], a[n]) "|" med
    }
    END {
      order="thrift-async-framed-add thrift-async-header-add thrift-async-framed-echo1k thrift-async-header-echo1k thrift-async-vs-volo thrift-async-metrics thrift-sync-framed-add thrift-sync-framed-echo1k thrift-sync-header-add einhorn-ehlo einhorn-state einhorn-ack http-post1k http-hello http-einhorn logging http-metrics http-metrics-cost http-vs-before thrift-framed thrift-header thrift-echo1k thrift-inline sync-vs-tserver sync-echo1k-vs-tserver async-framed async-header async-echo1k async-vs-volo async-echo1k-vs-volo thrift-metrics thrift-metrics-cost thrift-vs-before config-1m-keys upgrade-8"
      split(order, suites, " ")
      split("instructions syscalls switches throughput p99_ms seconds", metrics, " ")
      for (s=1; s in suites; s++) for (m=1; m<=6; m++) {
        metric = metrics[m]
        key=suites[s]" "metric
        if (!(key in keys)) continue
        split(stats(vals[key" A"]), A, "|")
        if ((key" B") in vals) split(stats(vals[key" B"]), B, "|"); else { B[1] = "-"; B[2] = 0 }
        ratio = (B[2]+0 > 0) ? sprintf("%.2f", A[2]/B[2]) : "-"
        printf "| %s | %s | %s | %s | %s |\n", suites[s], metric, A[1], B[1], ratio
      }
    }' "$RESULTS"
  echo
  echo "| measurement | value |"
  echo "|---|---|"
  awk '{ printf "| %s | %s |\n", $1, $2 }' "$WORK/measure.txt"
} > "$TABLE"
cat "$TABLE"

# Record a full run in docs/performance.md, keeping the previous one.
if [ -n "${SUITES:-}" ]; then
  echo "SUITES was set: not recorded" >&2
  exit 0
fi
DOC=docs/performance.md
STAMP="$(date -u +%Y-%m-%d) on $(nproc) cores, $(uname -r), ${ROUNDS} rounds of ${SECONDS_PER_RUN}s"
awk -v table="$TABLE" -v stamp="$STAMP" '
  BEGIN { while ((getline line < table) > 0) fresh = fresh line "\n" }
  /<!-- latest:start -->/ { print; print "Run " stamp ":\n"; printf "%s", fresh; skipping=1; next }
  /<!-- latest:end -->/ { skipping=0; print; next }
  /<!-- previous:start -->/ { print; printf "%s", old; skipprev=1; next }
  /<!-- previous:end -->/ { skipprev=0; print; next }
  skipping { old = old $0 "\n"; next }
  skipprev { next }
  { print }
' "$DOC" > "$WORK/doc.md" && cp "$WORK/doc.md" "$DOC"
echo "recorded in $DOC" >&2
