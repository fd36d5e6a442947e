#!/usr/bin/env bash
# Runs the whole test suite: unit and property tests, CLI tests, and integration tests against the
# real control plane, which this script brings up (building it on first use) and tears down.
#
#   hack/test.sh [cargo test args...]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

for tool in cargo go openssl curl python3; do
  command -v "$tool" >/dev/null || { echo "test.sh: $tool is required" >&2; exit 1; }
done

started=0
if ! hack/controlplane.sh status 2>/dev/null; then
  started=1
fi
cleanup() { [ "$started" = 1 ] && hack/controlplane.sh down || true; }
trap cleanup EXIT

hack/controlplane.sh build >/dev/null
hack/controlplane.sh up >/dev/null
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace "$@"
