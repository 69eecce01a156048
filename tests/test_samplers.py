"""The flow-matching samplers on a problem with an exact answer, and their wiring into the pipeline.

For data x0 ~ N(mu, s^2) (per element) and the straight path x = (1 - sigma) x0 + sigma eps, the exact
velocity E[eps - x0 | x] is linear in x, and the probability-flow ODE from sigma = 1 maps eps to
mu + s * eps. A sampler given that exact velocity is then only as wrong as its integration error.
"""

import math

import pytest
import torch

from unidiff_core.common import flow
from unidiff_core.common.errors import Interrupted
from unidiff_core.common.samplers import SAMPLERS, FlowSchedule, model_evaluations, sample_euler
from unidiff_core.onediffusion.pipeline import Frame

MU, S = 0.7, 0.4


class GaussianVelocity:
    """The exact flow velocity for Gaussian data; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        sigma = t.double() / flow.NUM_TRAIN_TIMESTEPS
        alpha = 1 - sigma
        var = alpha ** 2 * S ** 2 + sigma ** 2
        centred = x.double() - alpha * MU
        x0 = MU + alpha * S ** 2 / var * centred
        eps = sigma / var * centred
        return (eps - x0).to(x.dtype)


def shifted_schedule(steps, shift=3.0):
    """Uniform in time, then shifted towards noise (OneDiffusion's kind of schedule)."""
    sigmas = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return FlowSchedule(flow.model_timestep(sigmas[:-1]), sigmas)


def log_snr_schedule(steps):
    """sigma = 1, then uniform in lambda = log(alpha / sigma) from sigma 0.95 to 0.02, then 0: the step sizes
    all shrink with more steps (DPM-Solver's own setting), so every step shows the method's order."""
    lam = torch.linspace(math.log(0.05 / 0.95), math.log(0.98 / 0.02), steps, dtype=torch.float64)
    sigmas = torch.cat([torch.ones(1, dtype=torch.float64), 1 / (1 + lam.exp()), torch.zeros(1, dtype=torch.float64)])
    return FlowSchedule(flow.model_timestep(sigmas[:-1]), sigmas)


def exact(eps, sigma):
    alpha = 1 - sigma
    return alpha * MU + (alpha ** 2 * S ** 2 + sigma ** 2).sqrt() * eps


EPS = torch.linspace(-2, 2, 41, dtype=torch.float64)


def final_error(name, steps):
    denoiser = GaussianVelocity()
    out = SAMPLERS[name](denoiser, EPS.clone(), shifted_schedule(steps))
    assert denoiser.calls == model_evaluations(name, steps)
    return float((out - exact(EPS, torch.tensor(0.0, dtype=torch.float64))).abs().max())


def last_nonzero_error(name, steps):
    """Error at the last sigma above 0 (the final step to 0 lands on the denoised estimate, first order)."""
    schedule = log_snr_schedule(steps)
    states = []
    SAMPLERS[name](GaussianVelocity(), EPS.clone(), schedule, callback=lambda i, n, x, x0: states.append(x))
    return float((states[-2] - exact(EPS, schedule.sigmas[-2])).abs().max())


# Measured on this problem: euler 1.00, heun 2.03, dpmpp_2m 2.2 (10 -> 80 steps).
@pytest.mark.parametrize("name, order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_convergence_order(name, order):
    coarse, fine = last_nonzero_error(name, 10), last_nonzero_error(name, 80)
    measured = math.log2(coarse / fine) / 3  # 8x the steps
    assert measured == pytest.approx(order, abs=0.4), (coarse, fine, measured)


def test_second_order_samplers_beat_euler_on_the_shifted_schedule():
    # Measured at 40 steps: euler 0.067, heun 0.013, dpmpp_2m 0.0029.
    assert final_error("heun", 40) < final_error("euler", 40) / 3
    assert final_error("dpmpp_2m", 40) < final_error("euler", 40) / 3


def test_callback_gets_latent_and_denoised_and_interrupt_stops():
    seen = []
    x = torch.zeros(3, dtype=torch.float64)
    sample_euler(GaussianVelocity(), x, shifted_schedule(4), callback=lambda i, n, x, x0: seen.append((i, n, x0.clone())))
    assert [(i, n) for i, n, _ in seen] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    # at sigma = 1 the exact denoised estimate is the data mean
    torch.testing.assert_close(seen[0][2].double(), torch.full((3,), MU, dtype=torch.float64))
    with pytest.raises(Interrupted, match="before step 1 of 4"):
        sample_euler(GaussianVelocity(), x, shifted_schedule(4), interrupt=lambda: True)


@pytest.mark.parametrize("name", ["heun", "dpmpp_2m"])
def test_pipeline_samplers_keep_given_frames_and_differ_from_euler(golden_pipeline, golden_dir, name):
    from PIL import Image

    from unidiff_core.onediffusion import layout

    frames = layout.frames_from_mask("1,0", [Image.open(golden_dir / "cond2image_mask10" / "input_0.png")])
    # 4 steps: on this path a first-order DPM-Solver++ step is exactly an Euler step, and dpmpp_2m's first
    # two steps and its last are first order; step 3 is the first second-order one.
    kw = dict(height=64, width=64, steps=4, guidance=4.0, seed=0)
    euler = golden_pipeline.generate("[[depth2image]] a cube", frames, **kw).latents
    other = golden_pipeline.generate("[[depth2image]] a cube", frames, sampler=name, **kw).latents
    assert torch.equal(other[:, 1], euler[:, 1])  # the given frame is the same posterior sample, untouched
    assert (other[:, 0] - euler[:, 0]).abs().max() > 1e-3
    assert torch.isfinite(other).all()


def test_pipeline_refuses_unknown_sampler(golden_pipeline):
    with pytest.raises(ValueError, match="sampler 'ddim' is not one of euler, heun, dpmpp_2m"):
        golden_pipeline.generate("[[text2image]] a cat", [Frame()], height=64, width=64, steps=2, sampler="ddim")


def test_cli_sampler_flag():
    from unidiff_core.cli import build_parser

    assert build_parser().parse_args(["run", "--checkpoint", "tiny"]).sampler == "euler"
    assert build_parser().parse_args(["run", "--checkpoint", "tiny", "--sampler", "heun"]).sampler == "heun"
