"""The fixed pixel-space codec: exact round trip of latents, loads through the pack's VAE loader, and the
pipeline's tiled decode gives the same pixels."""

from pathlib import Path

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


# ------------------------------------------------------------------------------ decoder refiner
def _refined(seed=0, width=8, layers=3):
    from unidiff_core.onediffusion.pixel_codec import DecoderRefiner

    codec = _codec(seed)
    codec.refiner = DecoderRefiner(16, 8, width, layers)
    return codec


def test_untrained_refiner_is_the_linear_decode_and_encoding_is_unchanged():
    codec = _refined()
    z = torch.randn(2, 16, 3, 4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(codec.decode_pixels(z), codec.decode_linear(z))  # zero last layer: the identity
    assert torch.allclose(codec.encode(codec.decode_linear(z)), z, atol=1e-5)


def test_refiner_saves_loads_and_decodes_alike(tmp_path):
    import json

    codec = _refined()
    with torch.no_grad():
        codec.refiner.out.weight.normal_(0, 0.1)  # a refiner that changes pixels
    z = torch.randn(1, 16, 2, 3, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(codec.decode_pixels(z), codec.decode_linear(z))
    codec.save_pretrained(tmp_path / "vae")
    assert json.loads((tmp_path / "vae" / "config.json").read_text())["refiner"] == {"width": 8, "layers": 3}
    loaded = load_vae(tmp_path / "vae")
    assert torch.equal(loaded.decode_pixels(z), codec.decode_pixels(z))
    assert torch.equal(loaded.decode(z), codec.decode(z))


def test_refiner_needs_two_layers():
    import pytest

    from unidiff_core.onediffusion.pixel_codec import DecoderRefiner

    with pytest.raises(ValueError, match="at least 2 layers"):
        DecoderRefiner(16, 8, 8, 1)


def test_trained_refiner_reconstructs_unseen_frames_better_than_the_linear_decode():
    from training.data.samples import as_tensor
    from training.parts import corpus, fit_codec, train_refiner

    tasks = ["text2image", "image2semanticmap", "image2pose"]
    codec = fit_codec(tasks, range(120), size=32, per_channel=False)
    train_refiner(codec, tasks, range(120), size=32, width=16, layers=4, steps=600, batch=8, seed=0)
    frames = torch.stack([as_tensor(v) for s in corpus(tasks, range(500, 530), 32)
                          for v in s.frame_values()]) * 2 - 1  # seeds neither fit saw
    z = codec.encode(frames)
    linear = torch.mean((codec.decode_linear(z) - frames) ** 2)
    refined = torch.mean((codec.decode_pixels(z) - frames) ** 2)
    # Measured 0.76 of the linear decode's error (2026-12-02); asked: clearly lower, at least 10 %.
    assert refined < 0.9 * linear, (float(refined), float(linear))


def test_refiner_command_adds_a_refiner_in_place_and_refuses_a_learned_vae(tmp_path, capsys):
    import json

    import pytest

    from training.refiner import main

    fitted = _codec()
    fitted.save_pretrained(tmp_path / "ckpt" / "vae")
    recipe = json.loads((Path(__file__).parent.parent / "training" / "recipes" / "tiny.json").read_text())
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(recipe))
    main(["--checkpoint", str(tmp_path / "ckpt"), "--recipe", str(recipe_file)])
    loaded = load_vae(tmp_path / "ckpt" / "vae")
    assert loaded.refiner is not None and loaded.refiner.width == recipe["refiner"]["width"]
    assert torch.equal(loaded.basis, fitted.basis)  # the encoder is untouched
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["vae"]  # no half-written folder left

    (tmp_path / "learned" / "vae").mkdir(parents=True)
    (tmp_path / "learned" / "vae" / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "learned")])
    assert "not a pixel-codec folder" in capsys.readouterr().err
