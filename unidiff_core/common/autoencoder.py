"""A diffusers autoencoder (AutoencoderKL) behind the few methods every family's pipeline uses."""

from __future__ import annotations

import torch


class Autoencoder:
    def __init__(self, autoencoder):
        self.model = autoencoder

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def posterior(self, pixels: torch.Tensor):
        """pixels (N, 3, H, W) in -1..1 -> posterior mean and std, each (N, latent channels, H/8, W/8)."""
        dist = self.model.encode(pixels.to(self.device, self.dtype)).latent_dist
        return dist.mean, dist.std

    def to(self, device):
        self.model.to(device)
        return self
