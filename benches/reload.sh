#!/usr/bin/env bash
# Reload benchmark for `hallpass run` (issue figures: a ~1 M-domain policy
# reloaded under 64-connection load).
#
# Reports, for a policy edit reloaded by SIGHUP and by `hallpass reload` (the
# compiled lists are kept: no list file changed), and for a list edit (a
# domain appended to a list file: everything is compiled again):
#   - time from the signal/command to the new policy in effect (a URL whose
#     verdict the change flips is polled every ~10 ms),
#   - failed requests (socket errors and non-2xx) of the allowed-request load,
#   - allowed-request p99 in a window around the reload, next to the steady p99
#     measured in the same run,
#   - peak RSS during the reload next to the steady RSS.
#
# Layout as benches/load.sh: the proxy on core 0 (so the reload's compile
# competes with serving, as on a busy 1-core budget), origin and wrk on core 1.
# Loopback only; every phase is bounded (about 30 s in all, after the build).
#
# Usage: bash benches/reload.sh   (CONNECTIONS=64 WINDOW=5 STEADY=8)
# Needs: wrk, taskset, curl (Debian: apt-get install wrk util-linux curl).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CONNECTIONS=${CONNECTIONS:-64}
WINDOW=${WINDOW:-5}
STEADY=${STEADY:-8}
SHARED=${SHARED:-$ROOT/../shared/data}

for tool in wrk taskset curl python3; do
    command -v "$tool" >/dev/null || { echo "benches/reload.sh: $tool is missing (apt-get install wrk util-linux curl)" >&2; exit 1; }
done
[ -d "$SHARED/ut1" ] || { echo "benches/reload.sh: $SHARED/ut1 is missing" >&2; exit 1; }

cargo build --release --quiet --bin hallpass --example bench-origin
BIN=$ROOT/target/release/hallpass

# shellcheck source=benches/common.sh
. benches/common.sh
bench_workdir
start_origin 127.0.0.1:0

# --- the ~1 M-domain policy of benches/load.sh, plus a keyword rule to flip
# and the padding blocked (the list edit adds a padding name) ---
write_padding
policy() { big_policy "$1" "${BIG_POLICY_BLOCKS[@]}" padding; } # $1: the deny keyword
policy neverusedword >"$WORK/policy.toml"

PROXY_PORT=$(free_port)
CONSOLE_PORT=$(free_port)
{
    big_config_head
    plain_proxy_section "$PROXY_PORT" "$CONSOLE_PORT"
} >"$WORK/hallpass.toml"

"$BIN" -c "$WORK/hallpass.toml" ca init >/dev/null
RUST_LOG=warn taskset -c 0 "$BIN" -c "$WORK/hallpass.toml" run >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=($PROXY_PID)
PROXY="http://127.0.0.1:$PROXY_PORT"
for _ in $(seq 300); do
    curl -s -o /dev/null -x "$PROXY" "http://$HTTP/" && break
    sleep 0.1
done
curl -sf -o /dev/null -x "$PROXY" "http://$HTTP/" || { echo "proxy did not come up:"; cat "$WORK/proxy.log"; exit 1; }
DOMAINS=$("$BIN" -c "$WORK/hallpass.toml" lists --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["domains"])')

