#!/usr/bin/env bash
# Copies files out of one version of a Go module (downloaded through the Go module proxy, no
# build) into a cache directory, once; prints the directory. The CRDs our tests validate
# against come this way, as their projects ship them.
#
#   hack/module-files.sh DEST MODULE@VERSION SRC_DIR FILE...
#
# Environment:
#   ZT_NO_BUILD=1  fail at once, saying how to fetch, instead of downloading missing files
set -euo pipefail

[ $# -ge 4 ] || { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
dest=$1 module=$2 src=$3
shift 3
die() { printf 'module-files.sh: error: %s\n' "$*" >&2; exit 1; }

missing=0
for f in "$@"; do [ -f "$dest/$f" ] || missing=1; done
if [ "$missing" = 1 ]; then
  [ "${ZT_NO_BUILD:-}" != 1 ] || die "$module's files are not in $dest; run \`hack/test.sh\` once (needs Go)"
  command -v go >/dev/null || die "Go is needed to fetch $module (https://go.dev/dl)"
  printf 'module-files.sh: fetching %s from %s into %s\n' "$*" "$module" "$dest" >&2
  # Outside any module, so no go.mod of ours is consulted or changed.
  dir=$(cd / && GOFLAGS=-modcacherw go mod download -json "$module" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  [ -d "$dir" ] || die "could not download $module"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  for f in "$@"; do cp "$dir/$src/$f" "$dest.tmp/$f"; done
  chmod u+w "$dest.tmp"/*
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
echo "$dest"
