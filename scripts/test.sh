#!/usr/bin/env bash
# Every check Berth has, in the order a failure is cheapest to see:
# formatting, lints, the Rust unit/property/integration tests (including the
# AWS SDK for Rust suite and the agent's real-Docker tests), then the
# aws-cli and boto3 end-to-end suite against real `berth` processes and
# containers built from tests/images.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
cargo build -p berth
tests/images/build.sh
BERTH_BUILD=0 tests/python/run.sh -q
