#!/usr/bin/env bash
# The operator and Kyverno, measured on the same machine in one run: the same scenarios, one after
# the other (never at once: they would share the two cores), each on a fresh control plane of its
# own. Writes target/bench/peer/{operator.json,kyverno.jsonl,side-by-side.md} and prints the table.
# A benchmark, not a test: CI does not run it (it builds Kyverno, ~10 min cold).
#
#   hack/peer-bench.sh [--namespaces N] [--samples S] [--idle-seconds T]
#
#   --namespaces N      namespaces that exist when each side's policy is applied (default 1000)
#   --samples S         onboarding and default-deny repair samples per side (default 20)
#   --idle-seconds T    idle window per side, requests counted from the audit log (default 60)
#
# Scenarios (benches/peer/README.md says what each side does in them):
#   bulk        N labelled namespaces exist; the policy is applied; until every one is complete
#   onboarding  S namespaces created one at a time; creation to every object in place
#   repair      S deletions of a namespace's default-deny NetworkPolicy; until it is back
#   idle        requests of the controllers' own identities while nothing changes
#   memory      resident set of every controller process (peak and at the end)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

namespaces=1000 samples=20 idle=60
while [ $# -gt 0 ]; do
  case "$1" in
    --namespaces) namespaces=$2; shift 2 ;;
    --samples) samples=$2; shift 2 ;;
    --idle-seconds) idle=$2; shift 2 ;;
    *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
out="$repo/target/bench/peer"
mkdir -p "$out"
log() { printf 'peer-bench: %s\n' "$*" >&2; }

# Build both first, so neither side's figures include a build.
log "building the operator's benchmark and Kyverno"
cargo bench --locked --bench scale --no-run
hack/kyverno.sh build >/dev/null

# --- the operator ---------------------------------------------------------------------------------
# Every repair edit kind is cycled; four times the samples gives S deletions of the default-deny,
# the kind Kyverno is measured on.
log "the operator: $namespaces namespaces"
hack/bench.sh --namespaces "$namespaces" --no-raw-writer --onboarding-samples "$samples" \
  --repair-samples $((4 * samples)) --idle-seconds "$idle" --json "$out/operator.json"

# --- Kyverno --------------------------------------------------------------------------------------
export ZT_PEER_DIR="$repo/.controlplane-peer"
peer_down() { hack/kyverno.sh down || true; rm -rf "$ZT_PEER_DIR"; }
trap peer_down EXIT
peer_down # a fresh control plane, as the operator's side had
log "Kyverno: $namespaces namespaces"
hack/kyverno.sh up >/dev/null
kubectl() { "$ZT_PEER_DIR/kubectl" --kubeconfig "$ZT_PEER_DIR/kubeconfig" "$@"; }
measure() { python3 benches/peer/measure.py "$@"; }
kubectl apply -f benches/peer/kyverno-policies.yaml >/dev/null 2>&1
kubectl wait --for=condition=Ready clusterpolicy --all --timeout=300s >/dev/null
# Bulk as the operator's: the namespaces exist (admitted through the mutate policy, as they would
# be through the operator's MutatingAdmissionPolicy) before the generate policy is applied.
kubectl delete clusterpolicy zt-restricted-tenants-generate --wait=true --timeout=300s >/dev/null
measure create --namespaces "$namespaces" --concurrency 16 >/dev/null
measure reapply --timeout 3600 >/dev/null
measure onboard --samples "$samples" >/dev/null
measure repair --samples "$samples" >/dev/null
measure idle --seconds "$idle" >/dev/null
measure rss >/dev/null
cp "$ZT_PEER_DIR/kyverno/measure.jsonl" "$out/kyverno.jsonl"

python3 benches/peer/compare.py "$out/operator.json" "$out/kyverno.jsonl" | tee "$out/side-by-side.md"
