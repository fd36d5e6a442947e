#!/usr/bin/env bash
# The long run of the engine fuzzer (tests/engine_fuzz.rs): batches with fresh random seeds until
# the time is up. The test suite runs a short pass of the same properties.
#
#   hack/fuzz.sh [SECONDS]      default 600
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
budget=${1:-600}
batch=20000
cargo test --locked --release --test engine_fuzz --no-run
start=$SECONDS
batches=0
while [ $((SECONDS - start)) -lt "$budget" ]; do
  PROPTEST_CASES=$batch cargo test --locked --release --test engine_fuzz -- --quiet arbitrary
  batches=$((batches + 1))
done
echo "fuzz: $((batches * batch)) cases in $batches batches, $((SECONDS - start)) s, no failure"
