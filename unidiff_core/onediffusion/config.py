"""NextDiT configuration: the fields of the released `transformer/config.json` and derived sizes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..common.errors import CheckpointError
from ..common.safetensors_io import read_json

# Training leftovers in the released config.json that do not affect the model.
IGNORED_KEYS = {
    "_class_name", "_diffusers_version", "_name_or_path", "decay", "forward_dtype", "inv_gamma", "min_decay",
    "optimization_step", "param_dtype", "power", "remat_attention", "remat_block", "remat_mlp",
    "update_after_step", "use_ema_warmup",
}


# Sanity limits of the fields that size the model, checked before anything is allocated: far above any real
# NextDiT (the released one: depth 16, hidden 3840, 32 heads), far below what would tie a loader up.
# Field -> (kind, lowest, highest); kind "int", "float", "ints" (a list of ints), "bool", "str".
LIMITS = {
    "input_size": ("ints", 1, 4096), "patch_size": ("ints", 1, 64), "in_channels": ("int", 1, 1024),
    "hidden_size": ("int", 6, 65536), "depth": ("int", 1, 1024), "num_heads": ("int", 1, 1024),
    "num_kv_heads": ("int", 1, 1024), "multiple_of": ("int", 1, 65536), "ffn_dim_multiplier": ("float", 0.01, 64),
    "norm_eps": ("float", 0.0, 1.0), "pred_sigma": ("bool", None, None), "caption_channels": ("int", 1, 65536),
    "qk_norm": ("bool", None, None), "norm_type": ("str", None, None), "model_max_length": ("int", 1, 1 << 20),
    "rotary_max_length": ("int", 1, 1 << 20), "rotary_max_length_t": ("int", 1, 1 << 20),
}
NULLABLE = {"num_kv_heads", "ffn_dim_multiplier", "rotary_max_length_t"}


def check_field(key: str, value, source: str) -> None:
    """One config field: its JSON type and its limits; CheckpointError naming the file, the field and the value."""
    if value is None and key in NULLABLE:
        return
    kind, low, high = LIMITS[key]
    items = value if kind == "ints" else [value]
    if kind == "ints" and (not isinstance(value, list) or not 1 <= len(value) <= 3):
        ok = False
    elif kind in ("int", "ints"):
        ok = all(type(v) is int for v in items)
    elif kind == "float":
        ok = all(type(v) in (int, float) and math.isfinite(v) for v in items)
    elif kind == "bool":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise CheckpointError(f"{source}: {key} = {str(value)[:60]!r} is not {_KIND_TEXT[kind]}; re-download "
                              "transformer/config.json")
    if low is not None and not all(low <= v <= high for v in items):
        raise CheckpointError(f"{source}: {key} = {str(value)[:60]} is outside the sane range {low}..{high} for a "
                              "NextDiT; this config cannot be a OneDiffusion transformer, re-download "
                              "transformer/config.json")


_KIND_TEXT = {"int": "an integer", "ints": "a list of 1 to 3 integers", "float": "a finite number",
              "bool": "true or false", "str": "text"}


@dataclass
class NextDiTConfig:
    input_size: list = field(default_factory=lambda: [1, 32, 32])
    patch_size: list = field(default_factory=lambda: [1, 2, 2])
    in_channels: int = 16
    hidden_size: int = 4096
    depth: int = 32
    num_heads: int = 32
    num_kv_heads: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    pred_sigma: bool = False
    caption_channels: int = 4096
    qk_norm: bool = False
    norm_type: str = "rms"
    model_max_length: int = 120
    rotary_max_length: int = 384  # kept for the record; RoPE is computed per call, with no limit
    rotary_max_length_t: int | None = None

    def __post_init__(self):
        self.input_size = list(self.input_size)
        self.patch_size = list(self.patch_size)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 6:
            raise ValueError(f"head size {self.head_dim} must be divisible by 6 for the 3-axis RoPE")
        if self.num_heads % self.kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.kv_heads}")

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def cond_width(self) -> int:
        """Width of the timestep/caption conditioning vector (min(D, 1024))."""
        return min(self.hidden_size, 1024)

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.pred_sigma else self.in_channels

    @property
    def patch_features_in(self) -> int:
        pt, ph, pw = self.patch_size
        return pt * ph * pw * self.in_channels

    @property
    def patch_features_out(self) -> int:
        pt, ph, pw = self.patch_size
        return pt * ph * pw * self.out_channels

    @property
    def ffn_hidden_size(self) -> int:
        hidden = int(2 * (4 * self.hidden_size) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    @property
    def default_pixel_size(self) -> tuple[int, int]:
        return int(self.input_size[-2]) * 8, int(self.input_size[-1]) * 8

    # -------------------------------------------------------------- (de)serialise
    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "NextDiTConfig":
        """A checked config: known keys, each of its type and within LIMITS (checked before any allocation)."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: the transformer config is a JSON {type(data).__name__}, not an object; "
                                  "re-download transformer/config.json")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - IGNORED_KEYS)
        if unknown:
            raise CheckpointError(f"{source}: unknown NextDiT config keys {unknown}; re-download "
                                  "transformer/config.json (or remove those keys)")
        values = {k: v for k, v in data.items() if k in known}
        for key, value in values.items():
            check_field(key, value, source)
        try:
            return cls(**values)
        except ValueError as e:
            raise CheckpointError(f"{source}: {e}; re-download transformer/config.json") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "NextDiTConfig":
        path = Path(path)
        return cls.from_dict(read_json(path, "transformer config", "re-download transformer/config.json"),
                             source=str(path))

    def to_dict(self) -> dict:
        return asdict(self)


# The released OneDiffusion transformer (lehduong/OneDiffusion transformer/config.json).
REAL_CONFIG = dict(
    input_size=[1, 96, 96], patch_size=[1, 2, 2], in_channels=16, hidden_size=3840, depth=16, num_heads=32,
    num_kv_heads=8, multiple_of=256, ffn_dim_multiplier=None, norm_eps=1e-5, pred_sigma=False,
    caption_channels=2048, qk_norm=True, norm_type="rms", model_max_length=512, rotary_max_length=128,
    rotary_max_length_t=None,
)
# Parameter counts of the released model's other parts, for memory estimates (bench, training.lora_memory).
# T5 v1.1 / flan-T5 XL encoder (d_model 2048, 24 layers, 32 heads x 64, gated FFN 5120, vocab 32128):
# the spec's presumed text encoder (caption_channels 2048). Encoder weights only.
T5_XL_ENCODER_PARAMS = 24 * (4 * 2048 * 2048 + 3 * 2048 * 5120 + 2 * 2048) + 32128 * 2048 + 2048 + 32 * 32
SD3_VAE_PARAMS = 83_819_683  # AutoencoderKL with the SD3 VAE config (bench.models.SD3_VAE)
