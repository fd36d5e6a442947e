#!/usr/bin/env bash
# The main job, for a newcomer: build the operator and preview what the restricted example
# baseline puts into a tenant namespace (no cluster needed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --locked --quiet
echo "# zerotrust-operator render -f examples/restricted-tenants.yaml --namespace team-a --label tenant=true"
target/debug/zerotrust-operator render -f examples/restricted-tenants.yaml --namespace team-a --label tenant=true
