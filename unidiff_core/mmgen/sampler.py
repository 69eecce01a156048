"""MMGen's sampler: Euler–Maruyama on the linear interpolant x_t = (1 - t) x0 + t eps, t = 1 (noise) -> 0 (data),
with one time per latent channel, in float64, as the reference samples.

`sample_euler_maruyama` is a pure sampler over a denoiser (k-diffusion style): `denoiser(x, t)` takes the
float64 state (B, C, H, W) and per-channel times (B, C, 1, 1) and returns the velocity (eps - x0) in float64
(guidance, labels and the task token live in the denoiser, `MMGenDenoiser`). Channels whose time does not
change (a held condition) get dt = 0 and stay bit-identical.

The deterministic flow samplers of `common.samplers` (euler, heun, dpmpp_2m) run too, through
`FlowDenoiser`: MMGen's path is the same rectified flow, so only the per-channel time and the held slot
(zero velocity) need adapting. "sde" (the reference's sampler) is the default.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..common.errors import Interrupted
from ..common.flow import NUM_TRAIN_TIMESTEPS, denoised_from_velocity, model_timestep
from ..common.samplers import SAMPLERS, FlowSchedule
from .layout import channels
from .tasks import DEFAULT_SAMPLER, DEFAULT_T_BLEND

LAST_T = 0.04  # the stochastic steps end here; one deterministic step goes to 0


def sde_schedule(steps: int, num_channels: int = 16, condition: int | None = None,
                 t_blend: float = DEFAULT_T_BLEND) -> torch.Tensor:
    """(steps + 1, C) float64 per-channel times: linspace(1, 0.04, steps) then 0; the condition modality's
    channels are held at t_blend throughout."""
    base = torch.cat([torch.linspace(1.0, LAST_T, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    schedule = base[:, None].repeat(1, num_channels)
    if condition is not None:
        schedule[:, channels(condition)] = t_blend
    return schedule


def score_from_velocity(v, x, t):
    """Linear path (alpha = 1 - t, sigma = t): score = ((t - 1) v - x) / t, written as the reference's general
    form so float64 rounding matches."""
    ratio = (1 - t) / -1.0  # alpha / d_alpha
    variance = t.square() - ratio * t  # sigma² - ratio * d_sigma * sigma
    return (ratio * v - x) / variance


@torch.no_grad()
def sample_euler_maruyama(denoiser: Callable, x: torch.Tensor, schedule: torch.Tensor,
                          generator: torch.Generator | None = None,
                          noise_sampler: Callable[[torch.Tensor], torch.Tensor] | None = None,
                          callback: Callable | None = None,
                          interrupt: Callable[[], bool] | None = None) -> torch.Tensor:
    """x: (B, C, H, W) start (noise, condition slot blended); schedule: (N + 1, C) times. Returns float64.

    Every step but the last adds sqrt(2 t) * sqrt(|dt|) * eps, eps ~ N(0, 1) float64 of x's shape, drawn from
    `generator` in step order (or from `noise_sampler(x)`); the last step is deterministic.
    After each step `callback(step, total, x, x0)` gets the state and the clean latent the model points at.
    """
    if noise_sampler is None:
        def noise_sampler(state):
            return torch.randn(state.shape, generator=generator, dtype=torch.float64, device=state.device)
    x = x.to(torch.float64)
    n = schedule.shape[0] - 1
    for i in range(n):
        if interrupt is not None and interrupt():
            raise Interrupted(f"interrupted before step {i + 1} of {n}")
        t_cur = schedule[i].view(1, -1, 1, 1)
        dt = schedule[i + 1].view(1, -1, 1, 1) - t_cur
        t_in = t_cur.expand(x.shape[0], -1, -1, -1)
        v = denoiser(x, t_in)
        diffusion = 2 * t_cur
        drift = v - 0.5 * diffusion * score_from_velocity(v, x, t_in)
        mean = x + dt * drift
        x0 = denoised_from_velocity(x, v, t_in) if callback is not None else None
        x = mean + torch.sqrt(diffusion) * (noise_sampler(x) * torch.sqrt(dt.abs())) if i < n - 1 else mean
        if callback is not None:
            callback(i, n, x, x0)
    return x


SAMPLER_NAMES = (DEFAULT_SAMPLER,) + tuple(SAMPLERS)  # "sde" first: the default


def ode_schedule(steps: int) -> FlowSchedule:
    """Uniform noise levels 1 -> 0 (as the reference's ODE sampler), on the common schedule type."""
    sigmas = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return FlowSchedule(timesteps=model_timestep(sigmas[:-1]), sigmas=sigmas)


class FlowDenoiser:
    """The common samplers' denoiser(x, timestep on 0..1000) over MMGenDenoiser: the generated channels at the
    schedule's noise level, the held slot at t_blend with zero velocity, so the samplers leave it in place."""

    def __init__(self, denoiser: "MMGenDenoiser", condition: int | None, t_blend: float, num_channels: int = 16):
        self.denoiser, self.t_blend, self.num_channels = denoiser, t_blend, num_channels
        self.held = None if condition is None else channels(condition)

    def __call__(self, x: torch.Tensor, timestep) -> torch.Tensor:
        t = torch.full((x.shape[0], self.num_channels, 1, 1), float(timestep) / NUM_TRAIN_TIMESTEPS,
                       dtype=torch.float64)
        if self.held is not None:
            t[:, self.held] = self.t_blend
        v = self.denoiser(x.to(torch.float64), t)
        if self.held is not None:
            v[:, self.held] = 0
        return v


class MMGenDenoiser:
    """Wraps the SiT for the sampler: float32 (or the model's dtype) model call, classifier-free guidance
    u + s (c - u) in float64 on the batch [conditional; null label], the task token on both halves."""

    def __init__(self, model, labels: torch.Tensor, task: int | None = None, cfg: float = 1.0,
                 on_call: Callable | None = None):
        self.model, self.cfg, self.on_call = model, float(cfg), on_call
        self.labels = labels.long()
        self.task = None if task is None else torch.full_like(self.labels, task)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        guided = self.cfg > 1.0
        y, task = self.labels, self.task
        if guided:
            x, t = torch.cat([x, x]), torch.cat([t, t])
            y = torch.cat([y, torch.full_like(y, self.model.config.null_label)])
            task = None if task is None else torch.cat([task, task])
        dtype, device = self.model.dtype, self.model.device
        # The reference casts to float32 (the latents' dtype); a bf16 model then computes in bf16.
        x_in, t_in = x.to(torch.float32).to(device, dtype), t.to(torch.float32).to(device, dtype)
        out = self.model(x_in, t_in, y.to(device), None if task is None else task.to(device))
        if self.on_call is not None:
            self.on_call(x_in, t_in, y, task, out)
        pred = out.to(device=x.device, dtype=torch.float64)
        if not guided:
            return pred
        cond, uncond = pred.chunk(2)
        return uncond + self.cfg * (cond - uncond)
