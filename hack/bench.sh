#!/usr/bin/env bash
# The scale benchmark on a control plane of its own (state in .controlplane-bench, audit log on),
# torn down afterwards. Prints a Markdown table and writes target/bench/scale.json.
#
#   hack/bench.sh                          1,000 namespaces, the documented run (~10 min)
#   hack/bench.sh --namespaces 10000       the large run
#   hack/bench.sh --namespaces 50 --onboarding-samples 5 --repair-samples 8 --idle-seconds 10
#                                          the smoke run CI makes (fails on idle writes, a status
#                                          over 8 KiB, onboarding or repair p99 over 5 s)
#   hack/bench.sh --help                   every option
#
# The engine's micro-benchmarks are separate: cargo bench --bench engine
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

export ZT_CONTROLPLANE_DIR="$repo/.controlplane-bench"
cleanup() { hack/controlplane.sh down || true; rm -rf "$ZT_CONTROLPLANE_DIR"; }
trap cleanup EXIT
# A fresh cluster each run, so earlier runs' objects do not weigh on this one.
cleanup
up=$(hack/controlplane.sh up)
export KUBECONFIG=${up##*export KUBECONFIG=}
cargo bench --locked --bench scale -- "$@"
