#!/usr/bin/env bash
# Blocked-request throughput with each block-event sink (issue figure: the
# proxy's blocked-request throughput with the incident store no more than 10%
# lower than with the JSON-lines sink).
#
# The same proxy (examples/bench-sink-proxy: `hallpass run`'s proxy with the
# sink chosen on the command line) serves a category block page to wrk, with
# its events going to events.jsonl, to SQLite, and to the local PostgreSQL (a
# fresh schema, dropped afterwards). Every block page waits for its event to be
# durable: for the JSON-lines sink, its append to events.jsonl; for the
# incident store, its append to the local journal (fsync'd), from which the
# store thread fills the database in large batches. Runs alternate (each sink
# in turn, then again) and each sink's best round is reported, with the events
# the store holds once the proxy has stopped, as a check that every block was
# recorded exactly once.
#
# Layout: the proxy pinned to core 0, wrk on core 1. The incident store's own
# thread (`hallpass-store`, which does the database work) runs on core 1 as on
# any multi-core server ("sqlite", "postgres"), or stays on core 0 with the
# request path ("sqlite@1core", "postgres@1core": the worst case, where every
# microsecond of database work is one less for requests). Loopback only; each
# run is bounded by DURATION seconds.
#
# Usage: bash benches/blocked.sh   (DURATION=8 ROUNDS=2 CONNECTIONS=64
#                                   SINKS="jsonl sqlite sqlite@1core postgres postgres@1core")
# Needs: wrk, taskset, psql (Debian: apt-get install wrk util-linux postgresql-client).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-64}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
SINKS=${SINKS:-jsonl sqlite sqlite@1core postgres postgres@1core}

for tool in wrk taskset psql python3; do
    command -v "$tool" >/dev/null || { echo "benches/blocked.sh: $tool is missing" >&2; exit 1; }
done
cargo build --release --quiet --example bench-sink-proxy
BIN=$ROOT/target/release/examples/bench-sink-proxy

WORK=$(mktemp -d)
SCHEMA="hallpass_bench_$$"
cleanup() {
    [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null || true
    psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
psql -q "$PG" -c "CREATE SCHEMA $SCHEMA" >/dev/null

mkdir -p "$WORK/lists/t/games"
for c in child-abuse terrorism malware phishing; do
    mkdir -p "$WORK/lists/t/$c"
    echo "$c.hallpass-test.invalid" >"$WORK/lists/t/$c/domains"
done
echo "games.test" >"$WORK/lists/t/games/domains"
cat >"$WORK/policy.toml" <<'TOML'
version = 1
[baseline]
child-abuse = ["t:child-abuse"]
terrorism = ["t:terrorism"]
malware = ["t:malware"]
phishing = ["t:phishing"]
[categories.games]
lists = ["t:games"]
[bands.ks2]
ages = "7-10"
default = "allow"
block = ["games"]
[groups]
year5 = { band = "ks2" }
[[subnets]]
cidr = "127.0.0.0/8"
group = "year5"
TOML

# $1: sink (jsonl, sqlite, postgres, with @1core to keep the store thread on
# the proxy's core); prints "req/s blocked stored".
run() {
    local dir="$WORK/run-$1-$2" store="" engine=${1%@1core}
    mkdir -p "$dir"
    case $engine in
        sqlite) store='store = "sqlite"' ;;
        postgres) store="store = \"$PG?options=-csearch_path%3D$SCHEMA\"" ;;
    esac
    [ "$engine" = postgres ] && psql -q "$PG" -c "DROP SCHEMA $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null 2>&1
    cat >"$dir/hallpass.toml" <<TOML
version = 1
policy = "$WORK/policy.toml"
state_dir = "state"
[lists.t]
format = "squidguard"
path = "$WORK/lists/t"
[proxy]
listen = ["127.0.0.1:0"]
intercept = false
[incidents]
$store
TOML
    local sink=store
    [ "$1" = jsonl ] && sink=jsonl
    mkfifo "$dir/stdin"
    taskset -c 0 "$BIN" "$dir/hallpass.toml" "$sink" <"$dir/stdin" >"$dir/out" 2>"$dir/err" &
    PROXY_PID=$!
    exec 3>"$dir/stdin"
    for _ in $(seq 100); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
    local addr
    addr=$(sed -n 's/^listening on //p' "$dir/out")
    [ -n "$addr" ] || { echo "bench-sink-proxy did not start:" >&2; cat "$dir/err" >&2; exit 1; }
    if [ "$engine" != jsonl ] && [ "$engine" = "$1" ]; then
        local moved=
        for task in /proc/"$PROXY_PID"/task/*; do
            if [ "$(cat "$task/comm")" = hallpass-store ]; then
                taskset -pc 1 "${task##*/}" >/dev/null
                moved=1
            fi
        done
        [ -n "$moved" ] || { echo "no hallpass-store thread to move" >&2; exit 1; }
    fi
    local before_req before_store
    read -r before_req before_store < <(cpu_ticks "$PROXY_PID")
    TARGET="http://games.test/" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s benches/load/proxy.lua "http://$addr/" >"$dir/wrk" 2>&1
    local after_req after_store
    read -r after_req after_store < <(cpu_ticks "$PROXY_PID")
    exec 3>&-
    wait "$PROXY_PID"
    PROXY_PID=
    local rps non403 stored
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$dir/wrk")
    total=$(awk '/requests in/ {print $1}' "$dir/wrk")
    case $engine in
        jsonl) stored=$(cat "$dir"/state/events.jsonl | wc -l) ;;
        sqlite) stored=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from events').fetchone()[0])" "$dir/state/incidents.sqlite3") ;;
        postgres) stored=$(psql -tA "$PG" -c "SELECT count(*) FROM $SCHEMA.events") ;;
    esac
    # CPU per blocked request: the request path (every thread but the store's)
    # and the store thread, in microseconds.
    local tick
    tick=$(getconf CLK_TCK)
    echo "$rps $total $stored $(( (after_req - before_req) * 1000000 / tick / total )) $(( (after_store - before_store) * 1000000 / tick / total ))"
}

