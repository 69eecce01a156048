"""First-block step cache: off = bit-identical, on = skips whole-batch steps within its bounds."""

import contextlib

import pytest
import torch

from unidiff_core.common.samplers import FlowSchedule, sample_euler
from unidiff_core.common.step_cache import FirstBlockCache
from unidiff_core.onediffusion.denoiser import MultiFrameDenoiser
from unidiff_core.onediffusion.pipeline import Frame
from unidiff_core.onediffusion.schedule import make_schedule
from unidiff_core.onediffusion.tiny import random_transformer, tiny_pipeline


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return random_transformer(0)


def _context(model, batch=2):
    g = torch.Generator().manual_seed(1)
    states = torch.randn(batch, 300, model.config.caption_channels, generator=g)
    mask = torch.zeros(batch, 300, dtype=torch.long)
    mask[0, :20] = 1
    mask[-1, :35] = 1
    return model.prepare_context(states, mask)


def _inputs(frames=2, h=8, w=8, steps=6):
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(1, frames, 16, h, w, generator=g)
    cond = torch.randn(1, frames, 16, h, w, generator=g)
    mask = torch.tensor([True] + [False] * (frames - 1))
    timesteps, sigmas, _ = make_schedule(steps, (h // 2) * (w // 2))
    return latents, cond, mask, timesteps, sigmas


def sample(model, ctx, latents, cond, mask, ts, sig, guidance, step_cache=None):
    denoiser = MultiFrameDenoiser(model, ctx, cond, mask, ts[-1], guidance)
    with step_cache.attached(model) if step_cache is not None else contextlib.nullcontext():
        return denoiser.impose(sample_euler(denoiser, denoiser.impose(latents), FlowSchedule(ts, sig)))


def test_forward_with_cache_object_but_no_skip_is_identical(model):
    ctx = _context(model)
    x = torch.randn(2, 2, 16, 8, 8)
    t = torch.tensor([[700.0, 30.0], [700.0, 30.0]])
    with torch.no_grad():
        plain = model(x, t, context=ctx)
        cache = FirstBlockCache(0.5, total_steps=4)  # the first call is a warm-up step: never skipped
        with cache.attached(model):
            cached = model(x, t, context=ctx)
    assert torch.equal(plain, cached)
    assert model.blocks_hook is None  # detached after the run
    assert cache.full_steps == 1 and cache.cached_steps == 0


def test_identical_consecutive_inputs_are_skipped(model):
    ctx = _context(model)
    x = torch.randn(2, 1, 16, 8, 8)
    t = torch.tensor([500.0, 500.0])
    cache = FirstBlockCache(0.01, total_steps=5)
    with torch.no_grad(), cache.attached(model):
        full = model(x, t, context=ctx)
        again = model(x, t, context=ctx)
    assert cache.cached_steps == 1 and cache.full_steps == 1
    assert cache.changes[1] == 0.0
    torch.testing.assert_close(again, full, atol=1e-5, rtol=1e-5)


def test_threshold_zero_sampling_is_bit_identical(model):
    ctx = _context(model)
    latents, cond, mask, ts, sig = _inputs()
    with torch.no_grad():
        a = sample(model, ctx, latents.clone(), cond, mask, ts, sig, guidance=4.0)
        b = sample(model, ctx, latents.clone(), cond, mask, ts, sig, guidance=4.0,
                   step_cache=FirstBlockCache(0.0, total_steps=len(ts)))
    assert torch.equal(a, b)


def test_huge_threshold_computes_only_first_and_last_step(model):
    ctx = _context(model)
    latents, cond, mask, ts, sig = _inputs(steps=6)
    cache = FirstBlockCache(1e9, total_steps=len(ts))
    with torch.no_grad():
        out = sample(model, ctx, latents.clone(), cond, mask, ts, sig, guidance=4.0, step_cache=cache)
        ref = sample(model, ctx, latents.clone(), cond, mask, ts, sig, guidance=4.0)
    assert cache.full_steps == 2 and cache.cached_steps == 4
    assert torch.isfinite(out).all()
    assert not torch.equal(out, ref)
    # condition frames are still re-imposed exactly
    assert torch.equal(out[:, 1:], cond[:, 1:])


def test_cache_bounds_warmup_and_final_steps():
    cache = FirstBlockCache(0.1, total_steps=5, warmup_steps=2, final_steps=1)
    allowed = []
    for _ in range(5):  # the cache counts model evaluations itself
        allowed.append(cache.may_skip)
        cache.run(torch.zeros(1), lambda i, x: x + 1, depth=2)
    assert allowed == [False, False, True, True, False]
    with pytest.raises(ValueError):
        FirstBlockCache(-0.1, total_steps=5)


def test_pipeline_generate_reports_cache_stats():
    pipe = tiny_pipeline(seed=0)
    kwargs = dict(height=64, width=64, steps=5, guidance=4.0, seed=3)
    off = pipe.generate("[[text2image]] a cat", [Frame()], **kwargs)
    on = pipe.generate("[[text2image]] a cat", [Frame()], step_cache_threshold=1e9, **kwargs)
    assert off.step_cache is None
    assert on.step_cache["full_steps"] == 2 and on.step_cache["cached_steps"] == 3
    assert on.step_cache["eval_reduction"] == pytest.approx(2.5)
    assert on.latents.shape == off.latents.shape


def test_cli_has_step_cache_flag():
    from unidiff_core.cli import build_parser

    args = build_parser().parse_args(["run", "--checkpoint", "tiny", "--step-cache", "0.08"])
    assert args.step_cache == pytest.approx(0.08)
    args = build_parser().parse_args(["run", "--checkpoint", "tiny"])
    assert args.step_cache == 0.0


def test_cache_counts_heun_evaluations():
    pipe = tiny_pipeline(seed=0)
    on = pipe.generate("[[text2image]] a cat", [Frame()], height=64, width=64, steps=4, guidance=4.0, seed=3,
                       step_cache_threshold=1e9, sampler="heun")
    # heun: 2 * 4 - 1 = 7 evaluations, the first and the last computed in full
    assert on.step_cache["full_steps"] == 2 and on.step_cache["cached_steps"] == 5
