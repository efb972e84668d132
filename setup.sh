#!/usr/bin/env bash
# NodeGraph's one entry point for a fresh clone:
#   bash setup.sh demo   set up .venv and run the demo graph headless (prints where the PNG is)
#   bash setup.sh test   set up .venv with the test tools and run the whole test suite
#   bash setup.sh        set up only
# Safe to re-run: it reuses .venv and skips pip when nothing it depends on changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
mode="${1:-setup}"
shift || true
venv="$here/.venv"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 2; }

case "$mode" in
  setup|demo|test) ;;
  *) die "unknown mode '$mode' (use: demo, test, or nothing to only set up)" ;;
esac

# 1. A Python >= 3.10.
python=""
for candidate in "${PYTHON:-}" python3.11 python3.12 python3.10 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || die "NodeGraph needs Python 3.10 or newer; install it (e.g. apt-get install python3) and run again."

# 2. System libraries Qt needs even offscreen (Debian/Ubuntu names).
qt_libs="libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 fonts-dejavu-core"
if command -v dpkg-query >/dev/null 2>&1; then
  missing=""
  for pkg in $qt_libs; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing system libraries for Qt:$missing"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
      say "Qt needs these system libraries; install them with:"
      say "  sudo apt-get install -y$missing"
    fi
  fi
fi

# 3. The virtual environment.
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv with $python"
  "$python" -m venv "$venv"
fi
vpy="$venv/bin/python"

extras=""
[ "$mode" = test ] && extras="[dev]"
stamp="$venv/.nodegraph-setup"
want="$(cat pyproject.toml requirements/constraints.txt | "$vpy" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())') $extras"
have="$(cat "$stamp" 2>/dev/null || true)"
# Up to date when the stamp matches; a [dev] install also serves the plain modes.
up_to_date=no
[ "$want" = "$have" ] && up_to_date=yes
[ -z "$extras" ] && [ "$have" = "${want}[dev]" ] && up_to_date=yes
if [ "$up_to_date" = no ]; then
  say "installing NodeGraph$extras into .venv (first time: a few minutes, torch is large)"
  constraints=()
  # Pin the torch/torchvision pair that is known to work, unless this venv already has a torch
  # of its own (a user's CUDA build stays as it is).
  if ! "$vpy" -c 'import torch' >/dev/null 2>&1; then
    constraints=(-c requirements/constraints.txt)
  fi
  "$vpy" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  "$vpy" -m pip install --quiet "${constraints[@]}" -e ".$extras"
  echo "$want" > "$stamp"
fi

case "$mode" in
  setup)
    say "ready: activate with 'source .venv/bin/activate', then run 'nodegraph --help' or 'python main.py'" ;;
  demo)
    example="examples/demo.json"
    [ -f "$example" ] || example="examples/hello.json"
    exec "$vpy" -m nodegraph run "$example" --out output "$@" ;;
  test)
    export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
    exec "$vpy" -m pytest "$@" ;;
esac
