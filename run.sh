#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine: installs what is missing, then runs the job.
#   ./run.sh demo [args]   a full simulated call on embedded engines (the main job)
#   ./run.sh test [args]   the test suite (what CI runs)
#   ./run.sh <cmd> [args]  any `callwright` sub-command (serve, emulator, call, bench, ...)
set -euo pipefail
cd "$(dirname "$0")"

DEBIAN_PACKAGES=(redis-server espeak-ng libespeak-ng1 flite sox)
# Only the test suite needs these (the web UI tests drive the system browser, the scale tests put HAProxy in
# front of several replicas); `demo` never installs them.
TEST_DEBIAN_PACKAGES=(chromium haproxy)
VENV=.venv
PYTHON_BIN=${PYTHON:-python3.11}
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

ensure_debian_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 || { log "apt-get not found; install: ${missing[*]}"; exit 1; }
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    log "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

SMART_TURN_WHEEL="pipecat-ai==1.14.0"

ensure_venv() {
  if [[ ! -x $VENV/bin/python || ! -x $VENV/bin/pip ]]; then
    log "creating $VENV with $PYTHON_BIN"
    rm -rf "$VENV"
    if ! "$PYTHON_BIN" -m venv "$VENV" 2>/dev/null; then
      # Debian and Ubuntu ship the venv module separately.
      rm -rf "$VENV"
      local ver
      ver=$("$PYTHON_BIN" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      ensure_debian_packages "python${ver}-venv" || ensure_debian_packages python3-venv
      "$PYTHON_BIN" -m venv "$VENV"
    fi
  fi
  # Reinstall only when the dependency list changed, so a second run starts at once.
  local stamp="$VENV/.installed-$( (cat pyproject.toml; echo "$SMART_TURN_WHEEL") | sha256sum | cut -c1-16)"
  if [[ ! -f $stamp ]]; then
    log "installing Python packages"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    # Only the Smart Turn end-of-turn model (an ONNX file inside the BSD-2 pipecat-ai wheel) is used, so
    # the wheel goes in without pipecat's own dependency tree (which would pin soxr and add numba).
    "$VENV/bin/python" -m pip install -q --no-deps "$SMART_TURN_WHEEL"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}

ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
ensure_venv

cmd=${1:-demo}
shift || true
case "$cmd" in
  test)
    ensure_debian_packages "${TEST_DEBIAN_PACKAGES[@]}"
    # Most tests wait on real-time calls, so three workers on two cores finish in well under half the
    # serial time; tests/conftest.py keeps files that share a loaded model on one worker and runs the few
    # timing-accuracy tests alone. `./run.sh test -n 0 ...` runs serially.
    exec "$VENV/bin/python" -m pytest -n "${PYTEST_WORKERS:-3}" --dist loadgroup "$@"
    ;;
  *)
    exec "$VENV/bin/callwright" "$cmd" "$@"
    ;;
esac
