#!/usr/bin/env bash
# GPU readiness in one run (≤ 8 min on one H100 / H200): training MFU of the base and big presets (bf16, eager
# and torch.compile), decoding sentences/s against CTranslate2, and test2016 BLEU of the Multi30k GPU recipe
# after --minutes of training. Options are benchmarks/gpu_report.py's (--help).
#
#   PYTHON=python3 benchmarks/gpu.sh [--only mfu,decode,bleu] [--minutes 2] [--out DIR] [--dry-run]
#
# Set-up, skipped for --help and --dry-run: a $PYTHON (default python3) that already imports torch — the GPU
# machine's CUDA build — is used as it is: torch is never reinstalled. Rosetta's own dependencies come from
# `pip install -e .` only when missing (torch already satisfies the pin, so pip leaves it), the CT2 / HF peers
# from `pip install -e .[bench]` likewise; when pip cannot (no network), the run goes on with PYTHONPATH=src
# and the decode part without the missing peers. Without any torch, the Makefile's venv is made (CPU wheel:
# --device cpu only). Wheels in .whl/ (a machine without network: ctranslate2, say) are installed first, offline,
# into a folder put on PYTHONPATH. The corpora: $ROSETTA_DATA, else ../shared/data, else shared/data here.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export ROSETTA_DATA=${ROSETTA_DATA:-$(if [ -d ../shared/data ]; then cd ../shared/data && pwd; else echo "$PWD/shared/data"; fi)}

setup=1
for arg in "$@"; do
  case "$arg" in -h|--help|--dry-run) setup=0 ;; esac
done

say() { echo "gpu.sh: $*" >&2; }
online() {  # can pip reach its index? (3 s at most: a machine without network should not wait on pip)
  "$PYTHON" -c "import socket; socket.create_connection(('pypi.org', 443), timeout=3).close()" 2>/dev/null
}
pip_install() {
  if online; then "$PYTHON" -m pip install -q --retries 1 --timeout 15 "$@"; else say "offline: no pip install $*"; false; fi
}

if [ "$setup" = 1 ]; then
  started=$(date +%s)
  if compgen -G ".whl/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/rosetta-gpu-site"
    say "installing the wheels in .whl/ offline into $site"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" .whl/*.whl \
      && export PYTHONPATH="$site:$PYTHONPATH"
  fi
  if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    say "$PYTHON has no torch: making the Makefile's venv (the CPU wheel: --device cpu only)"
    make install PYTHON="$PYTHON" && PYTHON=.venv/bin/python
  fi
  "$PYTHON" -c "import torch; print('gpu.sh: torch', torch.__version__, '| CUDA available:', torch.cuda.is_available(),
      '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" >&2
  if ! "$PYTHON" -c "import numpy, rich, safetensors, sacrebleu, tokenizers, typer" 2>/dev/null; then
    say "installing rosetta's dependencies (pip install -e .; torch stays as it is)"
    pip_install -e . || say "pip install -e . failed: going on with PYTHONPATH=src"
  fi
  if ! "$PYTHON" -c "import ctranslate2, transformers" 2>/dev/null; then
    say "installing the decoding peers (pip install -e .[bench]: ctranslate2, transformers)"
    pip_install -e ".[bench]" || say "no ctranslate2 / transformers: the decode part measures Rosetta alone"
  fi
  say "set-up took $(( $(date +%s) - started )) s"
fi
exec "$PYTHON" benchmarks/gpu_report.py "$@"
