"""A fixed linear "pixel-space" codec in place of the learned VAE (used by small checkpoints such as Mini).

Each 8x8 RGB patch (192 values, in -1..1) is projected onto 16 fixed orthonormal basis vectors: an
8x space-to-depth map followed by a fixed 192 -> 16 projection. Decoding is the transpose, so
encode(decode(z)) == z exactly (optionally followed by a learned refiner, below). The basis (for instance the
principal components of a dataset's patches) and the mean patch are stored in the checkpoint's
`vae/` folder, declared by `"_class_name": "LinearPatchCodec"` in its config.json; the loader picks
this class from that name. The interface is the one the pipeline uses of `vae.VAE`.

An optional `channel_std` (C,) divides each latent channel after the projection, so every channel has
unit variance: principal components differ in variance by orders of magnitude, and with one global
scale the small (colour, detail) channels would sit far below the sampling noise until its last steps.
Checkpoints without it keep the plain projection (all ones).

An optional decoder refiner (`"refiner": {"width", "layers"}` in config.json, weights under `refiner.`) is a
small residual convolution net over the linear decode. Sixteen numbers per 8x8 patch cannot hold a sharp
edge, so the transpose alone blurs shape outlines, label maps and stick figures by about two pixels; the
refiner, learned from generated frames (`training.parts.train_refiner`), puts them back. Encoding stays the
fixed projection, so a transformer trained on a codec's latents keeps working when a refiner is added, and
`encode(decode_linear(z)) == z` still holds.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F

CLASS_NAME = "LinearPatchCodec"
WEIGHTS = "diffusion_pytorch_model.safetensors"


class DecoderRefiner(torch.nn.Module):
    """Residual conv net: (linear decode, latents, position inside the patch) -> sharper pixels.

    The latents are nearest-upsampled to pixels and two channels give each pixel's place inside its patch,
    so the net sees what the patch holds and where in it the pixel sits. The last layer starts at zero:
    an untrained refiner is the identity on the linear decode."""

    def __init__(self, latent_channels: int, patch_size: int, width: int = 32, layers: int = 4):
        super().__init__()
        if layers < 2 or width < 1:
            raise ValueError(f"a decoder refiner needs at least 2 layers and width 1, got {layers} layers, width {width}")
        self.patch_size, self.width, self.layers = int(patch_size), int(width), int(layers)
        conv = functools.partial(torch.nn.Conv2d, kernel_size=3, padding=1)
        self.inp = conv(3 + latent_channels + 2, width)
        self.body = torch.nn.ModuleList(conv(width, width) for _ in range(layers - 2))
        self.out = conv(width, 3)
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    def forward(self, pixels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """pixels (N, 3, H, W) the linear decode in -1..1; z (N, C, H/p, W/p) unit-scale latents."""
        n, _, height, width = pixels.shape
        p = self.patch_size
        place = (torch.arange(p, device=pixels.device, dtype=pixels.dtype) + 0.5) / p * 2 - 1
        rows = place.repeat(height // p).view(1, 1, height, 1).expand(n, 1, height, width)
        cols = place.repeat(width // p).view(1, 1, 1, width).expand(n, 1, height, width)
        h = torch.cat([pixels, F.interpolate(z, scale_factor=p, mode="nearest"), rows, cols], dim=1)
        h = F.silu(self.inp(h))
        for layer in self.body:
            h = F.silu(layer(h))
        return pixels + self.out(h)


class LinearPatchCodec(torch.nn.Module):
    def __init__(self, basis: torch.Tensor, mean: torch.Tensor, patch_size: int = 8, scaling_factor: float = 1.0,
                 channel_std: torch.Tensor | None = None, refiner: DecoderRefiner | None = None):
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
        self.refiner = refiner
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

    def decode_linear(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable; unscaled latents -> (N, 3, H, W) in -1..1 (not clamped): the transpose of encode."""
        z = z.to(self.device, self.dtype) * self.channel_std.view(1, -1, 1, 1)
        patches = torch.einsum("cf,nchw->nfhw", self.basis, z) + self.mean.view(1, -1, 1, 1)
        return F.pixel_shuffle(patches, self.patch_size)

    def decode_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable; unscaled latents -> (N, 3, H, W) in -1..1 (not clamped), refined when a refiner is set."""
        pixels = self.decode_linear(z)
        if self.refiner is None:
            return pixels
        return self.refiner(pixels, z.to(self.device, self.dtype) * self.scaling_factor)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (N, C, h, w) -> images (N, H, W, 3) float32 in 0..1 on the CPU."""
        images = self.decode_pixels(latents / self.scaling_factor)
        return (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()

    # --------------------------------------------------------------- files
    def config(self) -> dict:
        config = {"_class_name": CLASS_NAME, "patch_size": self.patch_size, "latent_channels": self.latent_channels,
                  "scaling_factor": self.scaling_factor}
        if self.refiner is not None:
            config["refiner"] = {"width": self.refiner.width, "layers": self.refiner.layers}
        return config

    def save_pretrained(self, folder) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        weights = {"basis": self.basis, "mean": self.mean, "channel_std": self.channel_std}
        if self.refiner is not None:
            weights.update({f"refiner.{k}": v for k, v in self.refiner.state_dict().items()})
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(folder / WEIGHTS))


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
    refiner = None
    if config.get("refiner"):
        refiner = DecoderRefiner(weights["basis"].shape[0], int(config["patch_size"]), **config["refiner"])
        refiner.load_state_dict({k[len("refiner."):]: v for k, v in weights.items() if k.startswith("refiner.")})
    codec = LinearPatchCodec(weights["basis"], weights["mean"], int(config["patch_size"]),
                             float(config["scaling_factor"]), weights.get("channel_std"), refiner)
    return codec.to(device=device, dtype=dtype).eval().requires_grad_(False)
