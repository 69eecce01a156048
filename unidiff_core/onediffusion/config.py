"""NextDiT configuration: the fields of the released `transformer/config.json` and derived sizes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# Training leftovers in the released config.json that do not affect the model.
IGNORED_KEYS = {
    "_class_name", "_diffusers_version", "_name_or_path", "decay", "forward_dtype", "inv_gamma", "min_decay",
    "optimization_step", "param_dtype", "power", "remat_attention", "remat_block", "remat_mlp",
    "update_after_step", "use_ema_warmup",
}


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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - IGNORED_KEYS)
        if unknown:
            raise ValueError(f"{source}: unknown NextDiT config keys {unknown}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, path: str | Path) -> "NextDiTConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"transformer config not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"transformer config {path} is not valid JSON: {e}") from None
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict:
        return asdict(self)


# The released OneDiffusion transformer (lehduong/OneDiffusion transformer/config.json).
REAL_CONFIG = dict(
    input_size=[1, 96, 96], patch_size=[1, 2, 2], in_channels=16, hidden_size=3840, depth=16, num_heads=32,
    num_kv_heads=8, multiple_of=256, ffn_dim_multiplier=None, norm_eps=1e-5, pred_sigma=False,
    caption_channels=2048, qk_norm=True, norm_type="rms", model_max_length=512, rotary_max_length=128,
    rotary_max_length_t=None,
)
