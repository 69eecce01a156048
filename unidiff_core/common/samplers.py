"""Flow-matching samplers: pure loops over a denoiser, in the style of k-diffusion's samplers.

A denoiser is a callable `denoiser(x, t) -> v`: the flow velocity at timestep t (the model's 0..1000
scale, `flow.model_timestep(sigma)`) for the whole latent x. Everything model-specific (guidance, given
frames, per-frame timesteps) lives in the denoiser; a sampler only walks the schedule:

    x = sample_euler(denoiser, x, schedule, callback=None, interrupt=None)

`schedule.sigmas` has steps + 1 entries ending in 0 and `schedule.timesteps` the model timestep of each
of the first `steps` sigmas (taken from the scheduler as it rounds them, not recomputed). After each
step, `callback(step, total, x, x0)` gets the current latent and the clean latent the model points at
(what live previews show). `interrupt()` returning True stops before the next model evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import Interrupted
from .flow import denoised_from_velocity

if TYPE_CHECKING:  # the loops only call tensor methods: importing them (e.g. for the node widgets) needs no torch
    import torch

Callback = Callable[[int, int, "torch.Tensor", "torch.Tensor"], None]


@dataclass(frozen=True)
class FlowSchedule:
    timesteps: torch.Tensor  # (steps,) model timesteps, 0..1000
    sigmas: torch.Tensor  # (steps + 1,) noise levels, ending in 0

    @property
    def steps(self) -> int:
        return len(self.timesteps)


def _check(interrupt, step: int, total: int) -> None:
    if interrupt is not None and interrupt():
        raise Interrupted(f"interrupted before step {step + 1} of {total}")


def _euler_update(x, v, sigma, sigma_next):
    # In float32, the result in the velocity's dtype (as diffusers' FlowMatchEulerDiscreteScheduler.step).
    return (x.float() + (sigma_next - sigma) * v).to(v.dtype)


def sample_euler(denoiser, x: torch.Tensor, schedule: FlowSchedule, callback: Callback | None = None,
                 interrupt: Callable[[], bool] | None = None) -> torch.Tensor:
    """First-order steps along the predicted velocity: one model evaluation per step."""
    sigmas, total = schedule.sigmas, schedule.steps
    for i in range(total):
        _check(interrupt, i, total)
        v = denoiser(x, schedule.timesteps[i])
        if callback is not None:
            x0 = denoised_from_velocity(x.float(), v.float(), sigmas[i])
        x = _euler_update(x, v, sigmas[i], sigmas[i + 1])
        if callback is not None:
            callback(i, total, x, x0)
    return x


def sample_heun(denoiser, x: torch.Tensor, schedule: FlowSchedule, callback: Callback | None = None,
                interrupt: Callable[[], bool] | None = None) -> torch.Tensor:
    """Heun's second-order method (k-diffusion's sample_heun): an Euler step, then the average of the
    velocities at both ends; the last step (to sigma 0) stays Euler. 2 * steps - 1 model evaluations."""
    sigmas, total = schedule.sigmas, schedule.steps
    for i in range(total):
        _check(interrupt, i, total)
        v = denoiser(x, schedule.timesteps[i])
        x0 = denoised_from_velocity(x.float(), v.float(), sigmas[i])
        x_euler = _euler_update(x, v, sigmas[i], sigmas[i + 1])
        if i + 1 < total:
            _check(interrupt, i, total)
            v_next = denoiser(x_euler, schedule.timesteps[i + 1])
            x = (x.float() + (sigmas[i + 1] - sigmas[i]) * (v.float() + v_next.float()) / 2).to(v.dtype)
        else:
            x = x_euler
        if callback is not None:
            callback(i, total, x, x0)
    return x


def sample_dpmpp_2m(denoiser, x: torch.Tensor, schedule: FlowSchedule, callback: Callback | None = None,
                    interrupt: Callable[[], bool] | None = None) -> torch.Tensor:
    """DPM-Solver++(2M), the multistep data-prediction solver, for the flow path x = alpha*x0 + sigma*eps with
    alpha = 1 - sigma: one model evaluation per step, second order from the second step on.

    With lambda = log(alpha / sigma) and h = lambda_next - lambda:
        x_next = (sigma_next / sigma) * x + alpha_next * (1 - e^-h) * D,
    D the denoised estimate, extrapolated from the previous step's as D + (D - D_prev) / (2r), r = h_prev / h.
    e^-h is computed as a ratio, so sigma = 1 (alpha = 0, lambda = -inf) at the start needs no special case.
    On this path a first-order step equals an Euler step; the first step from sigma = 1 (h infinite, so the
    next step has no finite r) and the last step to 0 stay first order. The lambda steps near sigma 0 do
    not shrink on time-uniform schedules, so the gain over Euler is largest in the middle of the schedule.
    """
    sigmas, total = schedule.sigmas.float(), schedule.steps
    alphas = 1 - sigmas
    lambdas = alphas.log() - sigmas.log()  # -inf at sigma 1, +inf at sigma 0
    previous = None
    for i in range(total):
        _check(interrupt, i, total)
        v = denoiser(x, schedule.timesteps[i])
        x0 = denoised_from_velocity(x.float(), v.float(), sigmas[i])
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma_next == 0:
            x_next = x0  # the last step lands on the (extrapolation-free) denoised estimate
        else:
            exp_neg_h = (alphas[i] * sigma_next) / (sigma * alphas[i + 1])
            d = x0
            if previous is not None:
                h, h_prev = lambdas[i + 1] - lambdas[i], lambdas[i] - lambdas[i - 1]
                r = h_prev / h
                if r.isfinite():
                    d = x0 + (x0 - previous) / (2 * r)
            x_next = (sigma_next / sigma) * x.float() + alphas[i + 1] * (1 - exp_neg_h) * d
        previous = x0
        x = x_next.to(v.dtype)
        if callback is not None:
            callback(i, total, x, x0)
    return x


SAMPLERS: dict[str, Callable] = {"euler": sample_euler, "heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m}
DEFAULT_SAMPLER = "euler"


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def model_evaluations(sampler: str, steps: int) -> int:
    """How many times a sampler calls the denoiser for a schedule of `steps` steps."""
    return 2 * steps - 1 if sampler == "heun" else steps
