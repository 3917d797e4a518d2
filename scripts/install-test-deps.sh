#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent: a
# package that is already present is not installed again.
set -euo pipefail

need=()
# (Debian packages the tests need are listed here as the suite grows.)
for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}"
fi
