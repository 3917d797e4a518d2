#!/usr/bin/env bash
# Instructions per allowed plain-HTTP request, counted by callgrind: the
# figure of benches/load.sh's allowed-HTTP row that does not move with the
# machine's speed or other load (the same binary and inputs count the same
# within a fraction of a per cent), so a change of 1-2 % is seen in one run.
# User-space instructions only: the kernel's share (the socket calls, the
# same four per request for every binary) is not counted.
#
# Each binary runs in turn under `valgrind --tool=callgrind` with the ~1 M-domain
# policy of benches/load.sh, instrumentation is switched on after a warm-up,
# and wrk sends DURATION seconds of allowed requests through it. The baseline,
# measured in the same run, is benches/load/bare_forwarder.rs: hyper's server
# and client with nothing else.
#
# Usage: bash benches/instructions.sh [HALLPASS_BINARY ...]
#        (default: target/release/hallpass; DURATION=15 CONNECTIONS=16)
# Needs: valgrind, wrk, taskset, curl (Debian: apt-get install valgrind wrk util-linux curl).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-16}
SHARED=${SHARED:-$ROOT/../shared/data}
for tool in valgrind callgrind_control wrk taskset curl; do
    command -v "$tool" >/dev/null || { echo "benches/instructions.sh: $tool is missing (apt-get install valgrind wrk util-linux curl)" >&2; exit 1; }
done
[ -d "$SHARED/ut1" ] || { echo "benches/instructions.sh: $SHARED/ut1 is missing" >&2; exit 1; }
cargo build --release --quiet --bin hallpass --example bench-origin --example bench-bare-forwarder
BINARIES=("$@")
[ ${#BINARIES[@]} -gt 0 ] || BINARIES=("$ROOT/target/release/hallpass")
for i in "${!BINARIES[@]}"; do BINARIES[i]=$(realpath "${BINARIES[i]}"); done

# shellcheck source=benches/common.sh
. benches/common.sh
bench_workdir
start_origin 127.0.0.1:0
write_padding
big_policy "" "${BIG_POLICY_BLOCKS[@]}" >"$WORK/policy.toml"
PROXY_PORT=$(free_port)
{
    big_config_head
    plain_proxy_section "$PROXY_PORT"
} >"$WORK/hallpass.toml"

# wait_for URL_OF_PROXY: up to 3 minutes (loading the lists under valgrind is slow).
wait_for() {
    for _ in $(seq 360); do
        curl -s -o /dev/null -x "$1" "http://$HTTP/" && return
        sleep 0.5
    done
    echo "benches/instructions.sh: nothing answered on $1" >&2
    exit 1
}

# count NAME PROXY_URL CMD...: writes the instructions per request of CMD under
# load to $WORK/NAME.count (not printed into a command substitution: that
# would run it in a subshell, whose PIDS the exit trap never sees).
count() {
    local name=$1 url=$2 pid requests collected
    shift 2
    taskset -c 0 valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$WORK/$name.callgrind" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    pid=$!
    PIDS+=($pid)
    [ "$url" = "-" ] && {
        for _ in $(seq 100); do grep -q 'listening on' "$WORK/$name.out" 2>/dev/null && break; sleep 0.2; done
        url="http://$(sed -n 's/listening on //p' "$WORK/$name.out")"
    }
    wait_for "$url"
    TARGET="http://$HTTP/" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d3s -s benches/load/proxy.lua "$url/" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    requests=$(TARGET="http://$HTTP/" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s benches/load/proxy.lua "$url/" |
        awk '/requests in/ {print $1}')
    callgrind_control -i off "$pid" >/dev/null 2>&1
    # SIGTERM: a background job of a script ignores SIGINT unless it installs a handler.
    kill -TERM "$pid"
    wait "$pid" || true
    collected=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$WORK/$name.err")
    [ -n "$collected" ] && [ "${requests:-0}" -gt 0 ] || { echo "benches/instructions.sh: no count for $name" >&2; cat "$WORK/$name.err" >&2; exit 1; }
    echo $((collected / requests)) >"$WORK/$name.count"
}

echo "allowed plain HTTP, user-space instructions per request (callgrind), ${CONNECTIONS} connections, ${DURATION}s"
count bare - "$ROOT/target/release/examples/bench-bare-forwarder" "$HTTP"
floor=$(cat "$WORK/bare.count")
printf '%-60s %10s\n' "floor: bare hyper forwarder" "$floor"
n=0
for bin in "${BINARIES[@]}"; do
    n=$((n + 1))
    "$bin" -c "$WORK/hallpass.toml" ca init --force >/dev/null
    count "hallpass$n" "http://127.0.0.1:$PROXY_PORT" "$bin" -c "$WORK/hallpass.toml" run
    got=$(cat "$WORK/hallpass$n.count")
    printf '%-60s %10s  (%s x the floor)\n' "$bin" "$got" "$(python3 -c "print(f'{$got/$floor:.2f}')")"
done
