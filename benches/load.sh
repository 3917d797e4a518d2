#!/usr/bin/env bash
# Load benchmark for `hallpass run` (issue figures: allowed HTTP, intercepted
# HTTPS with and without keep-alive, added p99 latency at half load, RSS).
#
# Every figure is printed next to a baseline measured in the same run: the same
# client against the same local origin directly. The machine's speed varies from
# day to day, so the ratio is the figure to compare.
#
# Layout on a 2-core machine: the proxy is pinned to core 0; the origin and the
# load generator share core 1 (for the direct baseline too). Only loopback
# addresses are used; every run is bounded by DURATION seconds.
#
# Usage: bash benches/load.sh            (DURATION=10 CONNECTIONS=64 by default)
# Needs: wrk, hey, taskset (Debian: apt-get install wrk hey util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
SHARED=${SHARED:-$ROOT/../shared/data}

for tool in wrk hey taskset curl; do
    command -v "$tool" >/dev/null || { echo "benches/load.sh: $tool is missing (apt-get install wrk hey util-linux curl)" >&2; exit 1; }
done
[ -d "$SHARED/ut1" ] || { echo "benches/load.sh: $SHARED/ut1 is missing" >&2; exit 1; }

cargo build --release --quiet --bin hallpass --example bench-origin --example bench-bare-forwarder
BIN=$ROOT/target/release/hallpass

# shellcheck source=benches/common.sh
. benches/common.sh
bench_workdir
# --- origin (core 1) -------------------------------------------------------
# HTTPS on port 443 (see origin.rs: hey's TLS server name); needs root or CAP_NET_BIND_SERVICE.
start_origin 127.0.0.1:443

# --- a ~1 M-domain policy: every UT1 category, the adult stand-ins, padding ---
write_padding
big_policy "" "${BIG_POLICY_BLOCKS[@]}" >"$WORK/policy.toml"

PROXY_PORT=$(free_port)
{
    big_config_head
    cat <<TOML
[proxy]
listen = ["127.0.0.1:$PROXY_PORT"]
allowed_ports = [80, 443, $HTTP_PORT, $HTTPS_PORT]
upstream_roots = ["origin-ca.pem"]
dangerous_allow_destinations = ["127.0.0.1:$HTTP_PORT", "127.0.0.1:$HTTPS_PORT"]
TOML
} >"$WORK/hallpass.toml"

"$BIN" -c "$WORK/hallpass.toml" ca init >/dev/null
taskset -c 0 "$BIN" -c "$WORK/hallpass.toml" run >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=($PROXY_PID)
for _ in $(seq 100); do
    curl -s -o /dev/null -x "http://127.0.0.1:$PROXY_PORT" "http://$HTTP/" && break
    sleep 0.1
done
curl -sf -o /dev/null -x "http://127.0.0.1:$PROXY_PORT" "http://$HTTP/" || { echo "proxy did not come up:"; cat "$WORK/proxy.log"; exit 1; }
DOMAINS=$("$BIN" -c "$WORK/hallpass.toml" lists --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["domains"])')

# --- measurements ------------------------------------------------------------
wrk_rps() { # prints "req/s p99_ms non2xx"
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" 2>&1 |
        awk '/Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$NF} / 99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p99=v} END {printf "%.0f %.3f %d\n", rps, p99, bad}'
}
hey_rps() { # prints "req/s p99_ms errors"
    taskset -c 1 hey -z "${DURATION}s" "$@" 2>&1 |
        awk '/Requests\/sec/ {rps=$2} /99% in/ {p99=$3*1000} /^Status code distribution/ {s=1} s && /\[2[0-9][0-9]\]/ {ok+=$2} /Error distribution/ {e=1} END {printf "%.0f %.3f %d\n", rps, p99, ok}'
}
row() { printf '%-44s %12s %12s %8s %14s\n' "$@"; }
# The proxy's own CPU time (user + system, clock ticks) — divided by the
# requests served, it says what each request costs the proxy whatever else the
# machine is doing, and 1 s over it is the rate one core could carry.
ticks() { awk '{print $14 + $15}' "/proc/${1:-$PROXY_PID}/stat"; }
HZ=$(getconf CLK_TCK)
per_req() { # ticks_before ticks_after req_per_s -> "us/req (ceiling/s)"
    python3 -c "import sys; t=(float(sys.argv[2])-float(sys.argv[1]))/float(sys.argv[4]); n=float(sys.argv[3])*float(sys.argv[5]); us=t*1e6/n if n else 0; print(f'{us:.0f}us ({1e6/us:.0f}/s)' if us else 'n/a')" "$1" "$2" "$3" "$HZ" "$DURATION"
}
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{b/a:.2f}' if a else 'n/a')" "$1" "$2"; }

echo "hallpass load benchmark: $DOMAINS domains loaded, ${CONNECTIONS} connections, ${DURATION}s per run, proxy on core 0"
row "figure" "direct" "hallpass" "ratio" "proxy CPU/req"

