"""The SD3 VAE (diffusers AutoencoderKL) with OneDiffusion's latent scaling: x1.5305, no shift."""

from __future__ import annotations

import logging

import torch

from ..common.autoencoder import Autoencoder

LATENT_CHANNELS = 16
DOWNSCALE = 8


class VAE(Autoencoder):
    def __init__(self, autoencoder):
        super().__init__(autoencoder)
        # OneDiffusion scales by scaling_factor and ignores the SD3 shift_factor.
        self.scaling_factor = float(autoencoder.config.scaling_factor)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (N, 16, h, w) -> images (N, H, W, 3) float32 in 0..1 on the CPU.

        Falls back to tiled decoding when the whole decode runs out of memory.
        """
        z = latents.to(self.device, self.dtype) / self.scaling_factor
        try:
            images = self.model.decode(z).sample
        except torch.OutOfMemoryError:
            images = None  # leave the except block first: its traceback holds the failed decode's tensors
        if images is None:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            logging.getLogger("UniDiff").warning("UniDiff: out of memory decoding %s latents; retrying in tiles",
                                                 tuple(z.shape))
            tiling = self.model.use_tiling
            self.model.enable_tiling()
            try:
                images = self.model.decode(z).sample
            finally:
                self.model.use_tiling = tiling  # as it was (a tiled decode asked for by the caller stays tiled)
        return (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()