# The status of $1 through the proxy.
status() { curl -s -o /dev/null -w '%{http_code}' -x "$PROXY" "$1"; }
FLIP_URL="http://$HTTP/flipword"
LIST_URL="http://flip.pad1.hallpass-bench.test/"
now() { date +%s.%N; }
# wrk on allowed requests for $1 seconds; prints "req/s p99_ms failed".
wrk_run() {
    TARGET="http://$HTTP/" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$1s" --latency -s benches/load/proxy.lua "$PROXY/" 2>&1 |
        awk '/Requests\/sec/ {rps=$2}
             /Non-2xx/ {bad+=$NF}
             /Socket errors/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) {v=$i; sub(/,/,"",v); bad+=v}}
             / 99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p99=v}
             END {printf "%.0f %.3f %d\n", rps, p99, bad}'
}
# One reload under load: $1 how ("sighup" or "command"), $2 the change
# ("keyword:WORD" writes the policy with that deny keyword, "list" appends the
# host of $LIST_URL to the padding list), $3 the URL and $4 the status it has
# once the change is in effect.
reload_under_load() {
    wrk_run "$WINDOW" >"$WORK/wrk.out" &
    local wrk_pid=$!
    sleep 1
    case $2 in
        keyword:*) policy "${2#keyword:}" >"$WORK/policy.toml" ;;
        list) echo "flip.pad1.hallpass-bench.test" >>"$WORK/pad/padding/domains" ;;
    esac
    echo 5 >"/proc/$PROXY_PID/clear_refs"   # resets VmHWM: the peak from here on
    local t0 t1 took
    t0=$(now)
    if [ "$1" = sighup ]; then
        kill -HUP "$PROXY_PID"
    else
        "$BIN" -c "$WORK/hallpass.toml" reload >"$WORK/reload.out" 2>&1 &
    fi
    while [ "$(status "$3")" != "$4" ]; do
        if python3 -c "import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) > 20 else 1)" "$t0" "$(now)"; then
            echo "benches/reload.sh: the $1 reload did not take effect within 20 s" >&2; cat "$WORK/proxy.log" >&2; exit 1
        fi
        sleep 0.01
    done
    t1=$(now)
    took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$t1")
    wait "$wrk_pid"
    wait  # the `hallpass reload` client, if any
    local peak
    peak=$(awk '/VmHWM/ {print $2}' "/proc/$PROXY_PID/status")
    read -r rps p99 failed <"$WORK/wrk.out"
    echo "$took $rps $p99 $failed $peak"
}

echo "hallpass reload benchmark: $DOMAINS domains, $CONNECTIONS connections, proxy on core 0, wrk+origin on core 1"
echo "(shared 2-core machine: absolute figures are noisy; compare the ratios to the steady run)"
read -r s_rps s_p99 s_failed < <(wrk_run "$STEADY")
steady_kb=$(awk '/VmRSS/ {print $2}' "/proc/$PROXY_PID/status")
[ "$(status "$FLIP_URL")" = 200 ] || { echo "benches/reload.sh: the flip URL is not allowed before the reload" >&2; exit 1; }
[ "$(status "$LIST_URL")" != 403 ] || { echo "benches/reload.sh: the list flip URL is blocked before the reload" >&2; exit 1; }
read -r h_took h_rps h_p99 h_failed h_peak < <(reload_under_load sighup keyword:flipword "$FLIP_URL" 403)
read -r c_took c_rps c_p99 c_failed c_peak < <(reload_under_load command keyword:neverusedword "$FLIP_URL" 200)
grep -q "generation" "$WORK/reload.out" || { echo "benches/reload.sh: hallpass reload said:"; cat "$WORK/reload.out"; exit 1; } >&2
read -r l_took l_rps l_p99 l_failed l_peak < <(reload_under_load command list "$LIST_URL" 403)
grep -q "generation" "$WORK/reload.out" || { echo "benches/reload.sh: hallpass reload said:"; cat "$WORK/reload.out"; exit 1; } >&2

row() { printf '%-34s %10s %10s %10s %10s\n' "$@"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{b/a:.2f}' if a else 'n/a')" "$1" "$2"; }
row "" "" "policy edit" "policy edit" "list edit"
row "figure" "steady" "SIGHUP" "reload cmd" "reload cmd"
row "signal to new policy in effect (s)" "-" "$h_took" "$c_took" "$l_took"
row "failed requests" "$s_failed" "$h_failed" "$c_failed" "$l_failed"
row "allowed req/s (${WINDOW}s window)" "$s_rps" "$h_rps" "$c_rps" "$l_rps"
row "allowed p99 (ms)" "$s_p99" "$h_p99" "$c_p99" "$l_p99"
row "p99 / steady p99" "1.00" "$(ratio "$s_p99" "$h_p99")" "$(ratio "$s_p99" "$c_p99")" "$(ratio "$s_p99" "$l_p99")"
row "RSS (MB): steady; peak in reload" "$((steady_kb / 1024))" "$((h_peak / 1024))" "$((c_peak / 1024))" "$((l_peak / 1024))"
row "peak RSS / steady RSS" "1.00" "$(ratio "$steady_kb" "$h_peak")" "$(ratio "$steady_kb" "$c_peak")" "$(ratio "$steady_kb" "$l_peak")"
echo "metrics after the run:"
curl -s "http://127.0.0.1:$CONSOLE_PORT/metrics" | grep -E '^hallpass_(reloads_total|reload_failures_total|policy_generation) '
