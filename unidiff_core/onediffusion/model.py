"""NextDiT: the multi-frame denoiser of OneDiffusion, loadable from the released checkpoint.

The module and parameter names follow the released state dict exactly (see `config.py` for the
config). Numerics follow the reference implementation, including its quirks:

* scale-only adaLN with tanh gates and "sandwich" RMSNorms around attention and FFN;
* grouped-query attention maps KV heads differently in self-attention (query head h uses KV head
  h // r) and in cross-attention (query head h uses KV head h % kv);
* in fp16/bf16 the self-attention logits are soft-capped at 30 (the reference runs flash-attn with
  softcap=30 there); in fp32 they are not;
* 3-axis RoPE over (frame, row, column), computed for the positions a call needs (the reference
  keeps a 1 GB table and is limited to 128 positions per axis; inside that range we are identical).

Host layers: the model builds its Linear, LayerNorm and RMSNorm layers from an `operations` namespace
(default `OPERATIONS`: torch.nn's layers and this module's RMSNorm) and calls plain attention through an
`attention` function (default SDPA), so a host can hand in layer classes that stream weights from another
device and its own attention kernels without this module importing the host (ComfyUI's `comfy.ops`
layers follow the same constructor signatures). `compute_dtype` / `compute_device`, when set, say where
and in what precision the model computes while its weights are stored elsewhere or in another dtype.

Speed-ups that do not change results: timestep embedding and adaLN modulation are computed once per
frame when every token of a frame shares its timestep (always the case in the sampler), caption
keys/values are computed once per prompt (`prepare_context`) and trimmed to the longest unpadded
caption, RoPE angles are cached per grid size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import NextDiTConfig

SOFTCAP = 30.0


class RMSNorm(nn.Module):
    """The reference's RMSNorm (torch.nn.RMSNorm rounds differently in bf16). `forward_with` takes the
    weight as an argument so that a host's subclass can pass a weight it fetched for this call."""

    def __init__(self, dim: int, eps: float, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x):
        return self.forward_with(x, self.weight)

    def forward_with(self, x, weight):
        # Statistics in float32 whatever the activation dtype, as the reference does.
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * weight


class OPERATIONS:
    """The default layer classes. A host's namespace has the same names and constructor signatures."""

    Linear = nn.Linear
    LayerNorm = nn.LayerNorm
    RMSNorm = RMSNorm


