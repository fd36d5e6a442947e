#!/usr/bin/env bash
# The peer we benchmark against: Kyverno (admission controller + background controller), built
# from its Go module and run out of cluster against a control plane of its own, never the tests'.
# See benches/peer/README.md.
#
#   hack/kyverno.sh build    only build (or find cached) binaries; prints their directory
#   hack/kyverno.sh up       peer control plane + Kyverno, ready; prints `export KUBECONFIG=...` last
#   hack/kyverno.sh down     Kyverno's webhook configurations FIRST, then Kyverno, then the control
#                            plane. Safe to repeat, and after a crash of anything.
#   hack/kyverno.sh status   exit 0 when both Kyverno processes run and the webhook server is ready
#
# Environment:
#   ZT_PEER_DIR              runtime state; default <repo>/.controlplane-peer (the control plane's
#                            files, and Kyverno's in kyverno/: pids, logs, ports, kubeconfigs)
#   ZT_CACHE_DIR             binary cache, keyed by version; default ~/.cache/zerotrust-operator
#   ZT_KYVERNO_UR_THRESHOLD  updateRequestThreshold in Kyverno's ConfigMap; default 100000.
#                            Kyverno's default, 1000, silently drops generate requests in bursts.
set -euo pipefail

KYVERNO_VERSION=v1.19.1
KYVERNO_MODULE=github.com/kyverno/kyverno
NS=kyverno
ADMISSION_SA=kyverno-admission-controller
BACKGROUND_SA=kyverno-background-controller

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mod_dir="$repo/hack/kyverno"
state="${ZT_PEER_DIR:-$repo/.controlplane-peer}"
kdir="$state/kyverno"
cache="${ZT_CACHE_DIR:-$HOME/.cache/zerotrust-operator}/kyverno/$KYVERNO_VERSION"
bin="$cache/bin"
ur_threshold=${ZT_KYVERNO_UR_THRESHOLD:-100000}

# The peer's control plane: the project's own script, with its state beside Kyverno's, and an
# audit log of what Kyverno's two identities ask (for the idle-request count).
controlplane() {
  ZT_CONTROLPLANE_DIR="$state" \
    ZT_AUDIT_USERS="system:serviceaccount:$NS:$ADMISSION_SA,system:serviceaccount:$NS:$BACKGROUND_SA" \
    "$repo/hack/controlplane.sh" "$@"
}

