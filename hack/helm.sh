#!/usr/bin/env bash
# What the chart's tests need besides the control plane, cached under ~/.cache/zerotrust-operator/
# by version as hack/controlplane.sh does: Helm, built from its Go module (hack/helm/, a `tool`
# directive pinning helm.sh/helm/v4), and the ServiceMonitor and PrometheusRule CRDs as the
# prometheus-operator Go module ships them (its example/prometheus-operator-crd/), so the chart's
# monitoring objects are validated by their real schemas. The project contains no Go of its own.
#
#   hack/helm.sh build       build (or find cached) helm and the CRDs; prints helm's path
#   hack/helm.sh path        print helm's path; fails, saying how to build it, when it is missing
#   hack/helm.sh crds        print the CRDs' directory; fails the same way when they are missing
#   hack/helm.sh run ARGS..  run the cached helm with ARGS (builds it first unless ZT_NO_BUILD=1)
#
# Environment:
#   ZT_CACHE_DIR   binary cache, keyed by version; default ~/.cache/zerotrust-operator
#   ZT_NO_BUILD=1  fail at once, saying how to build, instead of building a missing helm
set -euo pipefail

HELM_VERSION=v4.3.1
PROMETHEUS_OPERATOR_VERSION=v0.85.0

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mod_dir="$repo/hack/helm"
cache="${ZT_CACHE_DIR:-$HOME/.cache/zerotrust-operator}/helm/$HELM_VERSION"
helm="$cache/bin/helm"
crds="${ZT_CACHE_DIR:-$HOME/.cache/zerotrust-operator}/prometheus-operator-crds/$PROMETHEUS_OPERATOR_VERSION"
crd_files=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)

log() { printf 'helm.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

build() {
  if [ ! -x "$helm" ]; then
    [ "${ZT_NO_BUILD:-}" != 1 ] ||
      die "helm $HELM_VERSION is not built in $cache/bin; run \`hack/helm.sh build\` (needs Go; a few minutes)"
    command -v go >/dev/null || die "Go is needed to build helm (https://go.dev/dl)"
    log "building helm $HELM_VERSION into $cache/bin (cold: a few minutes)"
    mkdir -p "$cache/bin.tmp"
    local v=helm.sh/helm/v4/internal/version
    (
      cd "$mod_dir"
      CGO_ENABLED=0 GOFLAGS="-buildvcs=false" go build -trimpath \
        -ldflags "-s -w -X $v.version=$HELM_VERSION -X $v.gitTreeState=clean" \
        -o "$cache/bin.tmp/helm" helm.sh/helm/v4/cmd/helm
    )
    rm -rf "$cache/bin" && mv "$cache/bin.tmp" "$cache/bin"
  fi
  echo "$helm"
}

fetch_crds() {
  "$repo/hack/module-files.sh" "$crds" \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
    example/prometheus-operator-crd "${crd_files[@]}"
}

case "${1:-}" in
  build)
    fetch_crds >/dev/null
    build
    ;;
  path) ZT_NO_BUILD=1 build ;;
  crds) ZT_NO_BUILD=1 fetch_crds ;;
  run)
    shift
    h=$(build)
    exec "$h" "$@"
    ;;
  *)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
