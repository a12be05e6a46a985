#!/usr/bin/env bash
# Set up (or refresh) the environment and run the demo or the tests.
#   ./dev.sh demo [args]   run `emu-agent demo` on the built-in model
#   ./dev.sh test [args]   run the test suite against the installed package
#   ./dev.sh setup         only create/refresh .venv
set -euo pipefail
cd "$(dirname "$0")"
VENV=${EMU_AGENT_VENV:-.venv}

setup() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # torch first and pinned: an unpinned torch pulls GBs of CUDA packages on a CPU-only machine.
  "$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/pip" install -q torch==2.13.0
  "$VENV/bin/pip" install -q -c constraints.txt ".[dev,video]"
}

cmd=${1:-test}; shift || true
case "$cmd" in
  setup) setup ;;
  demo) setup; exec "$VENV/bin/emu-agent" demo "$@" ;;
  test) setup; exec "$VENV/bin/pytest" -q "$@" ;;
  lint) setup; exec "$VENV/bin/ruff" check . ;;
  *) echo "usage: ./dev.sh {demo|test|setup|lint}" >&2; exit 2 ;;
esac
