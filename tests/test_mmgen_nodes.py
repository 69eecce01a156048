"""MMGen through the ComfyUI nodes (plain Python, ComfyUI's fallbacks): the UniDiff Loader detects the family,
the Multi-Frame Sampler runs it, the MMGen nodes give task, condition and the decoded modalities."""

import importlib
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import GOLDEN, ROOT
from tests.mmgen_common import TOL, VAE, case, final_latents, write_released_pt

sys.path.insert(0, str(ROOT / "example_workflows"))
from make_workflows import load_pack  # noqa: E402

pack = load_pack("comfyui_unidiff")
host = importlib.import_module("comfyui_unidiff.nodes.host")
common = importlib.import_module("comfyui_unidiff.nodes.common")
loader_mod = importlib.import_module("comfyui_unidiff.nodes.loader")
M = pack.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """models/unidiff/MMGen (converted), models/unidiff/0600000.pt, models/vae/sd-vae-ft-mse (the tiny VAE), and
    the tiny OneDiffusion."""
    from unidiff_core.mmgen.loading import convert

    root = tmp_path_factory.mktemp("models")
    (root / "unidiff").mkdir()
    pt = write_released_pt(root / "unidiff" / "0600000.pt")
    convert(pt, root / "unidiff" / "MMGen")
    (root / "unidiff" / "tiny-onediffusion").symlink_to(GOLDEN / "tiny-onediffusion")
    (root / "vae").mkdir()
    (root / "vae" / "sd-vae-ft-mse").symlink_to(VAE)
    saved = {k: list(v) for k, v in host.FALLBACK_FOLDERS.items()}
    host.FALLBACK_FOLDERS.update(unidiff=[str(root / "unidiff")], vae=[str(root / "vae")])
    yield root
    host.FALLBACK_FOLDERS.clear()
    host.FALLBACK_FOLDERS.update(saved)
    loader_mod.clear_cache()


@pytest.fixture(scope="module")
def model(models_dir):
    torch.set_num_threads(1)
    return M["UniDiffLoader"]().load("MMGen", host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32")[0]


def run(model, name, **extra):
    c = case(name)
    (task,) = M["UniDiffMMGenTask"]().encode(c["task"], str(c["class_label"]), c["t_blend"])
    frames = None
    if c["image"] is not None:
        modality = c["task"][:-2]
        (frames,) = M["UniDiffMMGenFrame"]().frame(common.to_image(Image.open(c["image"])), modality)
    (latents,) = M["UniDiffSampler"]().sample(model, task, c["seed"], c["steps"], c["cfg"], 0, 0, c["batch_size"],
                                              True, frames=frames, **extra)
    return latents


def test_loader_lists_and_detects_mmgen(models_dir, model):
    names = host.list_checkpoints()
    assert {"MMGen", "0600000.pt", "tiny-onediffusion"} <= set(names)
    assert model.pipeline.family == "mmgen" and model.pipeline.config.model_name == "SiT-T/2"
    assert set(model.parts) == {"transformer", "vae"}


@pytest.mark.parametrize("name", ["category_cfg4", "category_nocfg_b2", "rgb2x", "depth2x_cfg1.8"])
def test_nodes_reproduce_the_reference(model, name):
    latents = run(model, name)
    assert (latents.latents - final_latents(name)).abs().max() <= TOL


def test_decode_outputs(model):
    latents = run(model, "rgb2x")
    rgb, depth, depth_map, normal, seg, region = M["UniDiffMMGenDecode"]().decode(model, latents)
    for image in (rgb, depth, normal, seg):
        assert image.shape == (1, 256, 256, 3) and 0 <= image.min() and image.max() <= 1
    assert depth_map.shape == region.shape == (1, 256, 256)
    ref = np.asarray(Image.open(case("rgb2x")["image"].parent / "png" / "task_2.png"))
    assert np.abs((normal[0].numpy() * 255).round() - ref).max() <= 1


def test_progress_and_cancel(model):
    calls = []

    class Bar:
        def update_absolute(self, value, total=None, preview=None):
            calls.append((value, total))

    c = case("category_cfg4")
    (task,) = M["UniDiffMMGenTask"]().encode("category", "golden retriever")
    Interrupted = importlib.import_module("comfyui_unidiff.unidiff_core.common.errors").Interrupted
    sampler_mod = importlib.import_module("comfyui_unidiff.nodes.sampler")
    latents = sampler_mod.run_sampler(model, task, c["seed"], 3, 4.0, 0, 0, 1, progress=Bar())
    assert calls == [(1, 3), (2, 3), (3, 3)] and (latents.latents - final_latents("category_cfg4")).abs().max() <= TOL
    host_interrupted = host.interrupted
    try:
        host.interrupted = lambda: True
        with pytest.raises(Interrupted):
            sampler_mod.run_sampler(model, task, 0, 3, 1.0, 0, 0, 1, progress=Bar())
    finally:
        host.interrupted = host_interrupted


def test_node_errors(model):
    (task,) = M["UniDiffMMGenTask"]().encode("rgb2x", "none")
    (depth,) = M["UniDiffMMGenFrame"]().frame(torch.zeros(1, 64, 64, 3), "depth")
    with pytest.raises(ValueError, match="a depth image was given but task 'rgb2x' takes a rgb image"):
        M["UniDiffSampler"]().sample(model, task, 0, 1, 1.0, 0, 0, 1, True, frames=depth)
    with pytest.raises(ValueError, match="MMGen generates 256x256 only"):
        M["UniDiffSampler"]().sample(model, task, 0, 1, 1.0, 512, 512, 1, True)
    with pytest.raises(ValueError, match="image: task rgb2x needs the given rgb image"):
        M["UniDiffSampler"]().sample(model, task, 0, 1, 1.0, 0, 0, 1, True)
    text = M["UniDiffTextEncode"]().encode("image2depth", "", "", True, "")[0]
    with pytest.raises(ValueError, match="an MMGen model takes UniDiff MMGen Task"):
        M["UniDiffSampler"]().sample(model, text, 0, 1, 1.0, 0, 0, 1, True)
    v = M["UniDiffMMGenTask"].VALIDATE_INPUTS
    assert v(class_label="golden retriever", t_blend_start=0.005, task="rgb2x") is True
    assert v(class_label="1001").startswith("class_label: not an ImageNet class id")
    assert v(class_label="none", t_blend_start=0.0, task="depth2x").startswith("t_blend_start: must be above 0")
    with pytest.raises(ValueError, match="a batch of 2"):
        M["UniDiffMMGenFrame"]().frame(torch.zeros(2, 8, 8, 3), "rgb")


def test_mmgen_nodes_on_a_onediffusion_model_are_named(models_dir):
    one = M["UniDiffLoader"]().load("tiny-onediffusion", host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32")[0]
    (task,) = M["UniDiffMMGenTask"]().encode("category", "3")
    with pytest.raises(ValueError, match="model: UniDiff MMGen Task / Modality Frame need an MMGen checkpoint"):
        M["UniDiffSampler"]().sample(one, task, 0, 1, 1.0, 0, 0, 1, True)
