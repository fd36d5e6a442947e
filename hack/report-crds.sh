#!/usr/bin/env bash
# The PolicyReport CRDs the reports tests install on the control plane, as their projects ship
# them, cached under ~/.cache/zerotrust-operator/ by version: openreports.io's Report from the
# github.com/openreports/reports-api Go module, and the legacy wgpolicyk8s.io PolicyReport from
# Kyverno's (its config/crds/policyreport/). Downloaded, not built.
#
#   hack/report-crds.sh build   fetch (or find cached); prints the directory holding both
#   hack/report-crds.sh dir     print it; fails, saying how to fetch, when they are missing
#
# Environment:
#   ZT_CACHE_DIR   cache, keyed by version; default ~/.cache/zerotrust-operator
set -euo pipefail

OPENREPORTS_VERSION=v0.2.1
KYVERNO_VERSION=v1.19.1

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${ZT_CACHE_DIR:-$HOME/.cache/zerotrust-operator}/report-crds/openreports-$OPENREPORTS_VERSION-kyverno-$KYVERNO_VERSION"

fetch() {
  "$repo/hack/module-files.sh" "$cache/openreports" \
    "github.com/openreports/reports-api@$OPENREPORTS_VERSION" config/crd openreports.io_reports.yaml >/dev/null
  "$repo/hack/module-files.sh" "$cache/wgpolicyk8s" \
    "github.com/kyverno/kyverno@$KYVERNO_VERSION" config/crds/policyreport wgpolicyk8s.io_policyreports.yaml >/dev/null
  echo "$cache"
}

case "${1:-}" in
  build) fetch ;;
  dir) ZT_NO_BUILD=1 fetch ;;
  *)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
