"""A small LoRA for the tiny test checkpoint, written with the core's writer (unit, node and real-host tests)."""

from __future__ import annotations

from pathlib import Path

import torch

from unidiff_core.common.safetensors_io import read_shapes
from unidiff_core.onediffusion.lora import TARGET_MODULES, save_lora

ROOT = Path(__file__).resolve().parent.parent
TINY_TRANSFORMER = ROOT / "tests" / "fixtures" / "golden" / "tiny-onediffusion" / "transformer" / \
    "diffusion_pytorch_model.safetensors"
TINY_LORA_NAME = "tiny-onediffusion-lora.safetensors"
# The same LoRA committed for the real-host server's models/loras/ (tests/test_lora.py checks it is this one).
TINY_LORA_FIXTURE = ROOT / "tests" / "fixtures" / "lora" / TINY_LORA_NAME


def tiny_lora_weights(rank: int = 2, seed: int = 0, std: float = 0.2) -> dict:
    """{module: (A, B)} for every targeted linear of the tiny checkpoint, random (seeded) and big enough to
    change its output visibly."""
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for key, (out_features, in_features) in sorted((k, s) for k, s in read_shapes([TINY_TRANSFORMER]).items()
                                                   if len(s) == 2):
        module = key[:-len(".weight")]
        if module.startswith("layers.") and module.rsplit(".", 1)[-1] in TARGET_MODULES:
            weights[module] = (torch.randn(rank, in_features, generator=g) * std,
                               torch.randn(out_features, rank, generator=g) * std)
    return weights


def write_tiny_lora(path, rank: int = 2, alpha: float = 4.0, seed: int = 0) -> Path:
    return save_lora(path, tiny_lora_weights(rank, seed), rank, alpha, metadata={"base": "tiny-onediffusion"})
