#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: set-up (idempotent), the lints (format,
# clippy with warnings as errors), then one build of the binary and its tests, then every
# test against the real drivers and servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash appliance/setup.sh
cargo fmt --check || { echo "test: the code is not formatted: run \`cargo fmt\`" >&2; exit 1; }
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
