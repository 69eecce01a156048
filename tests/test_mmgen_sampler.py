"""The Euler–Maruyama sampler over a denoiser, the schedule, and the input checks of a generation."""

import pytest
import torch

from tests.mmgen_common import EMA, VAE, case
from unidiff_core.common.errors import InputError, Interrupted
from unidiff_core.mmgen.pipeline import MMGenPipeline
from unidiff_core.mmgen.sampler import sample_euler_maruyama, score_from_velocity, sde_schedule
from unidiff_core.mmgen.tasks import TASKS, get_task


def test_schedule_is_linspace_to_0_04_then_zero_with_the_condition_held():
    s = sde_schedule(5, condition=2, t_blend=0.005)
    assert s.dtype == torch.float64 and s.shape == (6, 16)
    assert s[:, 0].tolist() == pytest.approx([1.0, 0.76, 0.52, 0.28, 0.04, 0.0])
    assert (s[:, 8:12] == 0.005).all() and (s[:, :8] == s[:, :1]).all()
    assert sde_schedule(1)[:, 0].tolist() == [1.0, 0.0]


def test_score_of_the_linear_path():
    x, v, t = torch.randn(2, 16, 1, 1, dtype=torch.float64), torch.randn(2, 16, 1, 1, dtype=torch.float64), \
        torch.full((2, 16, 1, 1), 0.3, dtype=torch.float64)
    assert torch.allclose(score_from_velocity(v, x, t), ((t - 1) * v - x) / t)


def test_one_step_is_deterministic_minus_velocity():
    """N = 1: one noiseless step 1 -> 0; at t = 1 the drift is x + v, so x + (-1)(x + v) = -v."""
    x = torch.randn(1, 16, 4, 4, dtype=torch.float64)
    v = torch.randn(1, 16, 4, 4, dtype=torch.float64)
    out = sample_euler_maruyama(lambda state, t: v, x, sde_schedule(1), noise_sampler=lambda s: 1 / 0)
    assert torch.allclose(out, -v, atol=1e-12)


def test_noise_is_scaled_by_sqrt_2t_dt_and_skipped_on_the_last_step():
    x = torch.zeros(1, 16, 2, 2, dtype=torch.float64)
    schedule = sde_schedule(2, condition=0, t_blend=0.005)  # 1 -> 0.04 -> 0
    draws = []

    def noise(state):
        draws.append(torch.ones_like(state))
        return draws[-1]

    out = sample_euler_maruyama(lambda s, t: torch.zeros_like(s), x, schedule, noise_sampler=noise)
    assert len(draws) == 1  # two steps, noise on the first only
    # zero velocity: step 1 from x = 0 adds only noise, sqrt(2 * 1) * sqrt(0.96); the last step (0.04 -> 0)
    # has drift -0.5 * 2t * (-x / t) = x, so it scales x by 1 - 0.04
    assert torch.allclose(out[0, 4:], torch.full((12, 2, 2), (2 * 0.96) ** 0.5 * 0.96, dtype=torch.float64))
    assert (out[0, :4] == 0).all()  # held channels: dt = 0


def test_callback_and_interrupt():
    x = torch.zeros(1, 16, 2, 2)
    seen = []
    sample_euler_maruyama(lambda s, t: torch.zeros_like(s), x, sde_schedule(3),
                          generator=torch.Generator().manual_seed(0),
                          callback=lambda i, n, s, x0: seen.append((i, n, s.clone(), x0.clone())))
    assert [(i, n) for i, n, _, _ in seen] == [(0, 3), (1, 3), (2, 3)]
    # zero velocity: the clean estimate x - t v is the state before the step
    before = [torch.zeros(1, 16, 2, 2, dtype=torch.float64)] + [s for _, _, s, _ in seen[:-1]]
    assert all(torch.equal(x0, b) for (_, _, _, x0), b in zip(seen, before))
    with pytest.raises(Interrupted, match="before step 1 of 3"):
        sample_euler_maruyama(lambda s, t: torch.zeros_like(s), x, sde_schedule(3), interrupt=lambda: True)


@pytest.fixture(scope="module")
def pipe():
    return MMGenPipeline.from_pretrained(EMA, vae=VAE)


@pytest.mark.parametrize("options, name", [
    (dict(task="rgb2x", t_blend=0.0), "t_blend_start"),
    (dict(task="depth2x", t_blend=-0.1), "t_blend_start"),
    (dict(task="category", cfg=0.5), "cfg"),
    (dict(task="category", class_label=1001), "class_label"),
    (dict(task="category", steps=0), "steps"),
    (dict(task="category", batch_size=0), "batch_size"),
    (dict(task="segment"), "task"),
])
def test_bad_inputs_name_the_input(pipe, options, name):
    from PIL import Image

    image = Image.new("RGB", (64, 64)) if options.get("task", "").endswith("2x") else None
    with pytest.raises(InputError) as e:
        pipe.generate(image=image, steps=options.pop("steps", 2), **options)
    assert e.value.input_name == name and str(e.value).startswith(f"{name}: ")


def test_condition_tasks_need_their_image_and_category_takes_none(pipe):
    from PIL import Image

    with pytest.raises(InputError, match="image: task normal2x needs the given normal image"):
        pipe.generate("normal2x", steps=1)
    with pytest.raises(InputError, match="category generates every modality and takes no image"):
        pipe.generate("category", image=Image.new("RGB", (8, 8)), steps=1)


def test_t_blend_zero_would_be_nan_in_the_raw_sampler():
    """Why t_blend_start 0 is refused: the held channels' variance is 0."""
    x = torch.ones(1, 16, 2, 2, dtype=torch.float64)
    out = sample_euler_maruyama(lambda s, t: torch.ones_like(s), x, sde_schedule(2, condition=0, t_blend=0.0),
                                generator=torch.Generator().manual_seed(0))
    assert torch.isnan(out[:, :4]).all()


def test_task_table():
    assert list(TASKS) == ["category", "rgb2x", "depth2x", "normal2x", "mask2x"]
    assert [TASKS[n].token for n in TASKS] == [0, 1, 2, 3, 4]
    assert get_task("normal2x").outputs == ("rgb", "depth", "mask")
    with pytest.raises(InputError, match="did you mean 'rgb2x'"):
        get_task("rgb2y")


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m"])
def test_common_flow_samplers_run_with_the_condition_held(pipe, sampler):
    from PIL import Image

    image = Image.open(case("rgb2x")["image"])
    sde = pipe.generate("rgb2x", image=image, steps=3, seed=0)
    ode = pipe.generate("rgb2x", image=image, steps=3, seed=0, sampler=sampler)
    assert ode.sampler == sampler and torch.isfinite(ode.latents).all()
    # same start (seed) and the same held RGB slot; the generated slots differ from the stochastic sampler
    assert (ode.latents[:, :4] - sde.latents[:, :4]).abs().max() <= 1e-5
    assert (ode.latents[:, 4:] - sde.latents[:, 4:]).abs().max() > 1e-2


def test_unknown_sampler_is_named(pipe):
    with pytest.raises(InputError, match="sampler: not one of the choices"):
        pipe.generate("category", steps=1, sampler="ddim")


def test_bf16_model_runs_with_the_float64_sampler():
    from unidiff_core.mmgen.loading import load_model

    model = load_model(EMA, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    out = MMGenPipeline(model, None).generate("category", class_label=3, steps=2, seed=1)
    assert out.latents.dtype == torch.float32 and torch.isfinite(out.latents).all()