read -r d_rps d_p99 d_bad < <(wrk_rps "http://$HTTP/")
t0=$(ticks)
read -r p_rps p_p99 p_bad < <(TARGET="http://$HTTP/" wrk_rps -s benches/load/proxy.lua "http://127.0.0.1:$PROXY_PORT/")
t1=$(ticks)
[ "$d_bad" = 0 ] && [ "$p_bad" = 0 ] || { echo "benches/load.sh: allowed HTTP got non-2xx answers (direct $d_bad, proxy $p_bad)" >&2; exit 1; }
row "allowed HTTP (req/s, wrk)" "$d_rps" "$p_rps" "$(ratio "$d_rps" "$p_rps")" "$(per_req "$t0" "$t1" "$p_rps")"

# The floor: hyper's server and client on the same core with nothing else
# (benches/load/bare_forwarder.rs), so the row above splits into what the
# architecture costs and what hallpass's own work costs.
taskset -c 0 "$ROOT/target/release/examples/bench-bare-forwarder" "$HTTP" >"$WORK/bare.out" &
BARE_PID=$!
PIDS+=($BARE_PID)
for _ in $(seq 50); do [ -s "$WORK/bare.out" ] && break; sleep 0.1; done
BARE=$(sed -n 's/listening on //p' "$WORK/bare.out")
t0=$(ticks "$BARE_PID")
read -r f_rps _ f_bad < <(TARGET="http://$HTTP/" wrk_rps -s benches/load/proxy.lua "http://$BARE/")
t1=$(ticks "$BARE_PID")
kill "$BARE_PID"
[ "$f_bad" = 0 ] || { echo "benches/load.sh: the bare forwarder got non-2xx answers" >&2; exit 1; }
row "  floor: bare hyper forwarder, no filtering" "$d_rps" "$f_rps" "$(ratio "$d_rps" "$f_rps")" "$(per_req "$t0" "$t1" "$f_rps")"

t0=$(ticks)
read -r b_rps _ _ < <(TARGET="http://pornhub.com/" wrk_rps -s benches/load/proxy.lua "http://127.0.0.1:$PROXY_PORT/")
t1=$(ticks)
row "blocked HTTP, block page (req/s, wrk)" "$d_rps" "$b_rps" "$(ratio "$d_rps" "$b_rps")" "$(per_req "$t0" "$t1" "$b_rps")"

# Added latency at half of the proxy's allowed-HTTP rate (hey -q is per worker).
half=$(( p_rps / 2 )); workers=16; per=$(( half / workers )); [ "$per" -lt 1 ] && per=1
read -r _ dl_p99 _ < <(hey_rps -c "$workers" -q "$per" "http://$HTTP/")
read -r _ pl_p99 _ < <(hey_rps -c "$workers" -q "$per" -x "http://127.0.0.1:$PROXY_PORT" "http://$HTTP/")
row "p99 at $((per * workers)) req/s (ms, hey)" "$dl_p99" "$pl_p99" "+$(python3 -c "print(f'{$pl_p99-$dl_p99:.3f}')") ms" "-"

read -r dt_rps _ dt_ok < <(hey_rps -c "$CONNECTIONS" "https://127.0.0.1/")
t0=$(ticks)
read -r pt_rps _ pt_ok < <(hey_rps -c "$CONNECTIONS" -x "http://127.0.0.1:$PROXY_PORT" "https://127.0.0.1/")
t1=$(ticks)
row "intercepted HTTPS keep-alive (req/s, hey)" "$dt_rps" "$pt_rps" "$(ratio "$dt_rps" "$pt_rps")" "$(per_req "$t0" "$t1" "$pt_rps")"

read -r dn_rps _ dn_ok < <(hey_rps -c "$CONNECTIONS" -disable-keepalive "https://127.0.0.1/")
t0=$(ticks)
read -r pn_rps _ pn_ok < <(hey_rps -c "$CONNECTIONS" -disable-keepalive -x "http://127.0.0.1:$PROXY_PORT" "https://127.0.0.1/")
t1=$(ticks)
row "intercepted HTTPS new conn (handshakes/s)" "$dn_rps" "$pn_rps" "$(ratio "$dn_rps" "$pn_rps")" "$(per_req "$t0" "$t1" "$pn_rps")"

rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$PROXY_PID/status")
row "proxy RSS after load (MB)" "-" "$((rss_kb / 1024))" "-" "-"
echo "(2xx responses, direct/proxy: HTTPS keep-alive $dt_ok/$pt_ok, new-connection $dn_ok/$pn_ok)"
# A run where a side answered nothing but errors measures nothing: fail loudly.
for n in "$dt_ok" "$pt_ok" "$dn_ok" "$pn_ok"; do [ "$n" -gt 0 ] || { echo "benches/load.sh: an HTTPS run got no 2xx responses" >&2; exit 1; }; done
