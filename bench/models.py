"""The benchmark's models: the tiny golden checkpoint and random checkpoints of larger configs.

Random checkpoints are written tensor by tensor in the real on-disk layout
(`transformer/config.json` + `diffusion_pytorch_model.safetensors`), so this engine and the reference
load exactly the same weights and writing a multi-GB file needs no more memory than one tensor.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from unidiff_core.onediffusion import tiny
from unidiff_core.onediffusion.config import REAL_CONFIG, NextDiTConfig
from unidiff_core.onediffusion.loading import TRANSFORMER_WEIGHTS, build_on_meta

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_TINY = ROOT / "tests" / "fixtures" / "golden" / "tiny-onediffusion"

# rotary_max_length only sizes the reference's precomputed RoPE table (this engine computes RoPE per
# grid); 64 covers 1024 px and 64 frames and keeps the reference's table small.
MID_CONFIG = dict(input_size=[1, 32, 32], patch_size=[1, 2, 2], in_channels=16, hidden_size=1152, depth=8,
                  num_heads=16, num_kv_heads=4, multiple_of=256, caption_channels=2048, qk_norm=True,
                  rotary_max_length=64)
REAL_SLICE_CONFIG = dict(REAL_CONFIG, depth=2, rotary_max_length=64)

MODELS = {
    "tiny": "golden tiny checkpoint (D 96, 2 layers, 4/2 heads, caption 32)",
    "mid": "random, D 1152, 8 layers, 16/4 heads (hd 72), caption 2048",
    "real-slice": "random, real width D 3840, 32/8 heads, caption 2048, 2 of 16 layers",
}

SD3_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
               up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
               latent_channels=16, norm_num_groups=32, scaling_factor=1.5305, shift_factor=0.0609,
               use_quant_conv=False, use_post_quant_conv=False, sample_size=1024)

_ST_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def model_config(name: str) -> NextDiTConfig:
    if name == "tiny":
        return NextDiTConfig.from_json(GOLDEN_TINY / "transformer" / "config.json") if GOLDEN_TINY.exists() \
            else NextDiTConfig(**tiny.TINY_TRANSFORMER)
    if name == "mid":
        return NextDiTConfig(**MID_CONFIG)
    if name == "real-slice":
        return NextDiTConfig(**REAL_SLICE_CONFIG)
    if name == "real":
        return NextDiTConfig(**REAL_CONFIG)
    raise ValueError(f"unknown model {name!r}")


def random_tensor(name: str, shape: tuple, seed: int) -> torch.Tensor:
    """Dense random values like `unidiff_core.onediffusion.tiny.randomize` (gains ~1, matrices ~ fan_in^-1/2), per-key seed."""
    key_seed = (seed * 1_000_003 + sum((i + 1) * ord(ch) for i, ch in enumerate(name))) % (2 ** 63)
    generator = torch.Generator().manual_seed(key_seed)
    if len(shape) == 1 and ("norm" in name or name.endswith("y_embedder.0.weight")) and name.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=generator)
    if len(shape) > 1:
        return torch.randn(shape, generator=generator) * shape[-1] ** -0.5
    return torch.randn(shape, generator=generator) * 0.3


def write_checkpoint(cfg: NextDiTConfig, folder: Path, dtype=torch.float32, seed: int = 0) -> Path:
    """Write a random NextDiT in the released layout (folder/transformer/...), streaming; returns the weights file."""
    out = Path(folder) / "transformer"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dict(cfg.to_dict(), _class_name="NextDiT"), indent=1))
    shapes = {k: tuple(v.shape) for k, v in build_on_meta(cfg).state_dict().items()}
    header, offset = {}, 0
    elem = torch.tensor([], dtype=dtype).element_size()
    for key in sorted(shapes):
        n = elem
        for s in shapes[key]:
            n *= s
        header[key] = {"dtype": _ST_DTYPES[dtype], "shape": list(shapes[key]), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path = out / TRANSFORMER_WEIGHTS
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for key in sorted(shapes):
            t = random_tensor(key, shapes[key], seed).to(dtype).contiguous()
            f.write(t.view(torch.uint8).numpy().tobytes() if dtype != torch.float32 else t.numpy().tobytes())
    return path


def smooth_time_embedding(model, min_period: float = 1000.0) -> int:
    """Zero the timestep embedder's inputs from sinusoids with a period under `min_period` timesteps.

    A dense random timestep MLP responds as strongly to the fastest sinusoids (period ~6 timesteps)
    as to the slow ones, so its conditioning is uncorrelated from one sampling step to the next,
    unlike a trained model's. The step-cache evaluation uses this smoothed variant (documented in
    docs/performance.md). Returns the number of frequencies removed.
    """
    import math

    half = model.t_embedder.frequency_size // 2
    # period_k = 2 pi / f_k with f_k = exp(-ln(1e4) k / half); keep period_k >= min_period
    cut = min(half, max(0, int(math.ceil(half * math.log(min_period / (2 * math.pi)) / math.log(10000.0)))))
    with torch.no_grad():
        w = model.t_embedder.mlp[0].weight
        w[:, :cut] = 0
        w[:, half:half + cut] = 0
        w.mul_((half / max(1, half - cut)) ** 0.5)
    return cut


def text_encoder_for(cfg: NextDiTConfig, seed: int = 1):
    """A 1-layer random T5 whose width matches the caption channels, with the byte tokenizer."""
    from transformers import T5Config, T5EncoderModel

    from unidiff_core.onediffusion.text import TextEncoder

    t5cfg = dict(tiny.TINY_T5, d_model=cfg.caption_channels, d_kv=64, d_ff=256, num_heads=4, num_layers=1)
    torch.manual_seed(seed)
    t5 = T5EncoderModel(T5Config(**t5cfg)).eval().requires_grad_(False)
    tiny.randomize(t5, seed, std=0.5)
    return TextEncoder(tiny.ByteTokenizer(), t5)


def vae_for(kind: str = "tiny", seed: int = 2):
    from diffusers import AutoencoderKL

    from unidiff_core.onediffusion.vae import VAE

    torch.manual_seed(seed)
    config = SD3_VAE if kind == "sd3" else tiny.TINY_VAE
    return VAE(AutoencoderKL(**config).eval().requires_grad_(False))


def load_pipeline(name: str, folder: Path | None = None, vae: str = "tiny", dtype=torch.float32):
    """(pipeline, timings) for a model name; random models load their transformer from `folder`.

    timings["transformer_load_s"] is the transformer's load time from disk for every model; for the
    golden tiny checkpoint timings["pipeline_load_s"] is the whole from_pretrained (T5, VAE, tokenizer too).
    """
    import time

    from unidiff_core.onediffusion.loading import load_transformer
    from unidiff_core.onediffusion.pipeline import UniDiffPipeline

    timings = {}
    if name == "tiny" and GOLDEN_TINY.exists():
        t0 = time.perf_counter()
        load_transformer(GOLDEN_TINY / "transformer", dtype=dtype)
        timings["transformer_load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pipe = UniDiffPipeline.from_pretrained(GOLDEN_TINY, dtype=dtype)
        timings["pipeline_load_s"] = time.perf_counter() - t0
        return pipe, timings
    if name == "tiny":
        t0 = time.perf_counter()
        pipe = tiny.tiny_pipeline(dtype=dtype)
        timings["transformer_load_s"] = time.perf_counter() - t0
        return pipe, timings
    cfg = model_config(name)
    t0 = time.perf_counter()
    transformer = load_transformer(Path(folder) / "transformer", dtype=dtype)
    timings["transformer_load_s"] = time.perf_counter() - t0
    return UniDiffPipeline(transformer, vae_for(vae), text_encoder_for(cfg)), timings
