"""MMGen nodes: the task and class label, the given modality, and the decoder of the four modalities.

The UniDiff Loader loads MMGen checkpoints (the family is detected; its UNIDIFF_MODEL holds an MMGenPipeline) and
the Multi-Frame Sampler runs them:
MMGen Task goes into its `text` input and MMGen Modality Frame into its `frames` input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..unidiff_core.common.checks import message
from ..unidiff_core.common.errors import InputError, Interrupted
from ..unidiff_core.mmgen import layout
from ..unidiff_core.mmgen.classes import parse_class_label
from ..unidiff_core.mmgen.tasks import TASKS
from . import host
from .common import CATEGORY, FRAMES, LATENTS, MODEL, TEXT, image_list

SUB = CATEGORY + "/mmgen"
MODALITIES = ("rgb", "depth", "normal", "mask")
SAMPLERS = ("sde", "euler", "heun", "dpmpp_2m")  # as unidiff_core.mmgen.sampler.SAMPLER_NAMES (torch-free here)
DEFAULT_VAE = "sd-vae-ft-mse"


@dataclass(frozen=True)
class MMGenSpec:
    """The UNIDIFF_TEXT value of MMGen Task."""

    task: str
    class_label: int
    t_blend: float
    sampler: str


@dataclass(frozen=True)
class MMGenFrame:
    """The UNIDIFF_FRAMES value of MMGen Modality Frame: the given image as the model will see it (uint8 256²)."""

    modality: str
    crop: object  # (256, 256, 3) uint8 numpy array


@dataclass
class MMGenLatents:
    """The UNIDIFF_LATENTS value for MMGen: the engine's MMGenResult, plus the decoders' cache."""

    result: object
    decoded: dict = field(default_factory=dict, repr=False)

    @property
    def latents(self):
        return self.result.latents  # (B, 16, 32, 32) float32

    def __repr__(self):
        return f"MMGenLatents(task={self.result.task!r}, latents={tuple(self.latents.shape)})"


# ------------------------------------------------------------------------------------ loading
def load_mmgen(ckpt_name: str, ckpt: str, vae: str | None, dtype: str, weight_format: str, load_device):
    """The MMGenPipeline of an MMGen checkpoint, for the UniDiff Loader; the VAE defaults to
    models/vae/sd-vae-ft-mse."""
    from ..unidiff_core.mmgen.pipeline import MMGenPipeline

    if weight_format != "default":
        raise InputError("weight_format", weight_format, "fp8 storage is for OneDiffusion checkpoints",
                         "use 'default' with MMGen")
    if vae is None:
        try:
            vae = host.resolve("vae", DEFAULT_VAE)
        except FileNotFoundError:
            raise InputError("vae_name", host.FROM_CHECKPOINT, "an MMGen checkpoint has no VAE of its own",
                             f"put the diffusers folder of stabilityai/sd-vae-ft-mse into models/vae/{DEFAULT_VAE}/ "
                             "(config.json + diffusion_pytorch_model.safetensors) or pick it") from None
    host.log.info("UniDiff: loading MMGen checkpoint %s (%s) ...", ckpt_name, dtype)
    started = time.perf_counter()
    pipeline = MMGenPipeline.from_pretrained(ckpt, vae=vae, dtype=dtype, device=str(load_device))
    host.log.info("UniDiff: loaded MMGen checkpoint %s in %.1f s", ckpt_name, time.perf_counter() - started)
    return pipeline


# ------------------------------------------------------------------------------------ sampling
def is_mmgen_run(model, text, frames) -> bool:
    """Does the Multi-Frame Sampler run MMGen: an MMGen model, or MMGen nodes connected (then the model is
    checked and named)?"""
    return (getattr(getattr(model, "pipeline", None), "family", None) == "mmgen"
            or isinstance(text, MMGenSpec) or isinstance(frames, MMGenFrame))


def _check_spec(text) -> MMGenSpec:
    if not isinstance(text, MMGenSpec):
        raise ValueError(f"text: an MMGen model takes UniDiff MMGen Task here, got {type(text).__name__} (UniDiff "
                         "Text Encode is for OneDiffusion)")
    return text


def _condition_image(spec: MMGenSpec, frames):
    want = TASKS[spec.task].condition
    if frames is None:
        return None  # the engine names the missing image when the task needs one
    if not isinstance(frames, MMGenFrame):
        raise ValueError(f"frames: an MMGen model takes UniDiff MMGen Modality Frame, got {type(frames).__name__}")
    if want != frames.modality:
        raise ValueError(f"frames: a {frames.modality} image was given but task {spec.task!r} "
                         + (f"takes a {want} image" if want else "takes none")
                         + f"; pick task '{frames.modality}2x' or change the frame")
    return frames.crop


def run_mmgen_sampler(model, text, seed, steps, guidance, width, height, batch_size, frames=None, node_id=None,
                      progress=None, previewer=None, step_cache: float = 0.0) -> MMGenLatents:
    """The Multi-Frame Sampler's run for an MMGen model (same widgets; MMGen is fixed at 256²)."""
    if getattr(model.pipeline, "family", None) != "mmgen":
        raise ValueError(f"model: UniDiff MMGen Task / Modality Frame need an MMGen checkpoint, got {model!r}; "
                         "load MMGen in UniDiff Loader, or use UniDiff Text Encode and the frame nodes")
    spec = _check_spec(text)
    if (int(width), int(height)) not in ((0, 0), (layout.RESOLUTION, layout.RESOLUTION)):
        raise InputError("width/height", (width, height), "MMGen generates 256x256 only", "set both to 0 or 256")
    if float(step_cache) > 0:
        raise InputError("step_cache", step_cache, "the step cache is for OneDiffusion", "set it to 0 with MMGen")
    image = _condition_image(spec, frames)
    pipe = model.ready("transformer", "vae")
    pbar = progress if progress is not None else host.progress_bar(int(steps), node_id=node_id)
    decode = previewer if previewer is not None else host.latent_previewer("SD15")
    max_size = host.preview_size()

    def callback(step, total, latents, denoised):
        preview = None
        if decode is not None:  # the RGB slot of the clean estimate
            tile = decode(denoised[0:1, layout.channels("rgb")].float())
            preview = ("JPEG", tile, max_size) if tile is not None else None
        pbar.update_absolute(step + 1, total, preview)

    try:
        result = pipe.generate(spec.task, image=image, class_label=spec.class_label, steps=int(steps),
                               cfg=max(1.0, float(guidance)), seed=int(seed), batch_size=int(batch_size),
                               t_blend=spec.t_blend, sampler=spec.sampler, callback=callback,
                               interrupt=host.interrupted)
    except Interrupted as e:
        e.__traceback__ = None  # free the sampler's tensors now (see sampler.run_sampler)
        host.soft_empty_cache()
        host.raise_interrupted(e)
    except Exception as e:
        if not host.is_interrupt(e):
            raise
        e.__traceback__ = None
        host.soft_empty_cache()
        raise e
    return MMGenLatents(result)


