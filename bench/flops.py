"""Analytic FLOP counts of one NextDiT forward (a multiply-add counts 2 FLOPs).

Only matrix products are counted (linear layers and the two attentions); norms, RoPE, activations
and other element-wise work are left out, so "achieved FLOP/s" is a conservative figure.

Two variants:
* `unidiff_forward_flops`: what this engine computes per denoising step: timestep embedding and
  adaLN modulation once per frame (not per token), caption K/V not at all (computed once per
  prompt by `prepare_context`), cross-attention over the longest unpadded caption only.
* `reference_forward_flops`: what the reference computes per step: per-token timestep embedding and
  modulation, the pooled-caption embedder and caption K/V of all 300 padded tokens in every call,
  cross-attention over all 300 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ForwardShape:
    batch: int  # model batch, CFG included (2 x images with guidance)
    frames: int
    latent_h: int
    latent_w: int
    caption_tokens: int  # longest unpadded caption (this engine)
    padded_caption_tokens: int = 300  # what the reference attends over


def _sizes(cfg):
    d = cfg.hidden_size
    kv = cfg.kv_heads * cfg.head_dim
    return d, kv, cfg.cond_width, cfg.ffn_hidden_size, cfg.caption_channels


def tokens_per_item(cfg, shape: ForwardShape) -> int:
    pt, ph, pw = cfg.patch_size
    return (shape.frames // pt) * (shape.latent_h // ph) * (shape.latent_w // pw)


def _block_token_flops(cfg) -> int:
    """Linear-layer FLOPs per token of one block, modulation and caption K/V excluded."""
    d, kv, _, ffn, _ = _sizes(cfg)
    return 2 * (d * d + 2 * d * kv + d * d + 3 * d * ffn)


def unidiff_forward_flops(cfg, shape: ForwardShape) -> dict:
    d, kv, dc, ffn, cap = _sizes(cfg)
    n = tokens_per_item(cfg, shape)
    b = shape.batch
    groups = b * (shape.frames // cfg.patch_size[0])  # one conditioning vector per frame
    tokens = b * n
    linear = tokens * cfg.depth * _block_token_flops(cfg)
    modulation = groups * cfg.depth * 2 * dc * 4 * d + groups * 2 * dc * d
    embed = tokens * 2 * cfg.patch_features_in * d + groups * 2 * (256 * dc + dc * dc)
    final = tokens * 2 * d * cfg.patch_features_out
    self_attn = b * cfg.depth * 4 * n * n * d
    cross_attn = b * cfg.depth * 4 * n * shape.caption_tokens * d
    parts = dict(linear=linear, modulation=modulation, embed=embed + final, self_attention=self_attn,
                 cross_attention=cross_attn)
    parts["total"] = sum(parts.values())
    return parts


def reference_forward_flops(cfg, shape: ForwardShape) -> dict:
    d, kv, dc, ffn, cap = _sizes(cfg)
    n = tokens_per_item(cfg, shape)
    b = shape.batch
    tokens = b * n
    length = shape.padded_caption_tokens
    linear = tokens * cfg.depth * _block_token_flops(cfg)
    modulation = tokens * cfg.depth * 2 * dc * 4 * d + tokens * 2 * dc * d
    embed = tokens * 2 * cfg.patch_features_in * d + tokens * 2 * (256 * dc + dc * dc) + b * 2 * cap * dc
    final = tokens * 2 * d * cfg.patch_features_out
    caption_kv = b * length * cfg.depth * 2 * 2 * cap * kv
    self_attn = b * cfg.depth * 4 * n * n * d
    cross_attn = b * cfg.depth * 4 * n * length * d
    parts = dict(linear=linear, modulation=modulation, embed=embed + final, caption_kv=caption_kv,
                 self_attention=self_attn, cross_attention=cross_attn)
    parts["total"] = sum(parts.values())
    return parts


def parameter_count(cfg) -> dict:
    """Parameters of a NextDiT config, split into the block Linear weights (fp8-able) and the rest."""
    d, kv, dc, ffn, cap = _sizes(cfg)
    qk = (d * 2 + kv * 2 + kv * 2) if cfg.qk_norm else 0
    block_linear = d * d * 2 + d * kv * 2 + cap * kv * 2 + 3 * d * ffn + dc * 4 * d
    block_other = cfg.num_heads + qk + 4 * d + cap + 4 * d  # gate, qk norms, 4 RMSNorms, y-norm, adaLN bias
    pin, pout = cfg.patch_features_in, cfg.patch_features_out
    other = (pin * d + d) + (256 * dc + dc + dc * dc + dc) + (2 * cap + cap * dc + dc) + (d * pout + pout) + (dc * d + d)
    return {"block_linear": cfg.depth * block_linear, "other": cfg.depth * block_other + other,
            "total": cfg.depth * (block_linear + block_other) + other}
