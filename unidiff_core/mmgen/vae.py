"""The SD VAE (`stabilityai/sd-vae-ft-mse`, diffusers AutoencoderKL) with MMGen's latent handling.

Every modality is an ordinary 3-channel image through the same VAE. MMGen scales by a hard-coded 0.18215
(not the VAE config), encodes to a posterior *sample* (mean + std * noise: the noise is a draw of the
run's generator), and converts decoded pixels to uint8 by truncation, not rounding.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..common.autoencoder import Autoencoder
from ..common.errors import CheckpointError

SCALE = 0.18215
LATENT_CHANNELS = 4


class MMGenVAE(Autoencoder):
    def __init__(self, autoencoder):
        super().__init__(autoencoder.eval())

    @classmethod
    def from_pretrained(cls, path, dtype=torch.float32, device="cpu") -> "MMGenVAE":
        """A diffusers AutoencoderKL folder (config.json + weights), read locally only."""
        from diffusers import AutoencoderKL

        path = Path(path)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"VAE folder {path}: no config.json; give the diffusers folder of "
                                  "sd-vae-ft-mse (config.json + diffusion_pytorch_model.safetensors)")
        weights = [p for p in path.iterdir() if p.suffix == ".safetensors"]
        if not weights:
            raise CheckpointError(f"VAE folder {path}: no .safetensors weights (pickled .bin files are refused); "
                                  "use diffusion_pytorch_model.safetensors")
        vae = AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True,
                                            use_safetensors=True, low_cpu_mem_usage=False)
        if vae.config.latent_channels != LATENT_CHANNELS:
            raise CheckpointError(f"VAE folder {path}: {vae.config.latent_channels} latent channels; MMGen needs "
                                  "the 4-channel SD VAE (sd-vae-ft-mse)")
        return cls(vae.to(device))

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, generator: torch.Generator | None = None, noise=None) -> torch.Tensor:
        """Scaled posterior sample (mean + std * eps) * 0.18215; eps is drawn from `generator` (or given)."""
        mean, std = (t.float() for t in self.posterior(pixels))
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        scale = torch.full((1, LATENT_CHANNELS, 1, 1), SCALE, dtype=mean.dtype)
        return (mean.cpu() + std.cpu() * noise) * scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents of one modality (N, 4, h, w) -> (N, H, W, 3) uint8 (truncated, as the reference)."""
        scale = torch.full((1, LATENT_CHANNELS, 1, 1), SCALE, dtype=torch.float32)
        z = latents.float().cpu() / scale  # a tensor division, as the reference (a scalar one rounds differently)
        pixels = self.model.decode(z.to(self.device, self.dtype)).sample.float().cpu()
        return pixels.add(1).div(2).mul(255).clamp(0, 255).permute(0, 2, 3, 1).to(torch.uint8)
