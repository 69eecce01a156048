"""MMGen generation: class label and/or one given modality -> the four modalities' latents and images.

Random draws follow the reference's order from one generator seeded with `seed`: the initial noise
(B, 16, 32, 32) float32, then (condition modes) the VAE posterior noise (B, 4, 32, 32) float32, then one
float64 (B, 16, 32, 32) draw per sampler step but the last. Same seed and batch size, same result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image

from ..common.checks import choice, number
from ..common.errors import CheckpointError, InputError
from ..common.images import to_uint8
from ..common.samplers import SAMPLERS
from . import layout
from .loading import load_model
from .preprocess import center_crop, to_model_pixels
from .sampler import (DEFAULT_SAMPLER, SAMPLER_NAMES, FlowDenoiser, MMGenDenoiser, ode_schedule,
                      sample_euler_maruyama, sde_schedule)
from .tasks import DEFAULT_STEPS, DEFAULT_T_BLEND, NULL_LABEL, get_task
from .vae import MMGenVAE

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class MMGenResult:
    latents: torch.Tensor  # (B, 16, 32, 32) float32, the sampler output
    task: str
    labels: list
    steps: int
    cfg: float
    seed: int
    schedule: torch.Tensor  # (steps + 1, 16) float64
    crops: list = field(default_factory=list)  # the condition image(s) as the model saw them (uint8)
    sampler: str = DEFAULT_SAMPLER


def check_generation(task, steps, cfg, batch_size, t_blend, class_label, image, sampler=DEFAULT_SAMPLER) -> None:
    """Bad inputs raise InputError (named as the node inputs) before any model work."""
    choice("sampler", sampler, SAMPLER_NAMES)
    number("steps", steps, 1, 10000, integer=True)
    number("batch_size", batch_size, 1, 64, integer=True)
    number("cfg", cfg, 1.0, 100.0)  # the reference refuses < 1 (1 = no guidance)
    number("class_label", class_label, 0, NULL_LABEL, integer=True)
    t_blend = number("t_blend_start", t_blend, 0.0, 1.0)
    if task.condition is not None and t_blend <= 0:
        # At t = 0 the score divides by a zero variance: the whole output would be NaN.
        raise InputError("t_blend_start", t_blend, "must be above 0 (at 0 the sampler divides by zero)",
                         f"use a small positive time such as {DEFAULT_T_BLEND}")
    if task.condition is not None and image is None:
        raise InputError("image", None, f"task {task.name} needs the given {task.condition} image",
                         f"give a {task.condition} image")
    if task.condition is None and image is not None:
        raise InputError("image", "an image", "task category generates every modality and takes no image",
                         "drop the image, or pick rgb2x/depth2x/normal2x/mask2x")


class MMGenPipeline:
    family = "mmgen"

    def __init__(self, model, vae: MMGenVAE | None):
        self.model, self.vae = model, vae

    @classmethod
    def from_pretrained(cls, checkpoint, vae=None, dtype="fp32", device="cpu") -> "MMGenPipeline":
        torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        model = load_model(checkpoint, dtype=torch_dtype, device=device)
        if vae is None:
            raise CheckpointError(f"{checkpoint}: MMGen needs the SD VAE: give its folder (sd-vae-ft-mse, "
                                  "models/vae/)")
        return cls(model, MMGenVAE.from_pretrained(vae, device=device) if not isinstance(vae, MMGenVAE) else vae)

    @property
    def config(self):
        return self.model.config

    def modules(self) -> dict:
        """The torch modules a host manages (moves between devices, offloads), by part name."""
        return {"transformer": self.model, "vae": self.vae.model}

    @torch.no_grad()
    def generate(self, task: str = "category", image=None, class_label: int | None = None,
                 steps: int = DEFAULT_STEPS, cfg: float | None = None, seed: int = 0, batch_size: int = 1,
                 t_blend: float = DEFAULT_T_BLEND, sampler: str = DEFAULT_SAMPLER, callback: Callable | None = None,
                 interrupt: Callable | None = None, on_model_call: Callable | None = None) -> MMGenResult:
        """image: a PIL image (or an image array / tensor) of the given modality for the condition tasks;
        every item of the batch gets the same image and label. sampler: "sde" (the reference's) or one of the
        deterministic flow samplers (euler, heun, dpmpp_2m). callback(step, total, x, x0) after each step."""
        spec = get_task(task)
        label = spec.default_label if class_label is None else class_label
        cfg = spec.default_cfg if cfg is None else cfg
        check_generation(spec, steps, cfg, batch_size, t_blend, label, image, sampler)
        size = self.config.input_size
        g = torch.Generator().manual_seed(int(seed))
        latents = torch.randn(batch_size, self.config.in_channels, size, size, generator=g)
        crops = []
        condition = None
        if spec.condition is not None:
            # A PIL image, or an array / tensor (a 256² uint8 crop passes through unchanged: Pillow does not
            # resample to the same size).
            pil = image if isinstance(image, Image.Image) else Image.fromarray(to_uint8(image))
            crop = center_crop(pil, size * 8)
            crops = [crop] * batch_size
            z = self.vae.encode(to_model_pixels(crops), generator=g)
            condition = layout.modality_index(spec.condition)
            slot = layout.channels(condition)
            # The linear-path point at t_blend: mostly the encoded input, a little of the initial noise.
            latents[:, slot] = latents[:, slot] * t_blend + z * (1 - t_blend)
        schedule = sde_schedule(steps, self.config.in_channels, condition, t_blend)
        labels = torch.full((batch_size,), int(label), dtype=torch.long)
        denoiser = MMGenDenoiser(self.model, labels, None if condition is None else spec.token, cfg,
                                 on_call=on_model_call)
        if sampler == "sde":
            out = sample_euler_maruyama(denoiser, latents, schedule, generator=g, callback=callback,
                                        interrupt=interrupt)
        else:
            out = SAMPLERS[sampler](FlowDenoiser(denoiser, condition, t_blend, self.config.in_channels),
                                    latents.to(torch.float64), ode_schedule(steps), callback=callback,
                                    interrupt=interrupt)
        return MMGenResult(out.to(torch.float32), spec.name, labels.tolist(), steps, float(cfg), int(seed),
                           schedule, crops, sampler)

    def decode(self, latents: torch.Tensor) -> dict:
        """{modality: (B, 256, 256, 3) uint8} for the four modalities."""
        return {m: self.vae.decode(latents[:, layout.channels(m)]) for m in layout.MODALITIES}
