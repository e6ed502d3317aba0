#!/usr/bin/env bash
# sensmap's one entry point on a fresh machine (Debian/Ubuntu with python3 ≥ 3.10).
#   bash run.sh          set up (first time) and start the dashboard on http://127.0.0.1:8501
#   bash run.sh test     set up (first time, with test tools and Chromium) and run every test
#   bash run.sh setup    only set up
set -euo pipefail
cd "$(dirname "$0")"

VENV="${SENSMAP_VENV:-.venv}"
PY="$VENV/bin/python"

say() { printf '\033[1m[sensmap]\033[0m %s\n' "$*" >&2; }

setup() {
  if [ ! -x "$PY" ]; then
    say "creating the virtual environment in $VENV"
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$VENV/.installed" ] || [ requirements.txt -nt "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    say "installing requirements (first time: a few minutes)"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -r requirements.txt
    "$PY" -m pip install -q --no-deps -e .
    touch "$VENV/.installed"
  fi
  # Offline weights: this repository's dev and CI setup keeps real ImageNet MobileNets in ../shared/weights.
  if [ -z "${SENSMAP_WEIGHTS_DIR:-}" ] && [ -f ../shared/weights/manifest.json ]; then
    export SENSMAP_WEIGHTS_DIR="$(cd ../shared/weights && pwd)"
    say "using local weights from $SENSMAP_WEIGHTS_DIR"
  fi
}

setup_tests() {
  if [ ! -f "$VENV/.installed-dev" ] || [ requirements-dev.txt -nt "$VENV/.installed-dev" ]; then
    say "installing test tools"
    "$PY" -m pip install -q -r requirements-dev.txt
    touch "$VENV/.installed-dev"
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    say "installing Debian's chromium for the browser tests"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  fi
}

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

case "${1:-app}" in
  app)
    setup
    say "starting the dashboard: open http://127.0.0.1:${SENSMAP_PORT:-8501}"
    exec "$VENV/bin/streamlit" run app.py --server.address 127.0.0.1 --server.port "${SENSMAP_PORT:-8501}"
    ;;
  test)
    setup
    setup_tests
    say "lint"
    "$VENV/bin/ruff" check .
    say "tests (fast, slow and browser)"
    shift || true
    exec "$VENV/bin/pytest" "$@"
    ;;
  setup)
    setup
    ;;
  *)
    echo "usage: bash run.sh [app|test|setup]" >&2
    exit 2
    ;;
esac
