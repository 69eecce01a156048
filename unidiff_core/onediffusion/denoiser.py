"""NextDiT as a flow-matching denoiser over a sequence of frames, for the samplers in common/samplers.py.

It owns what is particular to OneDiffusion's multi-frame sampling:
* classifier-free guidance: one batched call on [negative; positive] captions when guidance > 1;
* given frames: shown to the model clean, at the schedule's last timestep (the reference's choice, not 0),
  and never moved by the sampler (their velocity is 0; `impose` writes them into a latent);
* per-frame timesteps with the reference's rounding: a lone generated frame gets one timestep per sample
  (the reference's text-to-image call), otherwise one per frame (its multi-frame call); the model averages
  them per patch differently, so each is kept as the reference passes it.
"""

from __future__ import annotations

import torch


class MultiFrameDenoiser:
    def __init__(self, model, context, cond_latents: torch.Tensor, generate_mask: torch.Tensor,
                 condition_t: torch.Tensor, guidance: float = 1.0, forward_kwargs: dict | None = None):
        """cond_latents (B, F, C, h, w): clean given frames (entries of generated frames are ignored);
        generate_mask (F,) bool, True = generate; context: the model's caption context for [negative; positive]
        when guidance > 1, else for the positive prompts."""
        self.model = model
        self.context = context
        self.cond_latents = cond_latents
        self.generate_mask = generate_mask
        self.given_index = (~generate_mask).nonzero().flatten()
        self.condition_t = condition_t
        self.guidance = float(guidance)
        self.forward_kwargs = dict(forward_kwargs or {})

    @property
    def cfg(self) -> bool:
        return self.guidance > 1.0

    def impose(self, x: torch.Tensor) -> torch.Tensor:
        """x with the given frames set to their clean latents (in place)."""
        if len(self.given_index):
            x[:, self.given_index] = self.cond_latents[:, self.given_index].to(x.dtype)
        return x

    def frame_timesteps(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        frame_t = torch.where(self.generate_mask, t, self.condition_t).to(torch.float32)
        frames = self.generate_mask.shape[0]
        return frame_t[:1].expand(batch) if frames == 1 else frame_t[None].expand(batch, frames)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        model_in = torch.cat([x, x]) if self.cfg else x
        with torch.no_grad():
            v = self.model(model_in.to(self.model.dtype), self.frame_timesteps(t, model_in.shape[0]),
                           context=self.context, **self.forward_kwargs)
        if self.cfg:
            v_uncond, v_cond = v.chunk(2)
            v = v_uncond + self.guidance * (v_cond - v_uncond)
        if len(self.given_index):
            v[:, self.given_index] = 0  # given frames stay where they are
        return v