# ------------------------------------------------------------------------------------ nodes
class UniDiffMMGenTask:
    DESCRIPTION = ("MMGen's task and class: category generates an RGB image, its depth, surface normal and "
                   "segmentation together from an ImageNet class; rgb2x / depth2x / normal2x / mask2x take that "
                   "modality (UniDiff MMGen Modality Frame) and generate the other three. Connect to the "
                   "Multi-Frame Sampler's text input.")
    CATEGORY = SUB
    RETURN_TYPES = (TEXT,)
    RETURN_NAMES = ("task",)
    OUTPUT_TOOLTIPS = ("MMGen task, class label, hold time and sampler, for UniDiff Multi-Frame Sampler.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "task": (["category", "rgb2x", "depth2x", "normal2x", "mask2x"], {
                    "default": "category",
                    "tooltip": "category: class -> all four modalities. rgb2x: photo -> depth, normal, "
                               "segmentation (released checkpoint 0620000). depth2x / normal2x / mask2x: that "
                               "map -> the other three (0600000)."}),
                "class_label": ("STRING", {
                    "default": "none", "dynamicPrompts": False,
                    "tooltip": "ImageNet class: an id 0-999 or a name ('golden retriever'); 'none' or 1000 = no "
                               "class. Guidance compares against 'none', so with 'none' CFG changes nothing."}),
            },
            "optional": {
                "t_blend_start": ("FLOAT", {
                    "default": 0.005, "min": 0.0, "max": 1.0, "step": 0.001, "round": 0.0001,
                    "tooltip": "Time at which the given modality is held (near clean); must be above 0."}),
                "sampler": (list(SAMPLERS), {
                    "default": "sde",
                    "tooltip": "sde: the reference's Euler-Maruyama (default, exact parity; 250 steps in the "
                               "paper). euler / heun / dpmpp_2m: deterministic flow samplers, fewer steps. "
                               "For MMGen this replaces the Multi-Frame Sampler's sampler input."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, class_label=None, t_blend_start=None, task=None):
    
        def check():
            if class_label is not None:
                parse_class_label(class_label)
            if t_blend_start is not None and float(t_blend_start) <= 0 and task != "category":
                raise InputError("t_blend_start", t_blend_start, "must be above 0 (at 0 the sampler divides by "
                                 "zero)", "use a small positive time such as 0.005")

        return message(check)

    def encode(self, task, class_label, t_blend_start=0.005, sampler="sde"):

        return (MMGenSpec(task, parse_class_label(class_label), float(t_blend_start), sampler),)


class UniDiffMMGenFrame:
    DESCRIPTION = ("The given modality for MMGen's rgb2x / depth2x / normal2x / mask2x: an RGB photo, a depth "
                   "map (grey, near = bright), a surface-normal map ((n + 1) / 2 as RGB) or a segmentation (regions "
                   "of flat colours). Centre-cropped to 256x256 as the reference does.")
    CATEGORY = SUB
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The condition for UniDiff Multi-Frame Sampler's frames input.",)
    FUNCTION = "frame"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "One image of the given modality (any size; a batch of several is refused)."}),
            "modality": (list(MODALITIES), {"default": "rgb", "tooltip": "What the image shows; it must match "
                                                                         "the task (rgb for rgb2x, ...)."}),
        }}

    def frame(self, image, modality):
        from PIL import Image

        from ..unidiff_core.common.images import to_uint8
        from ..unidiff_core.mmgen.preprocess import center_crop

        images = image_list(image)
        if len(images) != 1:
            raise InputError("image", f"a batch of {len(images)}", "MMGen takes one given image",
                             "pass a single image (the Sampler's batch_size repeats it)")
        return (MMGenFrame(modality, center_crop(Image.fromarray(to_uint8(images[0])))),)


