"""LoRA adapters of the NextDiT transformer: the file format, reading a file against a model, the weight deltas.

The one place that knows how a UniDiff LoRA file is laid out (the trainer writes it with `save_lora`; the CLI,
the `UniDiff LoRA` node and ComfyUI's patcher read it through `load_lora`).

File format: one `.safetensors` file.
* For each adapted linear layer of the transformer, named as in the transformer's state dict (e.g.
  `layers.0.attention.wq`): `<module>.lora_A.weight` of shape (rank, in_features) and
  `<module>.lora_B.weight` of shape (out_features, rank), floating point (peft's lora_A / lora_B).
* Header metadata (text): `format` = "unidiff-lora", `format_version` = "1", `rank`, `alpha`, the
  `target_modules` it was trained on, and what it was trained from (`base`, `hidden_size`, `depth`).
* The layer's weight becomes W + strength * (alpha / rank) * B @ A (peft's scaling; strength 1 = as trained).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..common import checks
from ..common.errors import CheckpointError, InputError
from ..common.safetensors_io import read_header

FORMAT = "unidiff-lora"
FORMAT_VERSION = "1"
# The attention (self and caption cross-attention) and SwiGLU feed-forward linears of every block: where
# the model's capacity is; the embedders, adaLN and the final layer stay as trained.
TARGET_MODULES = ("wq", "wk", "wv", "wo", "wk_y", "wv_y", "w1", "w2", "w3")
SUFFIX_A, SUFFIX_B = ".lora_A.weight", ".lora_B.weight"
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
RETRAIN = "re-train the LoRA for this checkpoint with python -m training.train --init CHECKPOINT --lora-rank R"


@dataclass
class LoRA:
    path: str
    rank: int
    alpha: float
    weights: dict = field(repr=False)  # module name -> (A (rank, in), B (out, rank)) float32 on the CPU
    metadata: dict = field(default_factory=dict, repr=False)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def name(self) -> str:
        return Path(self.path).stem


def target_modules(model: torch.nn.Module, names=TARGET_MODULES) -> list[str]:
    """Names of the model's linear layers a LoRA adapts by default (inside the blocks, last name part in `names`)."""
    return [name for name, module in model.named_modules()
            if name.startswith("layers.") and name.rsplit(".", 1)[-1] in names
            and getattr(module, "weight", None) is not None and module.weight.ndim == 2]


