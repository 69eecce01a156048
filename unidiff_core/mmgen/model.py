"""MMGen's SiT denoiser (single file, diffusers style): one DiT-style adaLN-Zero transformer over the four
SD-VAE latents of a sample stacked on channels (rgb, depth, normal, mask; 4 channels each).

Module and parameter names follow the released checkpoints, so their `ema` state dict loads as is.
Conditioning is one vector per sample: time embedding + class embedding + task embedding. The time input
has one value per latent channel (B, 16, 1, 1); channels of one modality are averaged after embedding and
the four modality embeddings are fused by a second MLP. Output: one velocity (noise - data) per channel.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import LATENT_CHANNELS, MMGenConfig

FREQ_DIM = 256  # sinusoid width of the time embedding


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sincos_pos_embed_2d(dim: int, grid: int) -> np.ndarray:
    """(grid², dim) float32 table; token n = row * grid + col. First half embeds the column, second the row,
    each as [sin | cos] of pos * 10000^(-k / (dim / 4)) (float64, as the released table)."""
    cols, rows = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

    def one_d(pos):
        out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one_d(cols), one_d(rows)], axis=1).astype(np.float32)


class TimestepEmbedder(nn.Module):
    """Per-channel times (B, C, 1, 1) in [0, 1] -> (B, D): embed each channel's time, average the channels of
    each modality, concatenate the modalities (rgb | depth | normal | mask) and fuse."""

    def __init__(self, hidden_size: int, num_tasks: int):
        super().__init__()
        self.num_tasks = num_tasks
        self.mlp = nn.Sequential(nn.Linear(FREQ_DIM, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size // 2))
        self.mlp_fused = nn.Sequential(nn.Linear(hidden_size // 2 * num_tasks, hidden_size), nn.SiLU(),
                                       nn.Linear(hidden_size, hidden_size))

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int = FREQ_DIM, max_period: float = 10000.0) -> torch.Tensor:
        """[cos | sin] of t * max_period^(-k / half); t unscaled (0..1), computed in float32."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[..., None].float() * freqs
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(t.dtype)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        b = t.shape[0]
        t = t.reshape(b, -1)  # (B, C): one time per latent channel
        if t.shape[1] != self.num_tasks * LATENT_CHANNELS:
            raise ValueError(f"t must have one time per latent channel, (B, {self.num_tasks * LATENT_CHANNELS}, 1, 1); "
                             f"got {tuple(t.shape)}")
        emb = self.mlp(self.timestep_embedding(t).to(self.mlp[0].weight.dtype))  # (B, C, D/2)
        emb = emb.reshape(b, self.num_tasks, LATENT_CHANNELS, -1).mean(2)  # mean of each modality's channels
        return self.mlp_fused(emb.reshape(b, -1))


class LabelEmbedder(nn.Module):
    """ImageNet class table; the extra last row is the null label (no class, used for guidance)."""

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, labels):
        return self.embedding_table(labels)


class TaskCondEmbedder(nn.Module):
    """Row 0 = joint generation; row m + 1 = modality m is the given (clean) condition."""

    def __init__(self, num_tasks: int, hidden_size: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_tasks + 1, hidden_size)

    def forward(self, task):
        return self.embedding_table(task)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, T, D), tokens row-major


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, fused: bool):
        super().__init__()
        self.num_heads, self.head_dim, self.fused = num_heads, dim // num_heads, fused
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:  # the explicit path (the reference's default when a checkpoint does not say)
            x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiTBlock(nn.Module):
    def __init__(self, config: MMGenConfig):
        super().__init__()
        d = config.hidden_size
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(d, config.num_heads, config.fused_attn)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(d, int(d * config.mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d, bias=True))

    def forward(self, x, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def build_projector(hidden_size: int, projector_dim: int, z_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden_size, projector_dim), nn.SiLU(), nn.Linear(projector_dim, projector_dim),
                         nn.SiLU(), nn.Linear(projector_dim, z_dim))


class MMGenSiT(nn.Module):
    """forward(x (B, 16, H, W), t (B, 16, 1, 1), y (B,) labels, task (B,) tokens or None) -> velocity (B, 16, H, W)."""

    def __init__(self, config: MMGenConfig, projectors: bool = True):
        super().__init__()
        self.config = config
        d, p = config.hidden_size, config.patch_size
        if config.input_size % p:
            raise ValueError(f"input_size {config.input_size} is not a multiple of patch_size {p}")
        self.grid = config.input_size // p
        self.x_embedder = PatchEmbed(p, config.in_channels, d)
        self.t_embedder = TimestepEmbedder(d, config.num_tasks)
        self.y_embedder = LabelEmbedder(config.num_classes, d)
        # A fixed table, stored in the checkpoints; a Parameter (not trained) so the released key set matches.
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_pos_embed_2d(d, self.grid))[None], requires_grad=False)
        self.blocks = nn.ModuleList(SiTBlock(config) for _ in range(config.depth))
        # REPA alignment heads: trained against DINOv2 features, unused for sampling. Kept only so a full
        # checkpoint loads strictly; conversion drops them.
        self.projectors = nn.ModuleList(build_projector(d, config.projector_dim, z) for z in config.z_dims) \
            if projectors else None
        self.taskcond_embedder = TaskCondEmbedder(config.num_tasks, d)
        self.lis_final_layer = nn.ModuleList(FinalLayer(d, p, LATENT_CHANNELS) for _ in range(config.num_tasks))

    @property
    def dtype(self):
        return self.x_embedder.proj.weight.dtype

    @property
    def device(self):
        return self.x_embedder.proj.weight.device

    def unpatchify(self, x):
        """(B, T, p*p*c) -> (B, c, H, W); features ordered (pi, pj, c), channel fastest."""
        b, p, g = x.shape[0], self.config.patch_size, self.grid
        x = x.reshape(b, g, g, p, p, LATENT_CHANNELS)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, LATENT_CHANNELS, g * p, g * p)

    def condition(self, t, y, task=None):
        """The per-sample conditioning vector c = t_emb + y_emb + task_emb, (B, D)."""
        if task is None:  # no token = joint generation (row 0)
            task = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
        return self.t_embedder(t) + self.y_embedder(y) + self.taskcond_embedder(task)

    def forward(self, x, t, y, task=None, return_zs: bool = False):
        expected = (self.config.in_channels, self.config.input_size, self.config.input_size)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must be (B, {expected[0]}, {expected[1]}, {expected[2]}); got {tuple(x.shape)}")
        h = self.x_embedder(x) + self.pos_embed
        c = self.condition(t, y, task)
        zs = []
        for i, block in enumerate(self.blocks):
            h = block(h, c)
            if return_zs and i + 1 == self.config.encoder_depth and self.projectors is not None:
                b, n, d = h.shape
                zs = [proj(h.reshape(-1, d)).reshape(b, n, -1) for proj in self.projectors]
        out = torch.cat([self.unpatchify(head(h, c)) for head in self.lis_final_layer], dim=1)
        return (out, zs) if return_zs else out