log() { printf 'kyverno: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- build ---------------------------------------------------------------------------------------
build() {
  if [ ! -x "$bin/kyverno" ] || [ ! -x "$bin/background-controller" ]; then
    command -v go >/dev/null || die "Go is needed to build Kyverno (https://go.dev/dl)"
    log "building Kyverno $KYVERNO_VERSION into $bin (cold: ~15 min on 2 cores)"
    rm -rf "$bin.tmp" && mkdir -p "$bin.tmp"
    (
      cd "$mod_dir"
      # As Kyverno's Makefile builds its images: static, version stamped, symbols stripped.
      export CGO_ENABLED=0 GOFLAGS="-buildvcs=false"
      local ld="-s -w -X $KYVERNO_MODULE/pkg/version.BuildVersion=$KYVERNO_VERSION"
      nice -n 10 go build -trimpath -ldflags "$ld" -o "$bin.tmp/kyverno" "$KYVERNO_MODULE/cmd/kyverno"
      nice -n 10 go build -trimpath -ldflags "$ld" -o "$bin.tmp/background-controller" "$KYVERNO_MODULE/cmd/background-controller"
    )
    rm -rf "$bin" && mv "$bin.tmp" "$bin"
  fi
  echo "$bin"
}

# Kyverno's module in the Go module cache: its CRDs and its rendered chart come from there.
module_dir() {
  local dir
  dir=$(cd "$mod_dir" && go mod download -json "$KYVERNO_MODULE@$KYVERNO_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  [ -d "$dir" ] || die "could not find $KYVERNO_MODULE@$KYVERNO_VERSION in the module cache"
  echo "$dir"
}

# --- helpers -------------------------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

kubectl() { "$state/kubectl" --kubeconfig "$state/kubeconfig" "$@"; }

alive() { [ -f "$kdir/$1.pid" ] && kill -0 "$(cat "$kdir/$1.pid")" 2>/dev/null; }

apiserver_answers() {
  [ -x "$state/kubectl" ] && [ -f "$state/kubeconfig" ] &&
    kubectl --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
  log "$what ready"
}

started() { # started NAME: true while the process we started is up, or readiness can't come
  alive "$1" || die "$1 exited; see $kdir/$1.log"
}

stop() { # stop NAME: SIGTERM, then SIGKILL after 10s
  local f="$kdir/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Every admission webhook configuration Kyverno registered (all are named kyverno-*, and labelled
# webhook.kyverno.io/managed-by=kyverno). The API server never calls webhooks for these objects,
# so deleting them works however broken Kyverno is.
delete_webhooks() {
  local names
  names=$(kubectl --request-timeout=10s get mutatingwebhookconfigurations,validatingwebhookconfigurations \
    -o name 2>/dev/null | grep '/kyverno-' || true)
  [ -n "$names" ] || return 0
  # shellcheck disable=SC2086
  kubectl --request-timeout=20s delete --ignore-not-found --wait=false $names >/dev/null
  log "deleted $(echo "$names" | wc -l) webhook configurations"
}

# The objects Kyverno's chart renders for the admission and background controllers, taken from the
# chart as released in the module (config/install-latest-testing.yaml is `helm template` of it with
# default values): the namespace, both ServiceAccounts, the ConfigMaps, the ClusterRoles and Roles
# and their bindings. The cleanup and reports controllers' objects are left out: they do not run.
chart_objects() {
  awk -v want="$(
    printf '%s\n' \
      "Namespace/$NS" \
      "ServiceAccount/$ADMISSION_SA" "ServiceAccount/$BACKGROUND_SA" \
      "ConfigMap/kyverno" "ConfigMap/kyverno-metrics" \
      "ClusterRole/kyverno:admission-controller" "ClusterRole/kyverno:admission-controller:core" \
      "ClusterRole/kyverno:background-controller" "ClusterRole/kyverno:background-controller:core" \
      "ClusterRoleBinding/kyverno:admission-controller" "ClusterRoleBinding/kyverno:admission-controller:view" \
      "ClusterRoleBinding/kyverno:background-controller" "ClusterRoleBinding/kyverno:background-controller:view" \
      "Role/kyverno:admission-controller" "Role/kyverno:background-controller" \
      "RoleBinding/kyverno:admission-controller" "RoleBinding/kyverno:background-controller"
  )" '
    BEGIN { n = split(want, w, "\n"); for (i = 1; i <= n; i++) keep[w[i]] = 1 }
    function flush() { if (doc != "" && ((kind "/" name) in keep)) { printf "---\n%s", doc; found[kind "/" name] = 1 } }
    /^---$/ { flush(); doc = ""; kind = ""; name = ""; meta = 0; next }
    { doc = doc $0 "\n" }
    /^[^ ]/ { meta = ($0 ~ /^metadata:/) }
    /^kind: / && kind == "" { kind = $2 }
    meta && /^  name: / && name == "" { name = $2 }
    END { flush(); for (k in keep) if (!found[k]) { print "missing " k > "/dev/stderr"; bad = 1 } exit bad }
  ' "$1/config/install-latest-testing.yaml"
}

write_kubeconfig() { # write_kubeconfig FILE SERVICEACCOUNT
  local token
  token=$(kubectl -n "$NS" create token "$2" --duration 48h)
  (
    umask 077
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kyverno-peer
  cluster:
    server: https://127.0.0.1:$(cat "$state/apiserver.port")
    certificate-authority: $state/pki/ca.crt
users:
- name: $2
  user:
    token: $token
contexts:
- name: kyverno-peer
  context: {cluster: kyverno-peer, user: $2}
current-context: kyverno-peer
EOF
  )
}

# Flags: the chart's (values.yaml defaults, as rendered in config/install-latest-testing.yaml),
# except what running out of cluster on 127.0.0.1 needs, and reporting, which needs the reports
# controller we do not run (see benches/peer/README.md).
start_admission() {
  local port
  port=$(cat "$kdir/webhook.port")
  env KYVERNO_NAMESPACE=$NS KYVERNO_POD_NAME=kyverno-admission-controller-local \
    KYVERNO_SERVICEACCOUNT_NAME=$ADMISSION_SA KYVERNO_ROLE_NAME=kyverno:admission-controller \
    KYVERNO_SVC=kyverno-svc KYVERNO_DEPLOYMENT=kyverno-admission-controller \
    INIT_CONFIG=kyverno METRICS_CONFIG=kyverno-metrics TUF_ROOT="$kdir/sigstore" \
    "$bin/kyverno" \
    --kubeconfig="$kdir/admission.kubeconfig" \
    --serverIP="127.0.0.1:$port" --webhookServerHost=127.0.0.1 --webhookServerPort="$port" \
    --caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca \
    --tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair \
    --tlsKeyAlgorithm=RSA \
    --backgroundServiceAccountName="system:serviceaccount:$NS:$BACKGROUND_SA" \
    --servicePort=443 \
    --resyncPeriod=15m --crdWatcher=false \
    --disableMetrics=false --otelConfig=prometheus \
    --metricsHost=127.0.0.1 --metricsPort="$(cat "$kdir/admission-metrics.port")" \
    --controllerRuntimeMetricsAddress=0 \
    --admissionReports=false --enableReporting= \
    --autoUpdateWebhooks=true --excludeBootstrapResources=false \
    --enableConfigMapCaching=true --enableDeferredLoading=true \
    --dumpPayload=false --forceFailurePolicyIgnore=false \
    --generateValidatingAdmissionPolicy=true --generateMutatingAdmissionPolicy=false \
    --dumpPatches=false --maxAPICallResponseLength=2000000 --apiCallTimeout=30s \
    --maxGlobalContextEntries=0 \
    --loggingFormat=text --disableLogColor --v=2 --omitEvents=PolicyApplied,PolicySkipped \
    --enablePolicyException=false --protectManagedResources=false --allowInsecureRegistry=false \
    >>"$kdir/admission.log" 2>&1 9>&- 8>&- &
  echo $! >"$kdir/admission.pid"
}

start_background() {
  env KYVERNO_NAMESPACE=$NS KYVERNO_POD_NAME=kyverno-background-controller-local \
    KYVERNO_SERVICEACCOUNT_NAME=$BACKGROUND_SA KYVERNO_DEPLOYMENT=kyverno-background-controller \
    INIT_CONFIG=kyverno METRICS_CONFIG=kyverno-metrics \
    "$bin/background-controller" \
    --kubeconfig="$kdir/background.kubeconfig" \
    --disableMetrics=false --otelConfig=prometheus \
    --metricsHost=127.0.0.1 --metricsPort="$(cat "$kdir/background-metrics.port")" \
    --controllerRuntimeMetricsAddress=0 \
    --enableReporting= \
    --resyncPeriod=15m --enableConfigMapCaching=true --enableDeferredLoading=true \
    --maxAPICallResponseLength=2000000 --apiCallTimeout=30s --maxGlobalContextEntries=0 \
    --loggingFormat=text --disableLogColor --v=2 --omitEvents=PolicyApplied,PolicySkipped \
    --enablePolicyException=false \
    >>"$kdir/background.log" 2>&1 9>&- 8>&- &
  echo $! >"$kdir/background.pid"
}

admission_ready() {
  started admission &&
    curl -sfk -o /dev/null "https://127.0.0.1:$(cat "$kdir/webhook.port")/health/readiness" &&
    kubectl get validatingwebhookconfiguration kyverno-policy-validating-webhook-cfg -o name &>/dev/null
}

lease_held() { # lease_held NAME IDENTITY
  [ "$(kubectl -n "$NS" get lease "$1" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null)" = "$2" ]
}

background_ready() {
  started background &&
    curl -sf -o /dev/null "http://127.0.0.1:$(cat "$kdir/background-metrics.port")/metrics" &&
    lease_held kyverno-background-controller kyverno-background-controller-local
}

ready() {
  alive admission && alive background && [ -f "$kdir/webhook.port" ] &&
    curl -sfk -o /dev/null "https://127.0.0.1:$(cat "$kdir/webhook.port")/health/readiness"
}

# --- up / down -----------------------------------------------------------------------------------
up() {
  build >/dev/null
  mkdir -p "$kdir"
  exec 8>"$kdir/lock"
  flock 8
  local out
  out=$(controlplane up 8>&-) # its processes must not inherit our lock
  if ready; then
    log "already running"
  else
    # Whatever a crashed run left behind: its webhooks first, or they block what follows.
    delete_webhooks
    stop background
    stop admission
    local mdir
    mdir=$(module_dir)
    kubectl apply --server-side --force-conflicts -R -f "$mdir/config/crds" >/dev/null
    kubectl wait --for condition=Established --timeout=60s \
      $(kubectl get crd -o name | grep -E 'kyverno\.io|wgpolicyk8s\.io') >/dev/null
    log "CRDs installed from $mdir/config/crds"
    chart_objects "$mdir" | kubectl apply --server-side --force-conflicts -f - >/dev/null
    kubectl apply --server-side --force-conflicts -f "$mod_dir/rbac-local.yaml" >/dev/null
    kubectl -n "$NS" patch configmap kyverno --type merge \
      -p "{\"data\":{\"updateRequestThreshold\":\"$ur_threshold\"}}" >/dev/null
    log "namespace $NS, ServiceAccounts, RBAC and ConfigMaps applied (updateRequestThreshold $ur_threshold)"
    write_kubeconfig "$kdir/admission.kubeconfig" "$ADMISSION_SA"
    write_kubeconfig "$kdir/background.kubeconfig" "$BACKGROUND_SA"
    free_port >"$kdir/webhook.port"
    free_port >"$kdir/admission-metrics.port"
    free_port >"$kdir/background-metrics.port"
    mkdir -p "$kdir/sigstore"
    rm -f "$kdir"/*.log
    start_admission
    start_background
    wait_for 180 "Kyverno admission controller" admission_ready ||
      die "the admission controller did not become ready; see $kdir/admission.log"
    wait_for 120 "Kyverno background controller" background_ready ||
      die "the background controller did not become ready; see $kdir/background.log"
  fi
  echo "# Kyverno $KYVERNO_VERSION: webhook https://127.0.0.1:$(cat "$kdir/webhook.port"), logs and pids in $kdir"
  echo "$out"
}

down() {
  [ -d "$state" ] || return 0
  # Webhooks first: with them registered and nothing answering, the API server refuses (or, for
  # Ignore ones, delays by the timeout) every request they match, namespaces included.
  local answers=0
  apiserver_answers && answers=1
  [ "$answers" = 0 ] || delete_webhooks || log "could not delete webhooks (yet)"
  stop background
  stop admission
  # A running admission controller re-registers deleted webhooks within a second; once it is
  # stopped, delete what it put back.
  [ "$answers" = 0 ] || delete_webhooks || log "warning: could not delete Kyverno's webhooks"
  controlplane down
  log "stopped"
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  status) ready ;;
  *)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
