#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: set-up (idempotent), then one build of
# the binary and its tests, then every test against the real drivers and servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash appliance/setup.sh
cargo test --locked
