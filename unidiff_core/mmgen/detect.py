"""Is a path an MMGen checkpoint? From names and headers only (no torch: the family table imports this)."""

from __future__ import annotations

import json
from pathlib import Path

FAMILY = "mmgen"
CONFIG_NAME = "config.json"
TRAINING_SUFFIXES = (".pt", ".pth")  # the released training checkpoints (a restricted torch zip pickle)
MARKER_KEYS = ("lis_final_layer.0.linear.weight", "t_embedder.mlp_fused.0.weight")


def is_mmgen_checkpoint(path) -> bool:
    """A released .pt/.pth, a converted folder (config.json with family "mmgen"), or SiT-shaped safetensors."""
    path = Path(path)
    if path.is_dir():
        try:
            return json.loads((path / CONFIG_NAME).read_text()).get("family") == FAMILY
        except (OSError, ValueError, AttributeError):
            return False
    suffix = path.suffix.lower()
    if suffix in TRAINING_SUFFIXES:
        return True
    if suffix != ".safetensors":
        return False
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 100_000_000:
                return False
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and all(k in header for k in MARKER_KEYS)
