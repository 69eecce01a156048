#!/usr/bin/env bash
# One-shot GPU check of the real-size model (random weights, bf16): 1024² text-to-image denoise,
# step time, achieved TFLOP/s, peak GPU memory (bf16, bf16 + fused soft-cap attention, fp8 weights,
# and ComfyUI's partial loading forced: only --partial-gib GiB of weights on the GPU, the rest streamed
# layer by layer), T5-XL and SD3-VAE decode memory. Run from anywhere on a machine with a CUDA GPU:
#
#     bash bench/gpu_check.sh [--res 1024] [--steps 5] [--variants bf16,bf16-flex,fp8,partial] [--partial-gib 0,4]
#
# The partial variant needs ComfyUI: COMFYUI_PATH=<ComfyUI folder>, or COMFYUI_TARBALL=<its source
# .tar.gz> (unpacked to /tmp/comfyui-src first); without either it reports an error row and the rest runs.
#
# Needs torch; diffusers/transformers parts are skipped when absent. Wheels placed in .whl/ (e.g.
# diffusers, carried to a machine without network) are installed to /tmp/site first. Output: a table
# on stdout, the log and JSON in $OUT (or /tmp). Takes a few minutes on an H100 (first call of the
# fused attention compiles it).
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ -z "${COMFYUI_PATH:-}" && -n "${COMFYUI_TARBALL:-}" ]]; then
  mkdir -p /tmp/comfyui-src && tar -xzf "$COMFYUI_TARBALL" -C /tmp/comfyui-src
  export COMFYUI_PATH=/tmp/comfyui-src/ComfyUI
fi
OUTDIR=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>/dev/null | tee "$OUTDIR/nvidia-smi.txt" || true
PYTHONUNBUFFERED=1 python3 -m bench.gpu_check --json "$OUTDIR/gpu_check.json" "$@" 2>&1 | tee "$OUTDIR/gpu_check.log"
