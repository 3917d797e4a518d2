#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent: a
# package that is already present is not installed again.
set -euo pipefail

need=()
# Debian packages the tests need:
# - chromium, chromium-driver: the console's browser tests (headless, via WebDriver).
# - systemd: systemd-analyze verify/security for the units in systemd/.
# - python3-aiosmtpd: a real SMTP server (STARTTLS) that receives the urgent-incident alert mails.
# - make: builds jemalloc, the binary's allocator (tikv-jemalloc-sys runs configure and make).
packages=(chromium chromium-driver systemd python3-aiosmtpd make "$@")
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Another process may hold the apt lock: wait for it rather than fail.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}"
fi
