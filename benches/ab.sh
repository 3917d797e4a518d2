#!/usr/bin/env bash
# A/B of two hallpass binaries on the allowed-HTTP and blocked-HTTP paths of
# benches/load.sh: the same ~1 M-domain policy and local origin, each binary in
# turn on core 0 (never both loaded at once), ROUNDS alternations of DURATION
# seconds each. Prints req/s and the proxy's CPU per request for every run,
# then the median CPU per request of each binary: the figure that other load on
# the machine moves least, so a change of a few per cent is seen.
#
# Usage: bash benches/ab.sh OLD_BINARY NEW_BINARY   (ROUNDS=3 DURATION=5)
# Needs: wrk, taskset, curl (Debian: apt-get install wrk util-linux curl).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bash benches/ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$(realpath "$1")
NEW=$(realpath "$2")
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
SHARED=${SHARED:-$ROOT/../shared/data}
for tool in wrk taskset curl; do
    command -v "$tool" >/dev/null || { echo "benches/ab.sh: $tool is missing (apt-get install wrk util-linux curl)" >&2; exit 1; }
done
[ -d "$SHARED/ut1" ] || { echo "benches/ab.sh: $SHARED/ut1 is missing" >&2; exit 1; }
cargo build --release --quiet --example bench-origin

# shellcheck source=benches/common.sh
. benches/common.sh
bench_workdir
start_origin 127.0.0.1:0
write_padding
big_policy "" "${BIG_POLICY_BLOCKS[@]}" >"$WORK/policy.toml"

# start NAME BINARY: a proxy with its own state directory; sets PORT_NAME, PID_NAME.
start() {
    local name=$1 bin=$2 port console
    port=$(free_port)
    console=$(free_port)
    mkdir -p "$WORK/$name"
    cp "$WORK/policy.toml" "$WORK/$name/policy.toml"
    {
        big_config_head
        plain_proxy_section "$port" "$console"
    } >"$WORK/$name/hallpass.toml"
    "$bin" -c "$WORK/$name/hallpass.toml" ca init >/dev/null
    taskset -c 0 "$bin" -c "$WORK/$name/hallpass.toml" run >"$WORK/$name/proxy.log" 2>&1 &
    PIDS+=($!)
    eval "PORT_$name=$port PID_$name=$!"
    for _ in $(seq 200); do
        curl -s -o /dev/null -x "http://127.0.0.1:$port" "http://$HTTP/" && return
        sleep 0.1
    done
    echo "benches/ab.sh: proxy $name did not come up:" >&2
    cat "$WORK/$name/proxy.log" >&2
    exit 1
}
start old "$OLD"
start new "$NEW"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# run NAME TARGET: prints "req/s cpu_us_per_req"
run() {
    local name=$1 target=$2 port pid t0 t1 rps
    port=$(eval echo "\$PORT_$name")
    pid=$(eval echo "\$PID_$name")
    t0=$(ticks "$pid")
    rps=$(TARGET=$target taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s benches/load/proxy.lua "http://127.0.0.1:$port/" |
        awk '/Requests\/sec/ {print $2}')
    t1=$(ticks "$pid")
    python3 -c "import sys; r=float(sys.argv[1]); t=(float(sys.argv[3])-float(sys.argv[2]))/float(sys.argv[4]); print(f'{r:.0f} {t*1e6/(r*float(sys.argv[5])):.1f}')" \
        "$rps" "$t0" "$t1" "$HZ" "$DURATION"
}

echo "A/B: old=$OLD new=$NEW, $ROUNDS rounds of ${DURATION}s, $CONNECTIONS connections, proxies on core 0"
for path in allowed blocked; do
    case $path in
        allowed) target="http://$HTTP/" ;;
        blocked) target="http://pornhub.com/" ;;
    esac
    old_cpu=() new_cpu=()
    for round in $(seq "$ROUNDS"); do
        for name in old new; do
            read -r rps cpu < <(run "$name" "$target")
            printf '%-8s round %d %-4s %8s req/s %7s us/req\n' "$path" "$round" "$name" "$rps" "$cpu"
            [ "$name" = old ] && old_cpu+=("$cpu") || new_cpu+=("$cpu")
        done
    done
    python3 -c "
import statistics, sys
old = [float(x) for x in sys.argv[2].split()]
new = [float(x) for x in sys.argv[3].split()]
o, n = statistics.median(old), statistics.median(new)
print(f'{sys.argv[1]}: median CPU per request old {o:.1f} us, new {n:.1f} us ({(n - o) / o * 100:+.1f} %)')
" "$path" "${old_cpu[*]}" "${new_cpu[*]}"
done