class UniDiffMMGenDecode:
    DESCRIPTION = ("Decodes MMGen latents into its four modalities: the RGB image, the depth visualisation "
                   "(image and a float map, near = 1), the surface normal and the segmentation (image and the "
                   "mask of one region, 0 = the largest).")
    CATEGORY = SUB
    RETURN_TYPES = ("IMAGE", "IMAGE", "MASK", "IMAGE", "IMAGE", "MASK")
    RETURN_NAMES = ("rgb", "depth", "depth_map", "normal", "segmentation", "region_mask")
    OUTPUT_TOOLTIPS = ("RGB image.", "Depth visualisation (grey, near = bright, relative).",
                       "Depth as a float map 0..1 (near = 1).", "Surface normal as RGB = (n + 1) / 2.",
                       "Segmentation: regions of arbitrary colours.", "Mask of the chosen region.")
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        from ..unidiff_core.mmgen.outputs import DEFAULT_TOLERANCE

        return {
            "required": {
                "model": (MODEL, {"tooltip": "The model that sampled the latents (its VAE decodes them)."}),
                "latents": (LATENTS, {"tooltip": "From UniDiff Multi-Frame Sampler with an MMGen model."}),
            },
            "optional": {
                "region": ("INT", {"default": 0, "min": 0, "max": 255,
                                   "tooltip": "Which segmentation region region_mask shows, by area (0 = largest)."}),
                "tolerance": ("FLOAT", {"default": DEFAULT_TOLERANCE, "min": 0.0, "max": 442.0, "step": 1.0,
                                        "tooltip": "RGB distance within which two colours are one region."}),
            },
        }

    def decode(self, model, latents, region=0, tolerance=None):
        from ..unidiff_core.mmgen.outputs import DEFAULT_TOLERANCE, decode_outputs

        if not isinstance(latents, MMGenLatents):
            raise ValueError(f"latents: expected MMGen latents from UniDiff Multi-Frame Sampler, got "
                             f"{type(latents).__name__}")
        tolerance = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
        key = (int(region), tolerance)
        out = latents.decoded.get(key)
        if out is None:
            pixels = latents.decoded.get("pixels")
            if pixels is None:
                pixels = latents.decoded["pixels"] = model.ready("vae").decode(latents.latents)
            out = latents.decoded[key] = decode_outputs(pixels, region=int(region), tolerance=tolerance)
        dev = host.intermediate_device()
        return tuple(t.float().contiguous().to(dev) for t in (
            out.images["rgb"], out.images["depth"], out.depth, out.images["normal"], out.images["mask"], out.mask))
