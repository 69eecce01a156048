"""Flow-matching sigma schedule with OneDiffusion's resolution-dependent ("dynamic") shift."""

from __future__ import annotations

import numpy as np
import torch

# scheduler/scheduler_config.json of the released model (FLUX-dev values).
DEFAULT_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_image_seq_len": 256,
    "max_image_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15,
}


def shift_mu(image_seq_len, config: dict):
    """Linear in the number of generated tokens; not clipped (as the reference)."""
    m = (config["max_shift"] - config["base_shift"]) / (config["max_image_seq_len"] - config["base_image_seq_len"])
    b = config["base_shift"] - m * config["base_image_seq_len"]
    return image_seq_len * m + b


def make_schedule(steps: int, generated_tokens: int, config: dict | None = None, float32_mu: bool = True):
    """Timesteps (steps,) on the 0..1000 scale and sigmas (steps + 1,) ending in 0, float32.

    generated_tokens counts the tokens of the generated frames only (condition frames do not count).
    The reference computes mu in float32 for multi-frame calls and in float64 for text-to-image;
    float32_mu picks which (the difference is at most one float32 ulp of a timestep).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    if steps < 1:
        raise ValueError(f"steps={steps} must be at least 1")
    config = dict(DEFAULT_SCHEDULER_CONFIG, **(config or {}))
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    seq_len = torch.tensor(float(generated_tokens), dtype=torch.float32) if float32_mu else float(generated_tokens)
    mu = shift_mu(seq_len, config)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu, device="cpu")
    return scheduler.timesteps.float().clone(), scheduler.sigmas.float().clone(), float(mu)
