"""The fixed pixel-space codec: exact round trip of latents, loads through the pack's VAE loader, and the
pipeline's tiled decode gives the same pixels."""

import torch

from unidiff_core.onediffusion.loading import load_vae
from unidiff_core.onediffusion.pixel_codec import LinearPatchCodec


def _codec(seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(192, 192, generator=g, dtype=torch.float64))
    return LinearPatchCodec(q[:, :16].T.float(), 0.1 * torch.randn(192, generator=g), 8, scaling_factor=0.5)


def test_latents_round_trip_exactly():
    codec = _codec()
    z = torch.randn(2, 16, 4, 6, generator=torch.Generator().manual_seed(1))
    pixels = codec.decode_pixels(z)
    assert pixels.shape == (2, 3, 32, 48)
    assert torch.allclose(codec.encode(pixels), z, atol=1e-5)


def test_images_inside_the_basis_span_round_trip():
    codec = _codec()
    image = codec.decode_pixels(torch.randn(1, 16, 2, 2))
    mean, std = codec.posterior(image)
    assert torch.all(std == 0)
    decoded = codec.decode(mean * codec.scaling_factor)  # (N, H, W, 3) in 0..1
    assert torch.allclose(decoded, (image.permute(0, 2, 3, 1) / 2 + 0.5).clamp(0, 1), atol=1e-5)


def test_saved_codec_loads_through_the_vae_loader(tmp_path):
    codec = _codec()
    codec.save_pretrained(tmp_path / "vae")
    loaded = load_vae(tmp_path / "vae")
    assert isinstance(loaded, LinearPatchCodec)
    assert loaded.scaling_factor == 0.5 and torch.equal(loaded.basis, codec.basis)
    assert loaded.model is loaded  # the pipeline and the nodes reach the module as vae.model


def test_tiled_decode_equals_whole_decode(tmp_path):
    from unidiff_core.onediffusion.pipeline import UniDiffPipeline

    pipe = UniDiffPipeline(transformer=None, vae=_codec(), text_encoder=None)
    latents = torch.randn(1, 2, 16, 8, 8)
    whole = pipe.decode(latents)
    tiled = pipe.decode(latents, tile_size=32)
    assert all(torch.equal(a, b) for a, b in zip(whole, tiled))
