#!/usr/bin/env bash
# Makes (or refreshes) the Python environment of ppml's Python package, its
# tests and the Flower example: a venv at $PPML_VENV (default: target/py-venv,
# inside the gitignored target/) with maturin, pytest, numpy, torch and flwr
# from PyPI, and `pip install ./crates/python` (rebuilt when sources changed).
#   scripts/python-env.sh          create/refresh; progress on stderr
#   scripts/python-env.sh --print  print the venv path only
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${PPML_VENV:-$ROOT/target/py-venv}
if [ "${1:-}" = "--print" ]; then echo "$VENV"; exit 0; fi
PY=${PYTHON:-python3}
mkdir -p "$(dirname "$VENV")"
# One setup at a time per venv (run.sh and test-all.sh may both call this).
exec 9>"$VENV.lock"
flock 9
# The PyPI packages the package, its tests and the Flower app need. torch's
# default Linux wheel pulls the CUDA libraries (about 5 GB installed; PyPI has
# no CPU-only build): measured at about 2 minutes on this machine.
PKGS=(maturin pytest numpy torch flwr)
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import maturin, pytest, numpy, torch, flwr" 2>/dev/null; then
  echo "installing ${PKGS[*]} into $VENV" >&2
  "$VENV/bin/pip" install --disable-pip-version-check -q "${PKGS[@]}" >&2
fi
# Rebuild the extension when any Rust or Python source of the workspace is
# newer than the last install.
STAMP=$VENV/.ppml-installed
if [ ! -f "$STAMP" ] || ! "$VENV/bin/python" -c "import ppml" 2>/dev/null \
   || [ -n "$(find "$ROOT/crates" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" \
        \( -name '*.rs' -o -name '*.toml' -o -name '*.py' -o -name Cargo.lock \) \
        -newer "$STAMP" -not -path '*/target/*' -print -quit)" ]; then
  echo "building and installing ppml (pip install ./crates/python)" >&2
  touch "$STAMP.$$"
  "$VENV/bin/pip" install --disable-pip-version-check -q --force-reinstall --no-deps "$ROOT/crates/python" >&2
  mv "$STAMP.$$" "$STAMP"
fi
