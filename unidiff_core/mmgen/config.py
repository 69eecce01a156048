"""MMGen SiT configuration: the released model names and what a checkpoint's `args` and shapes say.

The number of attention heads is not recoverable from the weights, so a checkpoint's `args.model`
name picks depth / width / heads / patch from `SIT_MODELS`; everything else is checked against the
tensor shapes when the weights are loaded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

# name -> (depth, hidden_size, num_heads). Patch size is the "/N" suffix. The SiT-T entries are the tiny
# test models of the same layout (the real family is S/B/L/XL).
SIT_SIZES = {
    "SiT-XL": (28, 1152, 16),
    "SiT-L": (24, 1024, 16),
    "SiT-B": (12, 768, 12),
    "SiT-S": (12, 384, 6),
    "SiT-T": None,  # tiny test models: sizes per patch below
}
TINY_MODELS = {  # name -> (depth, hidden, heads, projector_dim)
    "SiT-T/2": (2, 64, 4, 64),
    "SiT-T/4": (3, 64, 2, 48),
}
SIT_MODELS = [f"{size}/{p}" for size in ("SiT-XL", "SiT-L", "SiT-B", "SiT-S") for p in (2, 4, 8)] + list(TINY_MODELS)

NUM_MODALITIES = 4  # rgb, depth, normal, mask (layout.py)
LATENT_CHANNELS = 4  # per modality (SD VAE)
RELEASE_PARAMS = 694_647_936  # SiT-XL/2 with its projector heads


@dataclass(frozen=True)
class MMGenConfig:
    model_name: str = "SiT-XL/2"
    input_size: int = 32  # latent side = resolution // 8
    patch_size: int = 2
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000  # the label table has one more row: the null label used for guidance
    num_tasks: int = NUM_MODALITIES
    encoder_depth: int = 8  # block after which the (training-only) projectors read
    projector_dim: int = 2048
    z_dims: tuple = (768,)
    fused_attn: bool = True
    path_type: str = "linear"
    resolution: int = 256

    @property
    def in_channels(self) -> int:
        return LATENT_CHANNELS * self.num_tasks

    @property
    def null_label(self) -> int:
        return self.num_classes

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["z_dims"] = list(self.z_dims)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "MMGenConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"family"})
        if unknown:
            raise ValueError(f"unknown MMGen config keys {unknown}; expected some of {sorted(names)}")
        data = {k: v for k, v in data.items() if k in names}
        if "z_dims" in data:
            data["z_dims"] = tuple(data["z_dims"])
        return cls(**data)


def named_config(name: str, **overrides) -> MMGenConfig:
    """The config of a model name such as 'SiT-XL/2' (released), with overrides from a checkpoint's args."""
    if name in TINY_MODELS:
        depth, hidden, heads, proj = TINY_MODELS[name]
        base = dict(depth=depth, hidden_size=hidden, num_heads=heads, projector_dim=proj,
                    patch_size=int(name.rsplit("/", 1)[1]))
    else:
        size, _, patch = name.partition("/")
        if SIT_SIZES.get(size) is None or patch not in ("2", "4", "8"):
            raise KeyError(name)
        depth, hidden, heads = SIT_SIZES[size]
        base = dict(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=int(patch))
    base.update(overrides)
    return MMGenConfig(model_name=name, **base)


def release_config() -> MMGenConfig:
    """SiT-XL/2 as released (0600000.pt / 0620000.pt)."""
    return named_config("SiT-XL/2")
