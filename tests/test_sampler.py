"""Sampler behaviour beyond the reference: batches, host hooks, input errors."""

import pytest
import torch
from PIL import Image

from unidiff_core.onediffusion import layout
from unidiff_core.onediffusion.pipeline import Frame
from unidiff_core.common.errors import Interrupted


@pytest.fixture(scope="module")
def cond_image(golden_dir):
    return Image.open(golden_dir / "cond2image_mask10" / "input_0.png")


def run(pipe, frames, **kw):
    args = dict(height=64, width=64, steps=3, guidance=4.0, seed=0)
    args.update(kw)
    return pipe.generate("[[depth2image]] a cube", frames, **args)


def test_batch_item_b_equals_single_run_with_seed_plus_b(golden_pipeline, cond_image):
    frames = layout.frames_from_mask("1,0", [cond_image])
    batch = run(golden_pipeline, frames, batch_size=3, seed=5).latents
    assert batch.shape == (3, 2, 16, 8, 8)
    for b in range(3):
        single = run(golden_pipeline, frames, seed=5 + b).latents
        assert (batch[b] - single[0]).abs().max() < 1e-4
    assert (batch[0] - batch[1]).abs().max() > 0.1


def test_same_seed_same_result_and_condition_frames_kept(golden_pipeline, cond_image):
    frames = layout.frames_from_mask("1,0", [cond_image])
    a, b = run(golden_pipeline, frames).latents, run(golden_pipeline, frames).latents
    assert torch.equal(a, b)
    c = run(golden_pipeline, frames, seed=1).latents
    # the condition frame is a posterior sample: it changes with the seed, but is never denoised
    assert (a[0, 0] - c[0, 0]).abs().max() > 0.1


def test_callback_sees_every_step_and_interrupt_stops(golden_pipeline):
    calls = []
    run(golden_pipeline, [Frame()], callback=lambda i, n, x, x0: calls.append((i, n, tuple(x.shape))))
    assert calls == [(0, 3, (1, 1, 16, 8, 8)), (1, 3, (1, 1, 16, 8, 8)), (2, 3, (1, 1, 16, 8, 8))]
    steps_done = []

    def stop_after_first():
        return len(steps_done) >= 1

    with pytest.raises(Interrupted):
        run(golden_pipeline, [Frame()], callback=lambda i, n, x, x0: steps_done.append(i), interrupt=stop_after_first)
    assert steps_done == [0]


def test_guidance_one_runs_without_negative_batch(golden_pipeline):
    out = run(golden_pipeline, [Frame()], guidance=1.0)
    assert out.latents.shape == (1, 1, 16, 8, 8) and torch.isfinite(out.latents).all()


def test_free_form_ray_and_image_frames(golden_pipeline):
    from unidiff_core.onediffusion import cameras
    rays = cameras.ray_frames([0, 45], [0, 10], 1.5, 64)
    frames = [Frame(), Frame("ray", latent=rays[0]), Frame(), Frame("ray", latent=rays[1])]
    out = golden_pipeline.generate("[[multiview]] an object", frames, height=64, width=64, steps=2, seed=0)
    assert torch.equal(out.latents[0, 1], rays[0]) and torch.equal(out.latents[0, 3], rays[1])
    assert out.generated == [0, 2]


@pytest.mark.parametrize("frames, message", [
    ([], "frames is empty"),
    ([Frame(image=Image.new("RGB", (8, 8)))], "every frame is given"),
])
def test_bad_frame_lists(golden_pipeline, frames, message):
    with pytest.raises(ValueError, match=message):
        run(golden_pipeline, frames)


def test_size_not_multiple_of_16_names_the_fix(golden_pipeline):
    with pytest.raises(ValueError, match="height=70 is not a positive multiple of 16; use height=64"):
        run(golden_pipeline, [Frame()], height=70)


def test_ray_latent_of_wrong_size(golden_pipeline):
    with pytest.raises(ValueError, match="does not fit 64x64"):
        run(golden_pipeline, [Frame(), Frame("ray", latent=torch.zeros(16, 4, 4))])


def test_layout_errors():
    with pytest.raises(ValueError, match="give one image per 0"):
        layout.frames_from_mask("1,0,0", [Image.new("RGB", (8, 8))])
    with pytest.raises(ValueError, match="has no 1"):
        layout.parse_mask("0,0")
    with pytest.raises(ValueError, match="comma-separated"):
        layout.parse_mask("1,x")
    with pytest.raises(ValueError, match="camera slot"):
        layout.multiview_frames("1,0,1,0", [], [0], [0], 1.5, size=64)
