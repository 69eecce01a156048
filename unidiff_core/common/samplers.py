"""Multi-frame flow-matching Euler sampler with per-frame timesteps and classifier-free guidance.

Generated frames start from noise and follow the schedule. Condition frames hold their clean
latents, are shown to the model at the last scheduled timestep (the reference's choice, not 0) and
are re-imposed after every step.
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import Interrupted


def sample(model, context, latents: torch.Tensor, cond_latents: torch.Tensor | None, generate_mask: torch.Tensor,
           timesteps: torch.Tensor, sigmas: torch.Tensor, guidance: float = 1.0,
           callback: Callable[[int, int, torch.Tensor], None] | None = None,
           interrupt: Callable[[], bool] | None = None, forward_kwargs: dict | None = None,
           step_cache_threshold: float = 0.0, step_cache=None) -> torch.Tensor:
    """Denoise (B, F, C, h, w) latents; returns the latents of all frames after the last step.

    context: the model's caption context for the batch [negative; positive] when guidance > 1, else
    for the positive prompts only. cond_latents (B, F, C, h, w) holds the clean condition frames
    (entries of generated frames are ignored). generate_mask (F,) bool: True = frame to generate.
    step_cache_threshold > 0 turns on the first-block step cache (`step_cache.FirstBlockCache`; 0 = off,
    results unchanged); pass your own `step_cache` object instead to read its statistics afterwards.
    """
    forward_kwargs = dict(forward_kwargs or {})
    if step_cache is None and step_cache_threshold > 0:
        from .step_cache import FirstBlockCache

        step_cache = FirstBlockCache(step_cache_threshold, len(timesteps))
    if step_cache is not None:
        forward_kwargs["step_cache"] = step_cache
    cfg = guidance > 1.0
    cond_index = (~generate_mask).nonzero().flatten()
    f = latents.shape[1]
    t_cond = timesteps[-1]
    if cond_latents is not None and len(cond_index):
        latents[:, cond_index] = cond_latents[:, cond_index]
    model_dtype = model.dtype
    for i, t in enumerate(timesteps):
        if interrupt is not None and interrupt():
            raise Interrupted(f"interrupted before step {i + 1} of {len(timesteps)}")
        if step_cache is not None:
            step_cache.begin_step(i)
        frame_t = torch.where(generate_mask, t, t_cond).to(torch.float32)
        model_in = torch.cat([latents, latents]) if cfg else latents
        # A lone generated frame gets one timestep per sample, like the reference's text-to-image
        # call; otherwise one per frame, like its multi-frame call (they round differently).
        frame_t = frame_t[:1].expand(model_in.shape[0]) if f == 1 else frame_t[None].expand(model_in.shape[0], f)
        with torch.no_grad():
            v = model(model_in.to(model_dtype), frame_t, context=context, **forward_kwargs)
        if cfg:
            v_uncond, v_cond = v.chunk(2)
            v = v_uncond + guidance * (v_cond - v_uncond)
        # Euler step in float32, result in the model's dtype (as diffusers' FlowMatchEuler step).
        latents = (latents.float() + (sigmas[i + 1] - sigmas[i]) * v).to(v.dtype)
        if cond_latents is not None and len(cond_index):
            latents[:, cond_index] = cond_latents[:, cond_index].to(latents.dtype)
        if callback is not None:
            callback(i, len(timesteps), latents)
    return latents
