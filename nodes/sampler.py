"""UniDiffSampler: model + text + frames -> latents of every frame, with progress, live preview and Cancel."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..unidiff_core.common import checks
from ..unidiff_core.common.samplers import DEFAULT_SAMPLER, sampler_names
from . import host
from .common import CATEGORY, FRAMES, LATENTS, MODEL, TEXT, validate
from .frames import chain
from .mmgen import is_mmgen_run, run_mmgen_sampler
from .text import TextSpec

MAX_SEED = 0xFFFFFFFFFFFFFFFF


@dataclass
class LatentsResult:
    """The UNIDIFF_LATENTS value: the request that was run and the engine's GenerationResult."""

    request: object  # unidiff_core.onediffusion.tasks.TaskRequest
    result: object  # unidiff_core.onediffusion.pipeline.GenerationResult
    decoded: dict = field(default_factory=dict, repr=False)  # decoders' cache: decode options -> TaskOutput

    @property
    def latents(self):
        return self.result.latents  # (B, F, 16, h, w) float32, CPU

    def __repr__(self):
        return (f"LatentsResult(task={self.request.task!r}, latents={tuple(self.latents.shape)}, "
                f"prompt={self.request.prompt[:60]!r})")


# ------------------------------------------------------------------------------------ request
def task_request(text: TextSpec, frames=None, width: int = 0, height: int = 0, steps: int = 50,
                 guidance: float = 4.0):
    """TaskRequest from the text node and the frame chain: merged by the core (onediffusion/contributions.py)."""
    from ..unidiff_core.onediffusion import contributions

    width, height = checks.size_pair(width, height)  # multiples of 16, or both 0 (also checked by VALIDATE_INPUTS)
    return contributions.task_request(text.task, text.prompt, chain(frames).items,
                                      negative_prompt=text.negative_prompt, labels=text.labels,
                                      width=width or None, height=height or None, steps=steps, guidance=guidance)


# ------------------------------------------------------------------------------------ sampling
def preview_frames(request) -> list[int]:
    """Frames shown in the live preview: the generated image frames."""
    return [i for i, f in enumerate(request.frames) if not f.given and f.kind == "image"]


def make_preview(latents, indices, decode, max_size: int = 512):
    """Generated frames of batch item 0 side by side -> ("JPEG", PIL, max_size) for ProgressBar."""
    from PIL import Image

    tiles = [decode(latents[0:1, i].float()) for i in indices]
    tiles = [t for t in tiles if t is not None]
    if not tiles:
        return None
    height = max(t.height for t in tiles)
    strip = Image.new("RGB", (sum(t.width for t in tiles), height))
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width
    return ("JPEG", strip, max_size)


def run_sampler(model, text: TextSpec, seed: int, steps: int, guidance: float, width: int, height: int,
                batch_size: int, crop: bool = True, frames=None, node_id=None, progress=None,
                previewer=None, step_cache: float = 0.0, sampler: str = DEFAULT_SAMPLER) -> LatentsResult:
    from ..unidiff_core.common.errors import Interrupted

    if is_mmgen_run(model, text, frames):
        return run_mmgen_sampler(model, text, seed, steps, guidance, width, height, batch_size, frames, node_id,
                                 progress, previewer, step_cache)
    declared = getattr(model.pipeline, "declared_defaults", {})
    if not width and not height and "width" in declared and "height" in declared:
        width, height = int(declared["width"]), int(declared["height"])  # auto = the checkpoint's size (Mini: 64)
    request = task_request(text, frames, width, height, steps, guidance)
    model.pipeline.check_generate(**request.generate_kwargs(), seed=seed, batch_size=batch_size, crop=bool(crop),
                                  step_cache_threshold=step_cache, sampler=sampler)  # all checked before the encoder runs
    pipe = model.ready("text_encoder")
    prompts = [request.prompt] + ([request.negative_prompt or ""] if request.guidance > 1.0 else [])
    pipe.text_encoder.encode(prompts)  # cached by the encoder: generate() reuses it, T5 may be offloaded now
    pipe = model.ready("transformer", "vae")
    pbar = progress if progress is not None else host.progress_bar(request.steps, node_id=node_id)
    decode = previewer if previewer is not None else host.latent_previewer()
    shown = preview_frames(request)
    max_size = host.preview_size()

    def callback(step, total, latents, denoised):
        # The preview shows the clean frames the model points at (x0), not the noisy latent.
        preview = make_preview(denoised, shown, decode, max_size) if decode is not None and shown else None
        pbar.update_absolute(step + 1, total, preview)

    try:
        result = pipe.generate(**request.generate_kwargs(), seed=int(seed), batch_size=int(batch_size),
                               callback=callback, interrupt=host.interrupted, crop=bool(crop),
                               step_cache_threshold=float(step_cache), sampler=sampler)
    except Interrupted as e:
        # Free what the run held now, not when the exception is dropped: the traceback keeps the sampler's
        # frames (latents, noise, model inputs) alive, and ComfyUI keeps the exception until the prompt ends.
        e.__traceback__ = None
        host.soft_empty_cache()
        host.raise_interrupted(e)
    except Exception as e:  # Cancel seen by ComfyUI's progress hook (in the callback): free the same way
        if not host.is_interrupt(e):
            raise
        e.__traceback__ = None
        host.soft_empty_cache()
        raise e
    return LatentsResult(request, result)


