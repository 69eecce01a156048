"""The OneDiffusion pipeline: prompt + an ordered list of frames in, latents and images out.

Every task is a sequence of frames. A frame is an image or a camera ray map, and either given
(a condition: its clean latent is kept) or generated (denoised from noise). Text-to-image is one
generated image frame; depth estimation is [given image, generated depth map]; multi-view
interleaves image and ray frames.

Randomness, for reproducibility: batch item b uses a CPU `torch.Generator` seeded with `seed + b`,
so item b of a batch equals a batch-of-one run with seed `seed + b`. Within an item the generator is
consumed in the reference's order: when there are given images, one (1, 16, h, w) draw that the
reference makes and discards, then the VAE posterior noise for the given images, then the noise of
all F frames. Batch 1 therefore reproduces the reference exactly for the same seed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..common import checks
from ..common.errors import InputError
from ..common.flow import condition_timestep
from ..common.samplers import DEFAULT_SAMPLER, SAMPLERS, FlowSchedule, model_evaluations
from ..common.step_cache import FirstBlockCache
from ..families import checkpoint_defaults
from . import preprocess
from .loading import (check_interrupt, checkpoint_parts, load_scheduler_config, load_text_encoder, load_transformer,
                      load_vae)
from .denoiser import MultiFrameDenoiser
from .model import OPERATIONS
from .schedule import DEFAULT_SCHEDULER_CONFIG, make_schedule
from .vae import DOWNSCALE, LATENT_CHANNELS

IMAGE, RAY = "image", "ray"


@dataclass
class Frame:
    """One frame of a task. Given when `image` (PIL or tensor, 0..1) or `latent` is set."""

    kind: str = IMAGE
    image: Any = None
    latent: torch.Tensor | None = None  # (16, h, w), already scaled (e.g. ray maps x1.658)

    def __post_init__(self):
        if self.kind not in (IMAGE, RAY):
            raise ValueError(f"frame kind must be 'image' or 'ray', got {self.kind!r}")
        if self.kind == RAY and self.image is not None:
            raise ValueError("a ray frame takes a latent ray map, not an image")

    @property
    def given(self) -> bool:
        return self.image is not None or self.latent is not None


@dataclass
class GenerationResult:
    latents: torch.Tensor  # (B, F, 16, h, w) float32 on the CPU: every frame after the last step
    frames: list
    height: int
    width: int
    seed: int
    timesteps: torch.Tensor = field(repr=False, default=None)
    sigmas: torch.Tensor = field(repr=False, default=None)
    mu: float = 0.0
    step_cache: dict | None = None  # statistics of the step cache when it was on (see step_cache.py)

    @property
    def generated(self) -> list[int]:
        return [i for i, f in enumerate(self.frames) if not f.given]


TORCH_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
                "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def parse_dtype(name) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in TORCH_DTYPES:
        raise InputError("dtype", name, "is not a dtype", "use fp32, fp16 or bf16")
    return TORCH_DTYPES[name]


def check_dtype_on_device(dtype, device) -> None:
    """A dtype name or torch dtype the device runs (the rule itself is `checks.dtype_on_device`)."""
    checks.dtype_on_device(DTYPE_NAMES.get(parse_dtype(dtype), str(dtype)), device)


class UniDiffPipeline:
    OPERATIONS = OPERATIONS  # the transformer's default layer classes, from which a host builds its own

    def __init__(self, transformer, vae, text_encoder, scheduler_config: dict | None = None):
        self.transformer = transformer
        self.vae = vae
        self.text_encoder = text_encoder
        self.scheduler_config = dict(scheduler_config or DEFAULT_SCHEDULER_CONFIG)
        self.declared_defaults: dict = {}  # what the checkpoint declares (model_index.json), e.g. Mini's 64x64

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, checkpoint: str | os.PathLike, dtype="fp32", device="cpu", vae=None,
                        text_encoder=None, tokenizer=None, text_encoder_dtype=None, vae_dtype=None,
                        text_encoder_device=None, weight_dtype=None, operations=None, attention=None,
                        interrupt=None):
        """Load from a diffusers-layout folder, or a single transformer .safetensors plus separate parts.

        vae / text_encoder / tokenizer override the folder's sub-folders (required for a single
        file). The VAE runs in fp32 unless told otherwise (it is small and bf16 decoding bands).
        text_encoder_device="cpu" keeps the T5 encoder off the GPU (prompts are encoded once, then cached).
        weight_dtype="fp8" stores the transformer blocks' weights in fp8 e4m3 (computing in `dtype`).
        operations / attention: a host's layer classes and attention for the transformer (see model.py).
        interrupt: a callable asked between tensors and parts; True stops the load (Interrupted).
        """
        dtype = parse_dtype(dtype)
        check_dtype_on_device(dtype, device)
        parts = checkpoint_parts(checkpoint, vae, text_encoder, tokenizer)
        transformer_path = parts.transformer
        if weight_dtype == "fp8":
            from .fp8 import load_transformer_fp8

            transformer = load_transformer_fp8(transformer_path, compute_dtype=dtype, device=device,
                                               operations=operations, attention=attention, interrupt=interrupt)
        elif weight_dtype is None:
            transformer = load_transformer(transformer_path, dtype=dtype, device=device, operations=operations,
                                           attention=attention, interrupt=interrupt)
        else:
            raise ValueError(f"weight_dtype {weight_dtype!r} must be None or 'fp8'")
        check_interrupt(interrupt)
        vae_model = load_vae(parts.vae, dtype=parse_dtype(vae_dtype or "fp32"), device=device)
        check_interrupt(interrupt)
        text = load_text_encoder(parts.text_encoder, parts.tokenizer, dtype=parse_dtype(text_encoder_dtype or dtype),
                                 device=text_encoder_device or device)
        pipe = cls(transformer, vae_model, text, load_scheduler_config(parts.scheduler))
        pipe.declared_defaults = checkpoint_defaults(checkpoint)
        return pipe

    def modules(self) -> dict:
        """The torch modules a host manages (moves between devices, offloads), by part name."""
        return {"text_encoder": self.text_encoder.encoder, "transformer": self.transformer, "vae": self.vae.model}

    @property
    def device(self):
        return self.transformer.device

    def offload_text_encoder(self, device="cpu") -> None:
        """Move the T5 encoder off the accelerator once prompts are encoded (encoded prompts stay cached)."""
        self.text_encoder.to(device)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def dtype(self):
        return self.transformer.dtype

    # ------------------------------------------------------------------ prompts
    def encode_prompts(self, prompts: list[str], negatives: list[str], guidance: float):
        positive, pos_mask = self.text_encoder.encode(prompts)
        if guidance > 1.0:
            negative, neg_mask = self.text_encoder.encode(negatives)
            positive, pos_mask = torch.cat([negative, positive]), torch.cat([neg_mask, pos_mask])
        with torch.no_grad():
            return self.transformer.prepare_context(positive.to(self.device), pos_mask.to(self.device))

    # ------------------------------------------------------------------ sizes
    def resolve_size(self, frames: list[Frame], height: int | None, width: int | None) -> tuple[int, int]:
        if height is None or width is None:
            first = next((f.image for f in frames if f.image is not None), None)
            if first is not None:
                height, width = preprocess.bucket_size(*preprocess.image_size(first))
            else:
                latent = next((f.latent for f in frames if f.latent is not None), None)
                if latent is not None:
                    height, width = latent.shape[-2] * DOWNSCALE, latent.shape[-1] * DOWNSCALE
                else:
                    height, width = self.transformer.config.default_pixel_size
        preprocess.check_size(height, width)
        return height, width

    # ------------------------------------------------------------------ generate
    def check_generate(self, prompt, frames: list[Frame], negative_prompt="", height: int | None = None,
                       width: int | None = None, steps: int = 50, guidance: float = 4.0, seed: int = 0,
                       batch_size: int = 1, crop: bool = True, rope_scale: float = 1.0, rope_watershed: float = 1.0,
                       step_cache_threshold: float = 0.0, sampler: str = DEFAULT_SAMPLER,
                       **_unchecked) -> tuple[list, list, int, int]:
        """Every check of `generate`'s arguments, without any model work (a host that encodes the prompts
        first calls it before): numbers finite and in range, the seed with the batch, prompts valid text,
        the size, given latents against it, crops that keep pixels. -> (prompts, negatives, height, width)."""
        frames = list(frames)
        if not frames:
            raise InputError("frames", frames, "no frame", "give at least one frame")
        if all(f.given for f in frames):
            raise InputError("frames", f"{len(frames)} given frames", "every frame is given",
                             "mark at least one frame to generate (no image / no camera)")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
        batch_size = checks.number("batch_size", batch_size, 1, None, integer=True)
        checks.seed(seed, batch_size)
        checks.number("steps", steps, 1, 10000, integer=True)
        checks.number("guidance", guidance)
        checks.number("step_cache", step_cache_threshold, 0.0)
        checks.number("rope_scale", rope_scale)
        checks.number("rope_watershed", rope_watershed)
        prompts = [prompt] * batch_size if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt or ""] * batch_size if not isinstance(negative_prompt, (list, tuple)) \
            else list(negative_prompt)
        if len(prompts) != batch_size or len(negatives) != batch_size:
            raise ValueError(f"{len(prompts)} prompts and {len(negatives)} negative prompts for batch_size={batch_size}")
        prompts = [checks.text("prompt", p) for p in prompts]
        negatives = [checks.text("negative_prompt", p) for p in negatives]
        height, width = self.resolve_size(frames, height, width)
        h, w = height // DOWNSCALE, width // DOWNSCALE
        for i, f in enumerate(frames):
            if f.latent is not None and tuple(f.latent.shape) != (LATENT_CHANNELS, h, w):
                raise ValueError(f"frame {i}: latent of shape {tuple(f.latent.shape)} does not fit "
                                 f"{height}x{width} (needs {(LATENT_CHANNELS, h, w)})")
        for i, f in enumerate(frames):
            if isinstance(f.image, torch.Tensor) and f.image.is_floating_point() and not torch.isfinite(f.image).all():
                raise InputError(f"frames[{i}].image", f"{int((~torch.isfinite(f.image)).sum())} values",
                                 "not finite numbers (NaN or infinity)", "give an image of numbers 0..1")
        if crop:
            preprocess.check_crops([preprocess.image_size(f.image) for f in frames if f.image is not None],
                                   height, width)
        return prompts, negatives, height, width

    def generate(self, prompt, frames: list[Frame], negative_prompt="", height: int | None = None,
                 width: int | None = None, steps: int = 50, guidance: float = 4.0, seed: int = 0,
                 batch_size: int = 1, callback: Callable | None = None, interrupt: Callable | None = None,
                 crop: bool = True, rope_scale: float = 1.0, rope_watershed: float = 1.0,
                 reference_bright_quirk: bool = False, step_cache_threshold: float = 0.0,
                 sampler: str = DEFAULT_SAMPLER) -> GenerationResult:
        frames = list(frames)
        # Every argument is checked first, before any model work (node, CLI and core API alike).
        prompts, negatives, height, width = self.check_generate(
            prompt, frames, negative_prompt, height, width, steps, guidance, seed, batch_size, crop, rope_scale,
            rope_watershed, step_cache_threshold, sampler)
        batch_size, steps, seed = int(batch_size), int(steps), int(seed)
        h, w = height // DOWNSCALE, width // DOWNSCALE

        context = self.encode_prompts(prompts, negatives, guidance)
        dtype, device = self.dtype, self.device
        image_index = [i for i, f in enumerate(frames) if f.image is not None]
        pixels = None
        if image_index:
            pixels = preprocess.preprocess_images([frames[i].image for i in image_index], height, width, crop=crop,
                                                  reference_bright_quirk=reference_bright_quirk)
            mean, std = self.vae.posterior(pixels)

        n = len(frames)
        noise, cond = [], torch.zeros(batch_size, n, LATENT_CHANNELS, h, w, dtype=dtype)
        for b in range(batch_size):
            generator = torch.Generator("cpu").manual_seed(int(seed) + b)
            if image_index:
                torch.randn((1, LATENT_CHANNELS, h, w), generator=generator, dtype=dtype)  # reference's discarded draw
                eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
                cond[b, image_index] = ((mean + std * eps) * self.vae.scaling_factor).to("cpu", dtype)
            noise.append(torch.randn((1, n, LATENT_CHANNELS, h, w), generator=generator, dtype=dtype))
        for i, f in enumerate(frames):
            if f.latent is not None:
                cond[:, i] = f.latent.to(dtype)
        latents = torch.cat(noise).to(device)

        generate_mask = torch.tensor([not f.given for f in frames], device=device)
        tokens_per_frame = (h // self.transformer.config.patch_size[1]) * (w // self.transformer.config.patch_size[2])
        single_t2i = n == 1
        timesteps, sigmas, mu = make_schedule(steps, int(generate_mask.sum()) * tokens_per_frame,
                                              self.scheduler_config, float32_mu=not single_t2i)
        forward_kwargs = {}
        if rope_scale != 1.0 or rope_watershed != 1.0:
            forward_kwargs = dict(scale_factor=rope_scale, scale_watershed=rope_watershed)
        schedule = FlowSchedule(timesteps.to(device), sigmas.to(device))
        denoiser = MultiFrameDenoiser(self.transformer, context, cond.to(device), generate_mask,
                                      condition_timestep(schedule.timesteps), guidance, forward_kwargs)
        run = SAMPLERS[sampler]
        # opt-in first-block step cache (approximate; 0 = off, exact), a hook on the model for this run
        cache = FirstBlockCache(step_cache_threshold, model_evaluations(sampler, steps)) \
            if step_cache_threshold > 0 else None
        with cache.attached(self.transformer) if cache is not None else contextlib.nullcontext():
            out = denoiser.impose(run(denoiser, denoiser.impose(latents), schedule, callback=callback,
                                      interrupt=interrupt))
        return GenerationResult(latents=out.float().cpu(), frames=frames, height=height, width=width, seed=int(seed),
                                timesteps=timesteps, sigmas=sigmas, mu=mu,
                                step_cache=cache.stats() if cache is not None else None)

    # ------------------------------------------------------------------ decode
    def decode(self, latents: torch.Tensor, indices: list[int] | None = None,
               tile_size: int | None = None) -> list[torch.Tensor]:
        """Decode image frames of (B, F, 16, h, w) latents -> one (B, H, W, 3) 0..1 tensor per index.

        tile_size (pixels, e.g. 512): decode large images in overlapping tiles (diffusers' tiled VAE
        decode: bounded memory, slightly different pixels at the tile seams). None = whole image.
        """
        b, f = latents.shape[:2]
        indices = list(range(f)) if indices is None else list(indices)
        if not indices:
            return []
        stacked = latents[:, indices].reshape(b * len(indices), *latents.shape[2:])
        if tile_size:
            decoded = self._decode_tiled(stacked, int(tile_size))
        else:
            decoded = self.vae.decode(stacked)
        images = decoded.view(b, len(indices), *self.vae_image_shape(latents))
        return [images[:, k] for k in range(len(indices))]

    def _decode_tiled(self, latents: torch.Tensor, tile_size: int) -> torch.Tensor:
        model = self.vae.model
        saved = (model.use_tiling, model.tile_sample_min_size, model.tile_latent_min_size)
        model.tile_sample_min_size, model.tile_latent_min_size = tile_size, max(1, tile_size // DOWNSCALE)
        model.enable_tiling()
        try:
            return self.vae.decode(latents)
        finally:
            model.use_tiling, model.tile_sample_min_size, model.tile_latent_min_size = saved

    @staticmethod
    def vae_image_shape(latents):
        return latents.shape[-2] * DOWNSCALE, latents.shape[-1] * DOWNSCALE, 3