def sdpa(q, k, v, mask=None):
    """Plain attention on (B, heads, N, hd) tensors; mask: bool, True = attend, broadcast to the logits."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int, frequency_size: int = 256, operations=OPERATIONS):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(operations.Linear(frequency_size, width), nn.SiLU(), operations.Linear(width, width))

    def forward(self, t, dtype=None):
        half = self.frequency_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=t.dtype, device=t.device) / half)
        args = t[..., None] * freqs
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(embedding.to(dtype or self.mlp[0].weight.dtype))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int, operations=OPERATIONS):
        super().__init__()
        self.w1 = operations.Linear(dim, hidden, bias=False)
        self.w2 = operations.Linear(hidden, dim, bias=False)
        self.w3 = operations.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def apply_rope(x, cos, sin):
    """Rotate interleaved pairs (x[2i], x[2i+1]) of x (B, heads, N, hd) by angles (N, hd/2), in float32."""
    xf = x.float().unflatten(-1, (-1, 2))
    real, imag = xf[..., 0], xf[..., 1]
    rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return rotated.flatten(-2).type_as(x)


def softcapped_attention(q, k, v, cap: float = SOFTCAP, chunk: int = 1024, max_logits: int = 2 ** 28):
    """softmax(cap * tanh(q k^T / sqrt(d) / cap)) v, chunked over queries to bound memory.

    SDPA has no soft-cap, so the fp16/bf16 path of the reference (flash-attn, softcap=30) is computed
    explicitly. Like flash-attn, logits and softmax are float32 and the probabilities meet V in the
    input dtype. The query chunk is shrunk so that one chunk's float32 logits hold at most
    `max_logits` elements (1 GiB), and the soft-cap runs in place: peak extra memory is about two
    logit buffers (same arithmetic, same results). Under autograd (bf16 training) it runs out of
    place, with the same values.
    """
    scale = q.shape[-1] ** -0.5
    out = torch.empty_like(q)
    rows_per_query = max(1, k.shape[-2] * q[..., 0, 0].numel())
    chunk = max(1, min(chunk, max_logits // rows_per_query))
    kt = k.float().transpose(-1, -2)
    for start in range(0, q.shape[-2], chunk):
        qs = q[..., start:start + chunk, :]
        logits = torch.matmul(qs.float(), kt).mul_(scale)
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
            logits = torch.tanh(logits / cap) * cap  # training: autograd needs the tanh output intact
        else:
            logits.div_(cap).tanh_().mul_(cap)
        probs = torch.softmax(logits, dim=-1)
        del logits
        out[..., start:start + chunk, :] = torch.matmul(probs.to(v.dtype), v)
        del probs
    return out


@dataclass
class CaptionContext:
    """Everything of a forward pass that depends only on the prompt, reusable across steps."""

    pooled: torch.Tensor  # (B, D_c) caption embedding added to every token's conditioning
    keys: list  # per layer (B, heads, L, hd), already tiled to the query heads
    values: list
    mask: torch.Tensor  # (B, 1, 1, L) bool


class Attention(nn.Module):
    def __init__(self, cfg: NextDiTConfig, operations=OPERATIONS, attention=sdpa):
        super().__init__()
        d, self.heads, self.kv_heads = cfg.hidden_size, cfg.num_heads, cfg.kv_heads
        self.head_dim = cfg.head_dim
        self.attend = attention  # fp32 self-attention and the caption cross-attention (the soft-cap is ours)
        kv_width = self.kv_heads * self.head_dim
        ops = operations
        self.wq = ops.Linear(d, self.heads * self.head_dim, bias=False)
        self.wk = ops.Linear(d, kv_width, bias=False)
        self.wv = ops.Linear(d, kv_width, bias=False)
        self.wk_y = ops.Linear(cfg.caption_channels, kv_width, bias=False)
        self.wv_y = ops.Linear(cfg.caption_channels, kv_width, bias=False)
        self.gate = nn.Parameter(torch.zeros(self.heads))
        self.wo = ops.Linear(self.heads * self.head_dim, d, bias=False)
        if cfg.qk_norm:
            self.q_norm = ops.LayerNorm(self.heads * self.head_dim)
            self.k_norm = ops.LayerNorm(kv_width)
            self.ky_norm = ops.LayerNorm(kv_width, eps=1e-6)
        else:
            self.q_norm = self.k_norm = self.ky_norm = nn.Identity()

    def caption_kv(self, y):
        """Caption keys/values (B, heads, L, hd); KV heads tiled (query head h uses KV head h % kv)."""
        b, length, _ = y.shape
        k = self.ky_norm(self.wk_y(y)).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv_y(y).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
        repeat = self.heads // self.kv_heads
        return k.repeat(1, repeat, 1, 1), v.repeat(1, repeat, 1, 1)

    def forward(self, x, rope, caption_k, caption_v, caption_mask):
        b, n, _ = x.shape
        q = self.q_norm(self.wq(x)).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_norm(self.wk(x)).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.kv_heads != self.heads:  # self-attention: repeat-interleave mapping
            repeat = self.heads // self.kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        if q.dtype in (torch.float16, torch.bfloat16):
            out = softcapped_attention(q, k, v)
        else:
            out = self.attend(q, k, v)
        # Cross-attention to the caption uses the rotated queries, like the reference.
        out_y = self.attend(q, caption_k.to(q.dtype), caption_v.to(q.dtype), caption_mask)
        # The gate is not a layer of its own: a host that streams layers leaves it on the offload device.
        gate = torch.tanh(self.gate.to(out_y.device)).view(1, -1, 1, 1).to(out_y.dtype)
        out = out + out_y * gate
        return self.wo(out.transpose(1, 2).reshape(b, n, -1)).to(x.dtype)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: NextDiTConfig, operations=OPERATIONS, attention=sdpa):
        super().__init__()
        d, eps, ops = cfg.hidden_size, cfg.norm_eps, operations
        self.attention = Attention(cfg, ops, attention)
        self.feed_forward = FeedForward(d, cfg.ffn_hidden_size, ops)
        self.attention_norm1 = ops.RMSNorm(d, eps)
        self.attention_norm2 = ops.RMSNorm(d, eps)
        self.ffn_norm1 = ops.RMSNorm(d, eps)
        self.ffn_norm2 = ops.RMSNorm(d, eps)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), ops.Linear(cfg.cond_width, 4 * d))
        self.attention_y_norm = ops.RMSNorm(cfg.caption_channels, eps)

    def forward(self, x, c, rope, caption_k, caption_v, caption_mask):
        """x (B, G, T, D): tokens in G groups of T tokens that share the conditioning c (B, G, D_c)."""
        b, g, t, d = x.shape
        scale_msa, gate_msa, scale_mlp, gate_mlp = self.adaLN_modulation(c).unsqueeze(2).chunk(4, dim=-1)
        h = (self.attention_norm1(x) * (1 + scale_msa)).view(b, g * t, d)
        h = self.attention(h, rope, caption_k, caption_v, caption_mask).view(b, g, t, d)
        x = x + torch.tanh(gate_msa) * self.attention_norm2(h)
        h = self.feed_forward(self.ffn_norm1(x) * (1 + scale_mlp))
        return x + torch.tanh(gate_mlp) * self.ffn_norm2(h)


class FinalLayer(nn.Module):
    def __init__(self, cfg: NextDiTConfig, operations=OPERATIONS):
        super().__init__()
        d = cfg.hidden_size
        self.linear = operations.Linear(d, cfg.patch_features_out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), operations.Linear(cfg.cond_width, d))

    def forward(self, x, c):
        scale = self.adaLN_modulation(c).unsqueeze(2)
        x = F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + scale)
        return self.linear(x)


class NextDiT(nn.Module):
    blocks_hook = None  # optional model-side hook that runs the transformer blocks (see forward)

    def __init__(self, cfg: NextDiTConfig, operations=None, attention=None):
        """operations: layer classes (default OPERATIONS); attention: fn(q, k, v, mask=None) (default SDPA)."""
        super().__init__()
        ops, attention = operations or OPERATIONS, attention or sdpa
        self.config = cfg
        self.x_embedder = ops.Linear(cfg.patch_features_in, cfg.hidden_size)
        self.t_embedder = TimestepEmbedder(cfg.cond_width, operations=ops)
        self.y_embedder = nn.Sequential(
            ops.LayerNorm(cfg.caption_channels, eps=1e-6), ops.Linear(cfg.caption_channels, cfg.cond_width)
        )
        self.layers = nn.ModuleList(TransformerBlock(cfg, ops, attention) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(cfg, ops)
        self._rope_cache = {}
        # None: compute where and in the dtype the weights are. A host that keeps weights on an offload
        # device or in a storage dtype (its layers cast them per call) sets these.
        self.compute_dtype: torch.dtype | None = None
        self.compute_device: torch.device | None = None

    @property
    def dtype(self):
        return self.x_embedder.weight.dtype if self.compute_dtype is None else self.compute_dtype

    @property
    def device(self):
        return self.x_embedder.weight.device if self.compute_device is None else self.compute_device

    # ----------------------------------------------------------------- positions
    def rope_angles(self, frames: int, rows: int, cols: int, device, scale_factor=1.0, scale_watershed=1.0,
                    max_timestep=0.0):
        """cos/sin of the rotary angles for a (frames, rows, cols) token grid, (N, hd/2) each, float32.

        First third of the pairs rotates with the frame index, then row, then column. With
        scale_factor != 1 the reference interpolates positions (max timestep < watershed) or
        scales theta (NTK) otherwise.
        """
        linear, ntk = 1.0, 1.0
        if scale_factor != 1 or scale_watershed != 1:
            if max_timestep < scale_watershed:
                linear = scale_factor
            else:
                ntk = scale_factor
        key = (frames, rows, cols, str(device), linear, ntk)
        cached = self._rope_cache.get(key)
        if cached is not None:
            return cached
        hd = self.config.head_dim
        theta = 10000.0 * ntk
        freqs = 1.0 / (theta ** (torch.arange(0, hd, 6)[: hd // 6] / hd)) / linear

        def axis(length):
            return torch.outer(torch.arange(length, dtype=torch.float32), freqs)

        f, r, c = axis(frames), axis(rows), axis(cols)
        k = freqs.numel()
        angles = torch.cat([
            f[:, None, None, :].expand(frames, rows, cols, k),
            r[None, :, None, :].expand(frames, rows, cols, k),
            c[None, None, :, :].expand(frames, rows, cols, k),
        ], dim=-1).reshape(frames * rows * cols, 3 * k)
        # exp(i*angle) rather than cos/sin: it rounds exactly like the reference's complex table.
        unit = torch.exp(1j * angles)
        rope = (unit.real.contiguous().to(device), unit.imag.contiguous().to(device))
        if len(self._rope_cache) > 16:
            self._rope_cache.clear()
        self._rope_cache[key] = rope
        return rope

    # ------------------------------------------------------------------ patches
    def patchify(self, x):
        b, t, c, h, w = x.shape
        pt, ph, pw = self.config.patch_size
        x = x.view(b, t // pt, pt, c, h // ph, ph, w // pw, pw).permute(0, 1, 4, 6, 2, 5, 7, 3)
        return x.reshape(b, t // pt, (h // ph) * (w // pw), pt * ph * pw * c)

    def unpatchify(self, x, t, h, w):
        b = x.shape[0]
        pt, ph, pw = self.config.patch_size
        c = self.config.out_channels
        x = x.view(b, t, h, w, pt, ph, pw, c).permute(0, 1, 4, 7, 2, 5, 3, 6)
        return x.reshape(b, t * pt, c, h * ph, w * pw)

    # ------------------------------------------------------------------ caption
    def prepare_context(self, encoder_hidden_states, encoder_attention_mask) -> CaptionContext:
        """Pooled caption embedding and per-layer caption K/V (depend only on the prompt)."""
        states = encoder_hidden_states
        mask = encoder_attention_mask
        maskf = mask[..., None].float()
        pooled = (states * maskf).sum(dim=1) / (maskf.sum(dim=1) + 1e-8)
        pooled = self.y_embedder(pooled.to(self.dtype))
        # Padded caption tokens are masked out of cross-attention; dropping the all-padding tail
        # leaves the result unchanged and saves most of the 300-token attention.
        valid = mask.bool().any(dim=0).nonzero()
        length = int(valid.max()) + 1 if valid.numel() else 1
        states, mask = states[:, :length].to(self.dtype), mask[:, :length].bool()
        keys, values = [], []
        for block in self.layers:
            k, v = block.attention.caption_kv(block.attention_y_norm(states))
            keys.append(k)
            values.append(v)
        return CaptionContext(pooled=pooled, keys=keys, values=values, mask=mask[:, None, None, :])

    # ------------------------------------------------------------------ forward
    def forward(self, samples, timesteps, encoder_hidden_states=None, encoder_attention_mask=None,
                scale_factor: float = 1.0, scale_watershed: float = 1.0, context: CaptionContext | None = None):
        """Predict the flow velocity for every frame.

        samples: (B, F, C, H, W) or (B, C, H, W). timesteps on the 0..1000 scale: (B,) one per
        sample (the reference's text-to-image call), (B, F) one per frame (its multi-frame call), or
        a tensor of the samples' shape. Returns (B, F, C_out, H, W), always 5-D.
        When `blocks_hook` is set (e.g. the step cache, `common.step_cache.FirstBlockCache.attached`), it runs
        the blocks instead: blocks_hook(x, run_block, depth) with run_block(i, x) -> x.
        """
        if samples.ndim == 4:
            samples = samples[:, None]
        b, f, _, h, w = samples.shape
        pt, ph, pw = self.config.patch_size
        if h % ph or w % pw or f % pt:
            raise ValueError(f"latent size {f}x{h}x{w} is not divisible by the patch size {pt}x{ph}x{pw}")
        tf, th, tw = f // pt, h // ph, w // pw
        if context is None:
            context = self.prepare_context(encoder_hidden_states, encoder_attention_mask)

        t_groups = self._token_timesteps(timesteps, samples)  # (B, G) with G = frames or tokens
        c = self.t_embedder(t_groups, self.dtype) + context.pooled[:, None, :]
        x = self.x_embedder(self.patchify(samples.to(self.dtype)))  # (B, frames, tokens/frame, D)
        groups = c.shape[1]
        x = x.reshape(b, groups, -1, x.shape[-1])

        max_t = float(timesteps.max()) if (scale_factor != 1 or scale_watershed != 1) else 0.0
        rope = self.rope_angles(tf, th, tw, x.device, scale_factor, scale_watershed, max_t)
        if self.blocks_hook is not None:
            x = self.blocks_hook(x, lambda i, h: self.layers[i](h, c, rope, context.keys[i], context.values[i],
                                                                context.mask), len(self.layers))
        else:
            for block, k, v in zip(self.layers, context.keys, context.values):
                x = block(x, c, rope, k, v, context.mask)
        x = self.final_layer(x, c).reshape(b, tf, th * tw, -1)
        return self.unpatchify(x.reshape(b, -1, x.shape[-1]), tf, th, tw)

    def _token_timesteps(self, timesteps, samples):
        """Timesteps per frame (B, F') when they are constant within frames, else per token (B, N).

        The reference averages each patch's C*pT*pH*pW copies of the timestep, which can move it by
        an ulp, and the result depends on the memory layout it averages over: a stride-0 broadcast
        for 1-D timesteps, a contiguous copy for per-element ones. Both are reproduced exactly.
        """
        b, f = samples.shape[:2]
        pt = self.config.patch_size[0]
        n_feat = self.config.patch_features_in
        timesteps = timesteps.to(samples.device).float()
        if timesteps.ndim == 1:
            return timesteps[:, None, None].expand(b, f // pt, n_feat).mean(-1)
        if timesteps.ndim == 2 and timesteps.shape == (b, f):
            per_frame = timesteps.view(b, f // pt, pt).mean(-1) if pt > 1 else timesteps
        elif timesteps.shape == samples.shape:
            flat = timesteps.flatten(2)
            if pt > 1 or not bool((flat == flat[..., :1]).all()):
                return self.patchify(timesteps).mean(-1).flatten(1)
            per_frame = flat[..., 0]
        else:
            raise ValueError(f"timesteps of shape {tuple(timesteps.shape)} do not fit samples {tuple(samples.shape)}")
        return per_frame[..., None].expand(*per_frame.shape, n_feat).contiguous().mean(-1)
