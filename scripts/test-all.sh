#!/usr/bin/env bash
# All of ppml's tests: the Rust workspace (cargo test --workspace), then the
# Python package's pytest suite (crates/python/tests) in the venv that
# scripts/python-env.sh makes (maturin, pytest, numpy, torch, flwr from PyPI;
# `pip install ./crates/python`). The README's test command, and what .ci/run runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

echo "== Rust tests (cargo test --workspace)"
cargo test --workspace

echo "== Python package (venv: $(scripts/python-env.sh --print))"
T0=$(date +%s)
scripts/python-env.sh
echo "python environment ready in $(( $(date +%s) - T0 )) s"
VENV=$(scripts/python-env.sh --print)

echo "== Python tests (pytest crates/python/tests)"
set +e
PPML_DATA=$ROOT/data/mnist "$VENV/bin/python" -m pytest -q -p no:cacheprovider crates/python/tests "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  # pytest's "no tests collected": the suite is missing or was filtered away.
  echo "pytest collected no tests in crates/python/tests: that is a failure here" >&2
  exit 1
fi
exit $rc