def save_lora(path: str | os.PathLike, weights: dict, rank: int, alpha: float, metadata: dict | None = None) -> Path:
    """Write {module: (A, B)} as a LoRA file (float32), with the format's metadata plus `metadata` (text)."""
    from safetensors.torch import save_file

    tensors = {}
    for module, (a, b) in weights.items():
        tensors[module + SUFFIX_A] = a.detach().float().cpu().contiguous()
        tensors[module + SUFFIX_B] = b.detach().float().cpu().contiguous()
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, rank=str(int(rank)), alpha=repr(float(alpha)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def _meta_number(path, meta: dict, key: str, integer: bool):
    try:
        return checks.number(key, meta.get(key), 1 if integer else None, None, integer=integer)
    except InputError as e:
        raise CheckpointError(f"{path}: metadata {key}={meta.get(key)!r} is {e.problem}; a UniDiff LoRA file "
                              f"records its {key} as a number ({RETRAIN})") from None


def read_lora(path: str | os.PathLike) -> LoRA:
    """A LoRA file's checked header, metadata and tensors (no model needed; `check_lora` checks it against one)."""
    from safetensors.torch import load_file

    path = Path(path)
    header = read_header(path)  # missing, pickled, truncated, corrupt: CheckpointError naming the file
    meta = header.get("__metadata__", {})
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a UniDiff LoRA file (metadata format={meta.get('format')!r}, expected "
                              f"{FORMAT!r}); use a LoRA written by python -m training.train --lora-rank R "
                              "(LoRAs of other models do not fit this transformer)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: LoRA format_version {meta.get('format_version')!r} is not "
                              f"{FORMAT_VERSION!r}; update the pack or re-train the LoRA")
    rank, alpha = _meta_number(path, meta, "rank", True), _meta_number(path, meta, "alpha", False)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    modules = {}
    for key, entry in sorted(entries.items()):
        if key.endswith(SUFFIX_A):
            modules.setdefault(key[:-len(SUFFIX_A)], {})["A"] = entry
        elif key.endswith(SUFFIX_B):
            modules.setdefault(key[:-len(SUFFIX_B)], {})["B"] = entry
        else:
            raise CheckpointError(f"{path}: unknown key {key!r} (a LoRA file holds only <module>{SUFFIX_A} and "
                                  f"<module>{SUFFIX_B}); {RETRAIN}")
        if entry["dtype"] not in FLOAT_DTYPES:
            raise CheckpointError(f"{path}: {key} has dtype {entry['dtype']}, not a float dtype; {RETRAIN}")
    if not modules:
        raise CheckpointError(f"{path}: the LoRA file holds no lora_A/lora_B tensors; {RETRAIN}")
    for module, pair in modules.items():
        for part, suffix in (("A", SUFFIX_A), ("B", SUFFIX_B)):
            if part not in pair:
                other = SUFFIX_B if part == "A" else SUFFIX_A
                raise CheckpointError(f"{path}: {module}{other} has no {module}{suffix} (each layer needs both); "
                                      f"{RETRAIN}")
        a, b = pair["A"]["shape"], pair["B"]["shape"]
        if len(a) != 2 or len(b) != 2 or a[0] != rank or b[1] != rank:
            raise CheckpointError(f"{path}: {module}: lora_A {a} and lora_B {b} do not have the file's rank {rank} "
                                  f"(A must be (rank, in), B (out, rank)); {RETRAIN}")
    tensors = load_file(str(path))
    weights = {m: (tensors[m + SUFFIX_A].float(), tensors[m + SUFFIX_B].float()) for m in modules}
    for key, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: {key} holds NaN or infinite values (a diverged training run); {RETRAIN}")
    return LoRA(str(path), rank, alpha, weights, dict(meta))


def check_lora(lora: LoRA, model: torch.nn.Module) -> None:
    """Every adapted layer exists in the model as a linear layer whose weight B @ A fits, stored in a dtype a
    delta can be added to (not fp8: its per-row scales would be wrong)."""
    known = dict(model.named_modules())
    for module, (a, b) in lora.weights.items():
        layer = known.get(module)
        weight = getattr(layer, "weight", None)
        base = lora.metadata.get("base")
        trained = f" (it was trained on {base})" if base else ""
        if weight is None or weight.ndim != 2:
            raise CheckpointError(f"{lora.path}: key {module}{SUFFIX_A}: the transformer has no linear layer "
                                  f"{module!r}{trained}; use a LoRA made for this checkpoint, or {RETRAIN}")
        out_features, in_features = weight.shape
        if a.shape[1] != in_features or b.shape[0] != out_features:
            raise CheckpointError(f"{lora.path}: key {module}{SUFFIX_A}: shape mismatch: the LoRA makes a "
                                  f"{b.shape[0]}x{a.shape[1]} delta, the layer's weight is {out_features}x{in_features}"
                                  f"{trained}; use a LoRA made for this checkpoint, or {RETRAIN}")
        if not weight.is_floating_point() or weight.element_size() < 2:
            raise CheckpointError(f"{lora.path}: cannot apply the LoRA to {module}.weight, stored as {weight.dtype} "
                                  "(fp8); load the model with the default weight format to use a LoRA")


def load_lora(path: str | os.PathLike, model: torch.nn.Module) -> LoRA:
    """read_lora + check_lora: a LoRA file that fits this transformer."""
    lora = read_lora(path)
    check_lora(lora, model)
    return lora


def deltas(lora: LoRA, strength: float = 1.0) -> dict:
    """{'<module>.weight': strength * alpha / rank * B @ A} in float32."""
    factor = checks.lora_strength(strength) * lora.scale
    return {module + ".weight": (b @ a) * factor for module, (a, b) in lora.weights.items()}


@torch.no_grad()
def merge_loras(model: torch.nn.Module, loras) -> torch.nn.Module:
    """Add each (LoRA, strength) of `loras` into the model's weights, in place (a caller that must keep the
    original merges into a copy). Strength 0 leaves the weights untouched, bit for bit, in every dtype."""
    for lora, strength in loras:
        check_lora(lora, model)
        if checks.lora_strength(strength) == 0:
            continue
        modules = dict(model.named_modules())
        for module, delta in deltas(lora, strength).items():
            weight = modules[module[:-len(".weight")]].weight
            weight.copy_((weight.float() + delta.to(weight.device)).to(weight.dtype))
    return model
