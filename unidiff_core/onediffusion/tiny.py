"""Small random-weight models in the real layout, for smoke runs, tests and benchmarks.

Their outputs are noise: they exercise every code path of the real model at a tiny cost.
"""

from __future__ import annotations

import torch

from .config import NextDiTConfig
from .model import NextDiT

TINY_TRANSFORMER = dict(input_size=[1, 8, 8], hidden_size=96, depth=2, num_heads=4, num_kv_heads=2, multiple_of=32,
                        caption_channels=32, qk_norm=True, rotary_max_length=48)
TINY_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 16, 16, 16], layers_per_block=1,
                latent_channels=16, norm_num_groups=4, scaling_factor=1.5305, shift_factor=0.0609,
                use_quant_conv=False, use_post_quant_conv=False)
TINY_T5 = dict(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
               relative_attention_num_buckets=32, pad_token_id=0, eos_token_id=1)


def randomize(module: torch.nn.Module, seed: int, std: float = 0.3) -> None:
    """Dense random weights (the real init zeroes gates and FFN outputs, which would hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if p.ndim == 1 and ("norm" in name or name.endswith("y_embedder.0.weight")) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                fan_in = p.shape[-1] if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=generator) * (std if p.ndim == 1 else fan_in ** -0.5))


def random_transformer(seed: int = 0, dtype=torch.float32, **overrides) -> NextDiT:
    cfg = NextDiTConfig(**dict(TINY_TRANSFORMER, **overrides))
    model = NextDiT(cfg)
    randomize(model, seed)
    return model.to(dtype).eval().requires_grad_(False)


class ByteTokenizer:
    """UTF-8 bytes as token ids (offset 3: pad 0, eos 1, unk 2), T5-tokenizer call convention."""

    def __call__(self, text, padding="max_length", max_length=300, truncation=True, add_special_tokens=True,
                 return_tensors="pt"):
        ids = [b + 3 for b in text.encode("utf-8")][: max_length - 1] + [1]
        mask = [1] * len(ids) + [0] * (max_length - len(ids))
        ids = ids + [0] * (max_length - len(ids))

        class Tokens:
            input_ids = torch.tensor([ids])
            attention_mask = torch.tensor([mask])
        return Tokens


def tiny_pipeline(seed: int = 0, dtype=torch.float32, device="cpu"):
    """A whole random pipeline: tiny NextDiT, 16-channel VAE, 2-layer T5 with a byte tokenizer."""
    from diffusers import AutoencoderKL
    from transformers import T5Config, T5EncoderModel

    from .pipeline import UniDiffPipeline
    from .text import TextEncoder
    from .vae import VAE

    torch.manual_seed(seed)
    vae = AutoencoderKL(**TINY_VAE).eval().requires_grad_(False)
    t5 = T5EncoderModel(T5Config(**TINY_T5)).eval().requires_grad_(False)
    randomize(t5, seed + 1, std=0.5)
    text = TextEncoder(ByteTokenizer(), t5.to(device))
    transformer = random_transformer(seed, dtype).to(device)
    return UniDiffPipeline(transformer, VAE(vae.to(device)), text)
