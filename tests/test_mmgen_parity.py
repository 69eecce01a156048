"""MMGen against the reference's outputs on the tiny checkpoint (float32, CPU): every visible case's final
latents, every model call and noise draw of two cases, preprocessing, the VAE posterior and the decoded PNGs."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.mmgen_common import (CASES, EXTRA_CASES, FIXTURES, TOL, VAE, case, checkpoint_of, final_latents,
                                training_args, write_released_pt)
from unidiff_core.mmgen.pipeline import MMGenPipeline
from unidiff_core.mmgen.preprocess import center_crop, to_model_pixels


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    torch.set_num_threads(1)  # the goldens were made with one thread
    pt = write_released_pt(tmp_path_factory.mktemp("ckpt") / "0600000.pt")
    return MMGenPipeline.from_pretrained(pt, vae=VAE)


def run_case(pipe, name, **extra):
    c = case(name)
    image = Image.open(c.pop("image")) if c["image"] is not None else c.pop("image")
    return pipe.generate(c.pop("task"), image=image, t_blend=c.pop("t_blend"), **c, **extra)


@pytest.mark.parametrize("name", CASES)
def test_final_latents_match_the_reference(pipe, name):
    result = run_case(pipe, name)
    ref = final_latents(name)
    assert result.latents.shape == ref.shape and result.latents.dtype == torch.float32
    assert (result.latents - ref).abs().max() <= TOL


@pytest.mark.parametrize("name", ["rgb2x", "depth2x_cfg1.8"])
def test_every_model_call_and_noise_draw(pipe, name):
    ref = load_file(FIXTURES / name / "tensors.safetensors")
    calls = []
    result = run_case(pipe, name, on_model_call=lambda x, t, y, task, out: calls.append((x, t, y, task, out)))
    n = case(name)["steps"]
    assert len(calls) == n
    for i, (x, t, y, task, out) in enumerate(calls):
        assert (x - ref[f"step{i:02d}.x"]).abs().max() <= TOL, i
        assert torch.equal(t, ref[f"step{i:02d}.t"]), i  # per-channel times, condition slot at 0.005
        assert torch.equal(y, ref[f"step{i:02d}.y"]) and torch.equal(task, ref[f"step{i:02d}.task"]), i
        assert (out - ref[f"step{i:02d}.out"]).abs().max() <= TOL, i
    # the condition slot never moves: it is the blend of the initial noise and the posterior sample
    slot = slice(4, 8) if name.startswith("depth") else slice(0, 4)
    blended = ref["noise.initial"][:, slot] * 0.005 + ref["condition_latents"] * (1 - 0.005)
    assert (result.latents[:, slot] - blended).abs().max() <= TOL
    assert torch.equal(calls[0][0][:1, slot], calls[-1][0][:1, slot])


def test_random_draw_order_is_the_reference_one():
    """initial noise f32, posterior eps f32, then one f64 draw per step but the last: from one generator."""
    ref = load_file(FIXTURES / "rgb2x" / "tensors.safetensors")
    g = torch.Generator().manual_seed(0)
    assert torch.equal(torch.randn(1, 16, 32, 32, generator=g), ref["noise.initial"])
    assert torch.equal(torch.randn(1, 4, 32, 32, generator=g), ref["noise.posterior"])
    for i in range(2):
        assert torch.equal(torch.randn(1, 16, 32, 32, generator=g, dtype=torch.float64), ref[f"noise.step{i:02d}"])
    assert "noise.step02" not in ref  # the last step adds no noise


@pytest.mark.parametrize("name", ["rgb2x", "depth2x_cfg1.8"])
def test_preprocessing_and_posterior(pipe, name):
    ref = load_file(FIXTURES / name / "tensors.safetensors")
    crop = center_crop(Image.open(case(name)["image"]))
    assert np.array_equal(crop, ref["preprocess.cropped_uint8.0"].numpy())
    mean, std = pipe.vae.posterior(to_model_pixels([crop]))
    assert (mean - ref["vae_encode0.mean"]).abs().max() <= TOL and (std - ref["vae_encode0.std"]).abs().max() <= TOL


def test_decoded_modalities_match_the_reference_pngs(pipe):
    decoded = pipe.decode(final_latents("rgb2x"))
    for m, modality in enumerate(["rgb", "depth", "normal", "mask"]):
        ref = np.asarray(Image.open(FIXTURES / "rgb2x" / "png" / f"task_{m}.png"))
        ours = decoded[modality][0].numpy()
        diff = np.abs(ours.astype(int) - ref.astype(int))
        # truncation to uint8 flips a value by one where float noise crosses an integer
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, modality


def test_guidance_with_the_null_label_changes_nothing(pipe):
    """rgb2x uses label 1000: both guidance halves are the same model call."""
    a = run_case(pipe, "rgb2x")
    c = case("rgb2x")
    b = pipe.generate("rgb2x", image=Image.open(c["image"]), class_label=1000, steps=c["steps"], cfg=3.0,
                      seed=c["seed"])
    assert (a.latents - b.latents).abs().max() <= 1e-5


@pytest.fixture(scope="module")
def pipes(tmp_path_factory, pipe):
    """A pipeline per checkpoint of the extra cases (each loaded from its released .pt form)."""
    from tests.mmgen_common import EMA, T4_EMA

    t4 = write_released_pt(tmp_path_factory.mktemp("t4") / "0620000.pt", ema=load_file(T4_EMA),
                           args=training_args(T4_EMA))
    return {EMA: pipe, T4_EMA: MMGenPipeline.from_pretrained(t4, vae=VAE)}


@pytest.mark.parametrize("name", EXTRA_CASES)
def test_extra_cases_match_the_reference(pipes, name):
    result = run_case(pipes[checkpoint_of(name)], name)
    ref = final_latents(name)
    assert result.latents.shape == ref.shape
    assert (result.latents - ref).abs().max() <= TOL


def test_the_second_checkpoint_is_another_architecture(pipes):
    from tests.mmgen_common import T4_EMA

    config = pipes[T4_EMA].config
    assert (config.model_name, config.patch_size, config.num_heads, config.depth, config.fused_attn) == \
        ("SiT-T/4", 4, 2, 3, False)
