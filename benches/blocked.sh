#!/usr/bin/env bash
# Blocked-request throughput with each block-event sink (issue figure: the
# proxy's blocked-request throughput with the incident store no more than 10%
# lower than with the JSON-lines sink).
#
# The same proxy (examples/bench-sink-proxy: `hallpass run`'s proxy with the
# sink chosen on the command line) serves a category block page to wrk, with
# its events going to events.jsonl, to SQLite, and to the local PostgreSQL (a
# fresh schema, dropped afterwards). Every block page waits for its event to be
# acknowledged by the sink (committed, or fsync'd to the spool after 250 ms),
# so the sink's cost is in the figure. Runs alternate (jsonl, sqlite, postgres,
# then again) and each sink's best round is reported, with the events the store
# holds afterwards as a check that every block was recorded.
#
# Layout: the proxy (and its event writer thread) pinned to core 0, wrk on
# core 1. Loopback only; each run is bounded by DURATION seconds.
#
# Usage: bash benches/blocked.sh   (DURATION=8 ROUNDS=2 CONNECTIONS=64)
# Needs: wrk, taskset, psql (Debian: apt-get install wrk util-linux postgresql-client).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-64}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}

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

# $1: sink (jsonl, sqlite, postgres); prints "req/s non2xx stored".
run() {
    local dir="$WORK/run-$1-$2" store=""
    mkdir -p "$dir"
    case $1 in
        sqlite) store='store = "sqlite"' ;;
        postgres) store="store = \"$PG?options=-csearch_path%3D$SCHEMA\"" ;;
    esac
    [ "$1" = postgres ] && psql -q "$PG" -c "DROP SCHEMA $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null 2>&1
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
    TARGET="http://games.test/" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s benches/load/proxy.lua "http://$addr/" >"$dir/wrk" 2>&1
    exec 3>&-
    wait "$PROXY_PID"
    PROXY_PID=
    local rps non403 stored
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$dir/wrk")
    total=$(awk '/requests in/ {print $1}' "$dir/wrk")
    case $1 in
        jsonl) stored=$(cat "$dir"/state/events.jsonl | wc -l) ;;
        sqlite) stored=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from events').fetchone()[0])" "$dir/state/incidents.sqlite3") ;;
        postgres) stored=$(psql -tA "$PG" -c "SELECT count(*) FROM $SCHEMA.events") ;;
    esac
    echo "$rps $total $stored"
}

echo "hallpass blocked-request throughput by event sink: $CONNECTIONS connections, proxy on core 0, wrk on core 1, ${DURATION}s x $ROUNDS rounds"
declare -A best total stored
for round in $(seq "$ROUNDS"); do
    for sink in jsonl sqlite postgres; do
        read -r r t s < <(run "$sink" "$round")
        echo "round $round  $sink: $r req/s, $t blocked, $s events stored"
        if [ -z "${best[$sink]:-}" ] || [ "$r" -gt "${best[$sink]}" ]; then best[$sink]=$r; total[$sink]=$t; stored[$sink]=$s; fi
    done
done
printf '%-10s %12s %14s\n' "sink" "best req/s" "vs jsonl"
for sink in jsonl sqlite postgres; do
    printf '%-10s %12s %14s\n' "$sink" "${best[$sink]}" "$(python3 -c "import sys; print(f'{int(sys.argv[2])/int(sys.argv[1]):.2f}')" "${best[jsonl]}" "${best[$sink]}")"
done
