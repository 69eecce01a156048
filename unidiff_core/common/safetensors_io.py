"""Safetensors files read safely: pickles refused, truncated or corrupt files named before any tensor is read."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickle checkpoints ({path.suffix}) can run arbitrary code and are refused; "
            "convert the weights to .safetensors"
        )


def check_safetensors(path: Path) -> None:
    """Fail early, with the file named, on a missing, pickled, truncated or corrupt file."""
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    refuse_pickle(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: file is truncated ({path.stat().st_size} bytes), not a safetensors file")
        header_len = int.from_bytes(head, "little")
        size = path.stat().st_size
        # A zip/pickle start is only told apart after the header fails: a valid header length can begin
        # with the byte 0x80 too (e.g. 640 = 80 02 00 ...).
        pickled = head[:2] == b"PK" or head[:1] == b"\x80"
        bad_length = header_len <= 0 or 8 + header_len > size
        header = None
        if not bad_length:
            try:
                header = json.loads(f.read(header_len))
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass
        if header is None and pickled:
            raise CheckpointError(f"{path}: this is a pickle/zip file named .safetensors; refused (convert it)")
        if bad_length:
            raise CheckpointError(f"{path}: corrupt or truncated safetensors header; re-download the file")
        if header is None:
            raise CheckpointError(f"{path}: corrupt safetensors header (not JSON); re-download the file")
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end > size:
        raise CheckpointError(
            f"{path}: truncated: the header needs {8 + header_len + end} bytes but the file has {size}; "
            "re-download the file"
        )


def safetensors_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def read_shapes(files: list[Path]) -> dict[str, tuple]:
    from safetensors import safe_open

    shapes = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def weight_mismatches(model, shapes: dict[str, tuple], ignore=lambda key: False) -> str:
    """How a file's tensor shapes differ from a model's state dict, as one message ('' when they fit).

    Keys for which ignore(key) is true may be in the file without being in the model (e.g. training-only
    heads); at most 8 keys of each kind are named.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(k for k in set(shapes) - set(expected) if not ignore(k))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != tuple(shapes[k]))

    def show(keys):
        return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

    parts = []
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    if wrong:
        parts.append("shape mismatch: " + show([f"{k} {tuple(shapes[k])} != {expected[k]}" for k in wrong]))
    return "; ".join(parts)