# CPU ticks (user + system) of a process: its threads but `hallpass-store`,
# then `hallpass-store`.
cpu_ticks() {
    local req=0 store=0 task fields
    for task in /proc/"$1"/task/*; do
        fields=$(sed 's/.*) //' "$task/stat" 2>/dev/null) || continue
        set -- $fields
        if [ "$(cat "$task/comm" 2>/dev/null)" = hallpass-store ]; then
            store=$((store + ${12} + ${13}))
        else
            req=$((req + ${12} + ${13}))
        fi
    done
    echo "$req $store"
}

echo "hallpass blocked-request throughput by event sink: $CONNECTIONS connections, proxy on core 0, wrk on core 1, ${DURATION}s x $ROUNDS rounds"
echo "(sink@1core: the store thread on core 0 with the proxy; otherwise on core 1)"
declare -A best total stored cpu_req cpu_store
for round in $(seq "$ROUNDS"); do
    for sink in $SINKS; do
        read -r r t s cr cs < <(run "$sink" "$round")
        echo "round $round  $sink: $r req/s, $t blocked, $s events stored; CPU per block: request path ${cr} us, store thread ${cs} us"
        if [ -z "${best[$sink]:-}" ] || [ "$r" -gt "${best[$sink]}" ]; then best[$sink]=$r; total[$sink]=$t; stored[$sink]=$s; cpu_req[$sink]=$cr; cpu_store[$sink]=$cs; fi
    done
done
printf '%-16s %11s %9s %10s %10s %14s %14s\n' "sink" "best req/s" "vs jsonl" "blocked" "stored" "us/req (path)" "us/req (store)"
for sink in $SINKS; do
    printf '%-16s %11s %9s %10s %10s %14s %14s\n' "$sink" "${best[$sink]}" "$(python3 -c "import sys; print(f'{int(sys.argv[2])/int(sys.argv[1]):.2f}')" "${best[jsonl]}" "${best[$sink]}")" "${total[$sink]}" "${stored[$sink]}" "${cpu_req[$sink]}" "${cpu_store[$sink]}"
done