class UniDiffSampler:
    DESCRIPTION = ("OneDiffusion multi-frame sampler: denoises every frame to generate while the given frames "
                   "condition it. Shows progress with a live preview of the generated frames (ComfyUI's "
                   "--preview-method) and stops within one step on Cancel.")
    CATEGORY = CATEGORY + "/sampling"
    RETURN_TYPES = (LATENTS,)
    RETURN_NAMES = ("latents",)
    OUTPUT_TOOLTIPS = ("Latents of all frames (batch, frames, 16, h, w) with the task layout, for the decoders.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "From UniDiff Loader."}),
                "text": (TEXT, {"tooltip": "Task and caption from UniDiff Text Encode."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                                 "tooltip": "Noise seed; batch item b uses seed + b (so it equals a single run "
                                            "with that seed)."}),
                "steps": ("INT", {"default": 50, "min": 1, "max": 1000, "step": 1,
                                  "tooltip": "Denoising steps (demos: 50; faceid 75; multi-view 60-100)."}),
                "guidance": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01,
                                       "tooltip": "Classifier-free guidance scale; <= 1 turns it off (faster). "
                                                  "Demos: 4; editing 3-3.5."}),
                "width": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 16,
                                  "tooltip": "Output width, a multiple of 16. 0 (with height 0) = auto: the "
                                             "task's default, or the ~512² aspect bucket of the first given "
                                             "image. Multi-view needs width = height."}),
                "height": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 16,
                                   "tooltip": "Output height, a multiple of 16; 0 (with width 0) = auto."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64,
                                       "tooltip": "Independent samples of the same frames (seeds seed..seed+n-1)."}),
                "crop": ("BOOLEAN", {"default": True,
                                     "tooltip": "Given images: centre-crop to the output aspect, then resize (the "
                                                "reference's way). Off: stretch to the output size."}),
            },
            "optional": {
                "frames": (FRAMES, {"tooltip": "The condition frames (UniDiff frame nodes, chained). Optional for "
                                               "text2image / text2multiview."}),
                "step_cache": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": "Step cache threshold: reuse the transformer's residual when "
                                                    "the first block's output changed less than this (relative) "
                                                    "since the last full step. 0 = off (exact). About 0.08-0.12 "
                                                    "skips a third to half of the evaluations, approximately."}),
                "sampler": (sampler_names(), {"default": DEFAULT_SAMPLER,
                                            "tooltip": "euler: the reference's sampler (default, exact parity). "
                                                       "heun: 2nd order, about 2 model calls per step. dpmpp_2m: "
                                                       "DPM-Solver++(2M), 2nd order at 1 call per step: fewer "
                                                       "steps for the same quality."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, width=None, height=None, seed=None, batch_size=None, guidance=None, step_cache=None):
        def check():
            if width is not None and height is not None:
                checks.size_pair(width, height)
            for name, value in (("width", width), ("height", height)):
                if value is not None:
                    checks.size(name, value, allow_auto=True)
            if seed is not None and batch_size is not None:
                checks.seed(seed, batch_size)  # seeds seed .. seed + batch_size - 1

        # guidance and step_cache: ComfyUI's min/max check lets NaN through; widget_checks refuses it
        return validate(cls, check, width=width, height=height, seed=seed, batch_size=batch_size, guidance=guidance,
                        step_cache=step_cache)

    def sample(self, model, text, seed, steps, guidance, width, height, batch_size, crop, frames=None,
               step_cache=0.0, sampler=DEFAULT_SAMPLER, unique_id=None):
        return (run_sampler(model, text, seed, steps, guidance, width, height, batch_size, crop, frames,
                            node_id=unique_id, step_cache=step_cache, sampler=sampler),)
