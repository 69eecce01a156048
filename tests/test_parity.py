"""Reference parity on the tiny checkpoint: every golden case, float32 on the CPU, seed 0."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from unidiff_core.onediffusion import layout, preprocess
from unidiff_core.onediffusion.schedule import make_schedule

TOL = 1e-4
SUMMARY_CASES = ["t2i", "t2i_nocfg", "cond2image_mask10", "image2depth_mask01", "faceid_mask100",
                 "multiview_mask0010", "cond2image_autosize"]


def summary(golden_dir):
    return json.loads((golden_dir / "summary.json").read_text())


def case_frames(golden_dir, name, kwargs):
    mask = kwargs.get("denoise_mask", [1])
    n_images = len(kwargs.get("image", []))
    images = [Image.open(golden_dir / name / f"input_{i}.png") for i in range(n_images)]
    if kwargs.get("is_multiview"):
        return layout.multiview_frames(mask, images, kwargs["multiview_azimuths"], kwargs["multiview_elevations"],
                                       kwargs["multiview_distances"], size=kwargs["height"])
    return layout.frames_from_mask(mask, images)


def run_case(pipe, golden_dir, name):
    kwargs = summary(golden_dir)[name]["kwargs"]
    return pipe.generate(kwargs["prompt"], case_frames(golden_dir, name, kwargs),
                         negative_prompt=kwargs.get("negative_prompt") or "", height=kwargs.get("height"),
                         width=kwargs.get("width"), steps=kwargs["num_inference_steps"],
                         guidance=kwargs["guidance_scale"], seed=0)


@pytest.mark.parametrize("name", SUMMARY_CASES)
def test_final_latents_match_reference(golden_pipeline, golden_dir, name):
    result = run_case(golden_pipeline, golden_dir, name)
    gold = load_file(golden_dir / name / "final_latents.safetensors")["final_latents"]
    assert result.latents.shape == gold.shape
    assert (result.latents - gold).abs().max() <= TOL


@pytest.mark.parametrize("name", ["t2i", "faceid_mask100"])
def test_decoded_images_match_reference_pngs(golden_pipeline, golden_dir, name):
    result = run_case(golden_pipeline, golden_dir, name)
    image = golden_pipeline.decode(result.latents, result.generated[:1])[0][0]
    ours = (image.numpy() * 255).round()
    ref = np.asarray(Image.open(golden_dir / name / "output_0.png")).astype(np.float64)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1


@pytest.mark.parametrize("name", ["cond2image_mask10", "multiview_mask0010", "t2i"])
def test_every_transformer_call_matches(golden_pipeline, golden_dir, name):
    tensors = load_file(golden_dir / name / "tensors.safetensors")
    model = golden_pipeline.transformer
    steps = sorted({k.split(".")[0] for k in tensors if k.startswith("step")})
    assert steps
    for step in steps:
        with torch.no_grad():
            out = model(tensors[f"{step}.samples"], tensors[f"{step}.timesteps"],
                        tensors[f"{step}.encoder_hidden_states"], tensors[f"{step}.encoder_attention_mask"])
        assert (out - tensors[f"{step}.output"]).abs().max() <= TOL, step


@pytest.mark.parametrize("name", ["cond2image_mask10", "image2depth_mask01", "multiview_mask0010"])
def test_inputs_to_the_first_call_match(golden_pipeline, golden_dir, name):
    """Noise, condition latents (posterior samples) and per-frame timesteps as the reference forms them."""
    tensors = load_file(golden_dir / name / "tensors.safetensors")
    seen = {}

    def grab(step, total, latents, denoised):
        seen.setdefault("first", latents.clone())

    kwargs = summary(golden_dir)[name]["kwargs"]
    golden_pipeline.generate(kwargs["prompt"], case_frames(golden_dir, name, kwargs),
                             negative_prompt=kwargs.get("negative_prompt") or "", height=kwargs["height"],
                             width=kwargs["width"], steps=kwargs["num_inference_steps"],
                             guidance=kwargs["guidance_scale"], seed=0, callback=grab)
    assert (seen["first"] - tensors["step00.latents_after_step"]).abs().max() <= TOL


def test_prompt_encoding_matches(golden_pipeline, golden_dir):
    tensors = load_file(golden_dir / "t2i" / "tensors.safetensors")
    kwargs = summary(golden_dir)["t2i"]["kwargs"]
    ids, mask = golden_pipeline.text_encoder.tokenize(kwargs["prompt"])
    assert torch.equal(ids, tensors["text0.input_ids"]) and torch.equal(mask, tensors["text0.attention_mask"])
    states, _ = golden_pipeline.text_encoder.encode([kwargs["prompt"]])
    assert (states - tensors["text0.last_hidden_state"]).abs().max() < 1e-5
    neg_ids, _ = golden_pipeline.text_encoder.tokenize(kwargs["negative_prompt"])
    assert torch.equal(neg_ids, tensors["text1.input_ids"])


def test_vae_encode_and_preprocessing_match(golden_pipeline, golden_dir):
    tensors = load_file(golden_dir / "faceid_mask100" / "tensors.safetensors")
    images = [Image.open(golden_dir / "faceid_mask100" / f"input_{i}.png") for i in range(2)]
    pixels = preprocess.preprocess_images(images, 64, 64)
    assert torch.equal(pixels, tensors["vae_encode0.input"])
    mean, std = golden_pipeline.vae.posterior(pixels)
    assert (mean - tensors["vae_encode0.mean"]).abs().max() < 1e-5
    assert (std - tensors["vae_encode0.std"]).abs().max() < 1e-5


@pytest.mark.parametrize("name", SUMMARY_CASES)
def test_schedule_matches(golden_dir, name):
    case = summary(golden_dir)[name]
    tokens = int(case["image_seq_len_for_mu"])
    timesteps, sigmas, mu = make_schedule(case["kwargs"]["num_inference_steps"], tokens,
                                          float32_mu=case["kind"] == "img2img")
    assert abs(mu - case["mu"]) < 1e-6
    assert np.abs(timesteps.numpy() - np.array(case["timesteps"])).max() < 1e-3
    assert np.abs(sigmas.numpy() - np.array(case["sigmas"])).max() < 1e-6


def test_autosize_uses_the_aspect_bucket_of_the_first_image(golden_pipeline, golden_dir):
    image = Image.open(golden_dir / "cond2image_autosize" / "input_0.png")
    assert image.size == (90, 60)  # width, height
    assert preprocess.bucket_size(image.size[1], image.size[0]) == (416, 608)  # height, width
    assert golden_pipeline.resolve_size(case_frames(golden_dir, "cond2image_autosize", {"denoise_mask": [1, 0],
                                        "image": [0]}), None, None) == (416, 608)
