#!/usr/bin/env bash
# The main job, for a newcomer, in one command: build the operator, preview a baseline offline,
# bring up the local control plane, run the operator against it with the restricted example and a
# few namespaces, show `kubectl get securitybaselines`, then delete a policy and watch it come back.
# The control plane keeps running afterwards; `hack/controlplane.sh down` stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
poll() { # poll SECONDS COMMAND...: until the command succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "demo: timed out waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

step "Building"
cargo build --locked --quiet

step "Offline preview: zerotrust-operator render -f examples/restricted-tenants.yaml --namespace team-a --label tenant=true"
target/debug/zerotrust-operator render -f examples/restricted-tenants.yaml --namespace team-a --label tenant=true | head -40
echo "... (truncated)"

step "Local control plane (hack/controlplane.sh up)"
eval "$(hack/controlplane.sh up)"
kubectl=.controlplane/kubectl
$kubectl apply --server-side -f crds/securitybaseline.yaml >/dev/null
$kubectl wait --for condition=Established --timeout=60s crd/securitybaselines.zerotrust.dev >/dev/null
for ns in team-a team-b team-c; do
  printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {tenant: "true"}}\n' "$ns" |
    $kubectl apply --server-side -f - >/dev/null
done
printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: not-a-tenant}\n' | $kubectl apply --server-side -f - >/dev/null

step "Running the operator (log: .controlplane/operator.log)"
target/debug/zerotrust-operator run >.controlplane/operator.log 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null || true' EXIT

step "kubectl apply -f examples/restricted-tenants.yaml"
$kubectl apply -f examples/restricted-tenants.yaml
ready() { [ "$($kubectl get securitybaseline restricted-tenants -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
poll 60 ready
$kubectl get securitybaselines
$kubectl get networkpolicies,roles,rolebindings,resourcequotas,limitranges -n team-a

step "Drift: someone deletes the default-deny policy in team-a"
$kubectl delete networkpolicy -n team-a zt-restricted-tenants-default-deny
poll 10 $kubectl get networkpolicy -n team-a zt-restricted-tenants-default-deny
echo "repaired:"
$kubectl get networkpolicy -n team-a zt-restricted-tenants-default-deny
poll 10 sh -c "[ \"\$($kubectl get securitybaseline restricted-tenants -o jsonpath='{.status.repairs}')\" -ge 1 ]"
$kubectl get securitybaselines
$kubectl get events -n team-a --field-selector reason=DriftRepaired

step "Done"
echo "The control plane is still up: export KUBECONFIG=$KUBECONFIG; PATH=\"$PWD/.controlplane:\$PATH\""
echo "Stop it with: hack/controlplane.sh down"
