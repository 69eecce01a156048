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


def test_per_channel_scale_round_trips_and_gives_unit_channels():
    from training.data.samples import as_tensor
    from training.parts import corpus, fit_codec

    codec = fit_codec(["text2image", "image2depth"], range(40), size=32, per_channel=True)
    z = torch.randn(2, 16, 3, 3)
    assert torch.allclose(codec.encode(codec.decode_pixels(z)), z, atol=1e-4)
    assert float(codec.channel_std.max() / codec.channel_std.min()) > 5  # the components really differ in scale
    frames = torch.stack([as_tensor(v) for s in corpus(["text2image", "image2depth"], range(40), 32)
                          for v in s.frame_values()])  # the frames it was fitted on
    per_channel = codec.encode(frames * 2 - 1).transpose(0, 1).reshape(16, -1).std(1)
    assert torch.allclose(per_channel, torch.ones(16), atol=1e-3)


def test_codec_without_channel_std_loads_as_before(tmp_path):
    from safetensors.torch import save_file

    from unidiff_core.onediffusion.pixel_codec import load_codec

    codec = _codec()
    codec.save_pretrained(tmp_path / "vae")
    save_file({"basis": codec.basis, "mean": codec.mean}, str(tmp_path / "vae" / "diffusion_pytorch_model.safetensors"))
    loaded = load_codec(tmp_path / "vae")
    assert torch.equal(loaded.channel_std, torch.ones(16))
    z = torch.randn(1, 16, 2, 2)
    assert torch.allclose(loaded.decode_pixels(z), codec.decode_pixels(z))
