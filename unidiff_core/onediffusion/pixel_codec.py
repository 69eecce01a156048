"""A fixed linear "pixel-space" codec in place of the learned VAE (used by small checkpoints such as Mini).

Each 8x8 RGB patch (192 values, in -1..1) is projected onto 16 fixed orthonormal basis vectors: an
8x space-to-depth map followed by a fixed 192 -> 16 projection. Decoding is the transpose, so
encode(decode(z)) == z exactly, and nothing is learned at sampling time. The basis (for instance the
principal components of a dataset's patches) and the mean patch are stored in the checkpoint's
`vae/` folder, declared by `"_class_name": "LinearPatchCodec"` in its config.json; the loader picks
this class from that name. The interface is the one the pipeline uses of `vae.VAE`.

An optional `channel_std` (C,) divides each latent channel after the projection, so every channel has
unit variance: principal components differ in variance by orders of magnitude, and with one global
scale the small (colour, detail) channels would sit far below the sampling noise until its last steps.
Checkpoints without it keep the plain projection (all ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

CLASS_NAME = "LinearPatchCodec"
WEIGHTS = "diffusion_pytorch_model.safetensors"


class LinearPatchCodec(torch.nn.Module):
    def __init__(self, basis: torch.Tensor, mean: torch.Tensor, patch_size: int = 8, scaling_factor: float = 1.0,
                 channel_std: torch.Tensor | None = None):
        super().__init__()
        channels, features = basis.shape
        if features != 3 * patch_size * patch_size or mean.shape != (features,):
            raise ValueError(f"basis {tuple(basis.shape)} / mean {tuple(mean.shape)} do not fit {patch_size}x"
                             f"{patch_size} RGB patches ({3 * patch_size * patch_size} values)")
        channel_std = torch.ones(channels) if channel_std is None else channel_std
        if channel_std.shape != (channels,) or not bool((channel_std > 0).all()):
            raise ValueError(f"channel_std {tuple(channel_std.shape)} must hold {channels} positive values")
        self.register_buffer("basis", basis.float().contiguous())  # (C, 3*p*p), rows orthonormal
        self.register_buffer("mean", mean.float().contiguous())  # (3*p*p,) in -1..1 pixel units
        self.register_buffer("channel_std", channel_std.float().contiguous())  # (C,)
        self.patch_size = int(patch_size)
        self.scaling_factor = float(scaling_factor)
        self.latent_channels = int(channels)
        # The pipeline's tiled decode toggles these; a per-patch codec decodes every tile exactly alike.
        self.use_tiling, self.tile_sample_min_size, self.tile_latent_min_size = False, 512, 64

    # --------------------------------------------------------------- the VAE interface of the pipeline
    @property
    def model(self):
        return self

    @property
    def device(self):
        return self.basis.device

    @property
    def dtype(self):
        return self.basis.dtype

    def enable_tiling(self):
        self.use_tiling = True

    @torch.no_grad()
    def posterior(self, pixels: torch.Tensor):
        """pixels (N, 3, H, W) in -1..1 -> unscaled latents (N, C, H/p, W/p) and a zero std (deterministic)."""
        z = self.encode(pixels)
        return z, torch.zeros_like(z)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Differentiable; (N, 3, H, W) in -1..1 -> (N, C, H/p, W/p), not scaled."""
        p = self.patch_size
        n, _, h, w = pixels.shape
        patches = F.pixel_unshuffle(pixels.to(self.device, self.dtype), p)  # (N, 3*p*p, h, w), channel-major
        centred = patches - self.mean.view(1, -1, 1, 1)
        return torch.einsum("cf,nfhw->nchw", self.basis, centred) / self.channel_std.view(1, -1, 1, 1)

    def decode_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable; unscaled latents -> (N, 3, H, W) in -1..1 (not clamped)."""
        z = z.to(self.device, self.dtype) * self.channel_std.view(1, -1, 1, 1)
        patches = torch.einsum("cf,nchw->nfhw", self.basis, z) + self.mean.view(1, -1, 1, 1)
        return F.pixel_shuffle(patches, self.patch_size)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (N, C, h, w) -> images (N, H, W, 3) float32 in 0..1 on the CPU."""
        images = self.decode_pixels(latents / self.scaling_factor)
        return (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()

    # --------------------------------------------------------------- files
    def config(self) -> dict:
        return {"_class_name": CLASS_NAME, "patch_size": self.patch_size, "latent_channels": self.latent_channels,
                "scaling_factor": self.scaling_factor}

    def save_pretrained(self, folder) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        save_file({"basis": self.basis.cpu().contiguous(), "mean": self.mean.cpu().contiguous(),
                   "channel_std": self.channel_std.cpu().contiguous()}, str(folder / WEIGHTS))


def is_codec_folder(folder) -> bool:
    """True when a vae/ folder declares this codec (read from its config.json only)."""
    config = Path(folder) / "config.json"
    try:
        return json.loads(config.read_text()).get("_class_name") == CLASS_NAME
    except (OSError, ValueError, AttributeError):
        return False


def load_codec(folder, dtype=torch.float32, device="cpu") -> LinearPatchCodec:
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    weights = load_file(str(folder / WEIGHTS))
    codec = LinearPatchCodec(weights["basis"], weights["mean"], int(config["patch_size"]),
                             float(config["scaling_factor"]), weights.get("channel_std"))
    return codec.to(device=device, dtype=dtype).eval().requires_grad_(False)
