"""The transformer on ComfyUI's host operations (comfy.ops layers, its attention, its ModelPatcher loading
it partially), checked on the CPU in a subprocess (tests/comfy_ops_check.py). ComfyUI comes from
COMFYUI_PATH, else from the source tarball in ../shared/comfyui (unpacked into a temporary folder); the
interpreter is COMFYUI_PYTHON (one with ComfyUI's requirements), else this one. Skipped when neither
is at hand or ComfyUI's requirements are missing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARBALLS = sorted((ROOT.parent / "shared" / "comfyui").glob("ComfyUI-*.tar.gz"))
BF16_RTOL = 1.6e-2  # torch.testing's relative tolerance for bfloat16


@pytest.fixture(scope="module")
def comfy_path(tmp_path_factory) -> str:
    path = os.environ.get("COMFYUI_PATH")
    if path:
        if not os.path.isdir(os.path.join(path, "comfy")):
            pytest.skip(f"COMFYUI_PATH={path} holds no comfy/ package")
        return path
    if not TARBALLS:
        pytest.skip("no ComfyUI: set COMFYUI_PATH or put the source tarball in ../shared/comfyui")
    target = tmp_path_factory.mktemp("comfyui")
    with tarfile.open(TARBALLS[-1]) as tar:
        tar.extractall(target, filter="data")
    return str(target / "ComfyUI")


@pytest.fixture(scope="module")
def measured(comfy_path) -> dict:
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([python, str(ROOT / "tests" / "comfy_ops_check.py"), comfy_path], capture_output=True,
                          text=True, timeout=600, env=env)
    missing = re.search(r"ModuleNotFoundError: No module named '([^']+)'", proc.stderr)
    if proc.returncode and missing:
        pytest.skip(f"{python} lacks ComfyUI's requirement {missing.group(1)!r} (set COMFYUI_PYTHON)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_comfy_layers_and_attention_keep_float32_parity(measured):
    assert measured["whole_vs_default_max_abs"] <= 1e-4
    assert measured["whole_vs_reference_max_abs"] <= 1e-4


def test_partial_load_streams_every_layer_and_changes_nothing(measured):
    """A one-byte budget: every weighted layer stays on the offload device and is cast when it runs."""
    assert measured["streams"] and measured["partial_lowvram"]
    assert measured["streamed_layers"] == measured["cast_layers"] == measured["weighted_layers"] > 0
    assert measured["partial_equals_whole"]


def test_manual_cast_bf16_compute_from_offloaded_fp32_weights(measured):
    assert measured["bf16_operations"] == "comfy.ops.manual_cast.Linear"
    assert measured["bf16_weight_dtypes"] == ["torch.float32"] and measured["bf16_output_dtype"] == "torch.bfloat16"
    assert measured["bf16_cast_layers"] == measured["bf16_weighted_layers"]
    assert measured["bf16_rel_err_vs_fp32"] <= BF16_RTOL
