#!/usr/bin/env bash
# Prepare a machine for asyncq: redis-server and Python's venv module (from the
# system's packages when they are missing) and a virtual environment in .venv with
# asyncq and its dev tools. Safe to run again: it only does what is missing, and
# remakes a .venv that an earlier, interrupted run left without pip.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# Debian ships ensurepip (which venv needs) in a package of its own.
"$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 || packages+=(python3-venv)
if [ "${#packages[@]}" -gt 0 ]; then
  echo "setup: installing ${packages[*]} with apt-get" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if [ -x .venv/bin/python ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  echo "setup: .venv has no pip (an interrupted setup?); making it again" >&2
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.asyncq-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
