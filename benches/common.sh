# Shared by benches/load.sh, reload.sh, ab.sh and instructions.sh (sourced,
# not run): the local origin and the ~1 M-domain policy they measure against.
# Expects ROOT and SHARED to be set by the caller; bench_workdir sets WORK and
# PIDS.

# bench_workdir: a temporary folder in WORK, removed on exit together with
# every process whose pid the caller adds to PIDS.
bench_workdir() {
    WORK=$(mktemp -d)
    PIDS=()
    trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
}

# start_origin ADDR: bench-origin on core 1, HTTPS on ADDR; sets HTTP, HTTPS,
# HTTP_PORT and HTTPS_PORT, and adds its pid to PIDS.
start_origin() {
    taskset -c 1 "$ROOT/target/release/examples/bench-origin" "$WORK" "$1" >"$WORK/origin.out" &
    PIDS+=($!)
    for _ in $(seq 50); do [ -s "$WORK/origin.out" ] && break; sleep 0.1; done
    HTTP=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' "$WORK/origin.out")
    HTTPS=$(sed -n 's/.*https=\([^ ]*\).*/\1/p' "$WORK/origin.out")
    HTTP_PORT=${HTTP##*:}
    HTTPS_PORT=${HTTPS##*:}
}

# write_padding: 330,000 padding names in $WORK/pad/padding/domains, spread over
# many parent domains, as real lists are.
write_padding() {
    mkdir -p "$WORK/pad/padding"
    awk 'BEGIN { for (i = 0; i < 330000; i++) printf "site%d.pad%d.hallpass-bench.test\n", i, i % 9973 }' >"$WORK/pad/padding/domains"
}

# big_policy KEYWORD BLOCKED...: every UT1 category, the adult stand-ins and the
# padding (~1 M domains); a `[deny] keywords` rule when KEYWORD is not empty;
# year5 (127.0.0.0/8) in band ks2, which blocks the categories BLOCKED.
big_policy() {
    local keyword=$1
    shift
    echo 'version = 1'
    echo '[baseline]'
    echo 'child-abuse = ["baseline:child-abuse"]'
    echo 'terrorism = ["baseline:terrorism"]'
    echo 'malware = ["ut1:malware"]'
    echo 'phishing = ["ut1:phishing"]'
    [ -n "$keyword" ] && printf '[deny]\nkeywords = ["%s"]\n' "$keyword"
    for dir in "$SHARED"/ut1/*/; do
        name=$(basename "$dir")
        [ -L "${dir%/}" ] && continue
        case $name in malware|phishing) continue ;; esac
        [ -f "$dir/domains" ] || [ -f "$dir/urls" ] || continue
        printf '[categories.%s]\nlists = ["ut1:%s"]\n' "$name" "$name"
    done
    for dir in "$SHARED"/adult-partial/*/; do
        name=$(basename "$dir")
        printf '[categories.%s]\nlists = ["adult:%s"]\n' "$name" "$name"
    done
    printf '[categories.padding]\nlists = ["pad:padding"]\n'
    echo '[bands.ks2]'
    echo 'ages = "7-10"'
    echo 'default = "allow"'
    local blocked
    blocked=$(printf '"%s", ' "$@")
    printf 'block = [%s]\n' "${blocked%, }"
    echo '[groups]'
    echo 'year5 = { band = "ks2" }'
    echo '[[subnets]]'
    echo 'cidr = "127.0.0.0/8"'
    echo 'group = "year5"'
}

# big_config_head: the start of a hallpass.toml for big_policy's policy.toml
# (in the same folder): the list sources it names. The caller adds [proxy].
big_config_head() {
    cat <<TOML
version = 1
policy = "policy.toml"
state_dir = "state"
[lists.ut1]
format = "squidguard"
path = "$SHARED/ut1"
[lists.adult]
format = "squidguard"
path = "$SHARED/adult-partial"
[lists.pad]
format = "squidguard"
path = "$WORK/pad"
[lists.baseline]
format = "squidguard"
path = "$ROOT/blocklists/lists/baseline"
TOML
}

# plain_proxy_section PORT [CONSOLE_PORT]: the [proxy] section of a proxy on
# PORT that may reach the origin's plain-HTTP port, and a [console] on
# CONSOLE_PORT when one is given (big_config_head writes the rest).
plain_proxy_section() {
    cat <<TOML
[proxy]
listen = ["127.0.0.1:$1"]
allowed_ports = [80, 443, $HTTP_PORT]
dangerous_allow_destinations = ["127.0.0.1:$HTTP_PORT"]
TOML
    [ -z "${2:-}" ] || printf '[console]\nlisten = ["127.0.0.1:%s"]\n' "$2"
}

# free_port: a port nobody listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The categories the ks2 band of both benchmarks blocks.
BIG_POLICY_BLOCKS=(adult gambling games social_networks ut1-adult-x-alexa-top1m-2019 sinfonietta-pornography-2026)
