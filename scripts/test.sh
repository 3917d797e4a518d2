#!/usr/bin/env bash
# Runs every hallpass test. Works on a fresh Debian machine that has only the
# Rust toolchain: what the tests need beyond it is installed first
# (scripts/install-test-deps.sh). Fails, never skips, when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: chromium and chromium-driver (the console's browser tests and
# the printed review report); the list is in the script.
bash scripts/install-test-deps.sh

# Tests use the real third-party data beside the checkout (UT1 lists, request
# corpora); they fail when it is missing rather than pass vacuously.
if [ ! -f ../shared/data/ut1/PROVENANCE.md ]; then
    echo "scripts/test.sh: ../shared/data is missing: the tests need the UT1 lists and request corpora" >&2
    exit 1
fi

cargo test --workspace --locked

# The fuzz targets are their own workspace (libFuzzer harnesses behind
# cfg(fuzzing)); on stable they replay their seed corpus as plain tests.
cargo test --manifest-path fuzz/Cargo.toml --locked
