"""UniDiffLoader: a checkpoint from models/unidiff/, optional VAE / T5 overrides, kept loaded between runs."""

from __future__ import annotations

import os
import time

from ..unidiff_core.families import family_of
from . import host
from .common import CATEGORY, MODEL

DTYPES = ["auto", "bf16", "fp16", "fp32"]

# (checkpoint, vae, text encoder, dtype, device, file stamps) -> UniDiffModel. At most one entry: a second
# checkpoint replaces the first, so two huge models never sit in RAM because of this cache.
_CACHE: dict = {}


class UniDiffModel:
    """The UNIDIFF_MODEL value: the engine pipeline plus one memory-managed part per module it exposes
    (`pipeline.modules()`: any family's pipeline names its own parts)."""

    def __init__(self, pipeline, name: str, dtype: str, load_device, offload_device):
        self.pipeline = pipeline
        self.name = name
        self.dtype = dtype
        self.parts = {name: host.ManagedPart(name, module, load_device, offload_device)
                      for name, module in pipeline.modules().items()}

    def ready(self, *names: str):
        """Make these parts ready on the compute device (ComfyUI evicts or partially offloads other models
        first, and may load a streaming part partially); returns the pipeline."""
        host.load_parts([self.parts[n] for n in names])
        return self.pipeline

    def derived(self, name: str, pipeline=None, **parts) -> "UniDiffModel":
        """A new model value that shares everything but `pipeline` and the given `parts` (UniDiff LoRA's clone)."""
        import copy

        clone = copy.copy(self)
        clone.name = name
        clone.pipeline = pipeline if pipeline is not None else self.pipeline
        clone.parts = {**self.parts, **parts}
        return clone

    def __repr__(self):  # ComfyUI prints inputs of a failed node with str()
        return f"UniDiffModel({self.name!r}, {self.dtype})"


def _stamp(path: str):
    """Changes when the files change (a re-downloaded checkpoint is reloaded)."""
    if path is None:
        return None
    if os.path.isfile(path):
        st = os.stat(path)
        return (st.st_size, st.st_mtime_ns)
    stamps = []
    for root, _, files in host.walk(path, path):  # bounded: a symlink loop is skipped
        for f in files:
            if f.endswith((".safetensors", ".json", ".model")):
                st = os.stat(os.path.join(root, f))
                stamps.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(stamps))


def _weight_bytes(*paths) -> int:
    total = 0
    for path in paths:
        if path is None:
            continue
        if os.path.isfile(path):
            total += os.path.getsize(path)
            continue
        for root, _, files in host.walk(path, path):  # bounded: a symlink loop is skipped
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f.endswith(".safetensors"))
    return total


WEIGHT_FORMATS = ["default", "fp8_e4m3"]


def load_model(ckpt_name: str, vae_name: str = host.FROM_CHECKPOINT, text_encoder_name: str = host.FROM_CHECKPOINT,
               dtype: str = "auto", weight_format: str = "default") -> UniDiffModel:
    """Resolve the names in ComfyUI's model folders, load (or reuse) the pipeline."""
    from ..unidiff_core.common.errors import Interrupted
    from ..unidiff_core.onediffusion.loading import preflight
    from ..unidiff_core.onediffusion.pipeline import UniDiffPipeline, check_dtype_on_device, parse_dtype

    ckpt = host.resolve(host.MODEL_FOLDER, ckpt_name)
    vae = None if vae_name in (None, "", host.FROM_CHECKPOINT) else host.resolve("vae", vae_name)
    t5 = None if text_encoder_name in (None, "", host.FROM_CHECKPOINT) else host.resolve("text_encoders", text_encoder_name)
    load_device = host.torch_device()
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    resolved = host.auto_dtype(load_device) if dtype == "auto" else dtype
    check_dtype_on_device(parse_dtype(resolved), load_device)
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight_format {weight_format!r} is not one of {', '.join(WEIGHT_FORMATS)}")
    key = (ckpt, vae, t5, resolved, weight_format, str(load_device), _stamp(ckpt), _stamp(vae), _stamp(t5))
    if key in _CACHE:
        return _CACHE[key]
    if family_of(ckpt).name == "mmgen":  # its own parts: the SiT and the SD VAE, no text encoder
        from .mmgen import load_mmgen

        _CACHE.clear()
        host.soft_empty_cache()
        pipeline = load_mmgen(ckpt_name, ckpt, vae, resolved, weight_format, load_device)
        _CACHE[key] = UniDiffModel(pipeline, ckpt_name, resolved, load_device, host.offload_device())
        return _CACHE[key]
    tokenizer = _tokenizer_for(t5, ckpt)
    # A bad checkpoint (pickle, truncated, wrong config, missing folder) fails here, before the loaded model
    # is dropped: the next prompt with the good one does not reload it.
    preflight(ckpt, vae=vae, text_encoder=t5, tokenizer=tokenizer)
    _CACHE.clear()  # drop the previous model before loading the next one
    host.soft_empty_cache()
    torch_dtype = parse_dtype(resolved)
    device = host.initial_load_device(load_device, _weight_bytes(ckpt, vae, t5), torch_dtype)
    host.log.info("UniDiff: loading checkpoint %s (%s) ...", ckpt_name, resolved)
    started = time.perf_counter()
    # ComfyUI's layer classes and attention: its ModelPatcher can then load the transformer partially.
    operations = host.operations(UniDiffPipeline.OPERATIONS, torch_dtype, torch_dtype)
    try:  # Cancel stops the load between tensors
        pipeline = UniDiffPipeline.from_pretrained(ckpt, dtype=resolved, device=device, vae=vae, text_encoder=t5,
                                                   tokenizer=tokenizer,
                                                   weight_dtype="fp8" if weight_format == "fp8_e4m3" else None,
                                                   operations=operations, attention=host.attention(),
                                                   interrupt=host.interrupted)
    except Interrupted as e:
        host.soft_empty_cache()
        host.raise_interrupted(e)
    model = UniDiffModel(pipeline, ckpt_name, resolved, load_device, host.offload_device())
    _CACHE[key] = model
    host.log.info("UniDiff: loaded checkpoint %s in %.1f s", ckpt_name, time.perf_counter() - started)
    return model


def _has_tokenizer(folder: str) -> bool:
    return any(os.path.exists(os.path.join(folder, n)) for n in ("spiece.model", "tokenizer.json"))


def _tokenizer_for(t5: str | None, ckpt: str) -> str | None:
    """A separate T5 folder without tokenizer files borrows the checkpoint's tokenizer/ (T5 models share
    one vocabulary); None lets the engine pick (the checkpoint's own, or the T5 folder)."""
    if t5 is None:
        return None
    if _has_tokenizer(t5):
        return t5
    base = ckpt if os.path.isdir(ckpt) else os.path.dirname(ckpt)
    candidate = os.path.join(base, "tokenizer")
    return candidate if _has_tokenizer(candidate) else None


def clear_cache() -> None:
    _CACHE.clear()


class UniDiffLoader:
    DESCRIPTION = ("Loads a OneDiffusion checkpoint from models/unidiff/ (a diffusers-layout folder, or a single "
                   "transformer .safetensors with the VAE and T5 picked below), or an MMGen checkpoint (its released "
                   ".pt, a converted folder or EMA .safetensors; the SD VAE from models/vae/, sd-vae-ft-mse by "
                   "default). It stays loaded between runs; ComfyUI offloads it when other models need the GPU, and "
                   "loads the OneDiffusion transformer partially (streaming the rest) when VRAM is short.")
    CATEGORY = CATEGORY + "/loaders"
    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The OneDiffusion model (transformer, T5 text encoder, SD3 VAE).",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        host.register_model_folder()
        return {
            "required": {
                "ckpt_name": (host.list_checkpoints(), {
                    "tooltip": "A folder in models/unidiff/ with transformer/, vae/, text_encoder/, tokenizer/ "
                               "(the released OneDiffusion layout), or a single transformer .safetensors file."}),
                "vae_name": (host.list_vaes(), {
                    "default": host.FROM_CHECKPOINT,
                    "tooltip": "The SD3 VAE (16 channels) from models/vae/, e.g. the sd3 VAE .safetensors you "
                               "already have; '(from checkpoint)' uses the checkpoint's vae/ folder."}),
                "text_encoder_name": (host.list_text_encoders(), {
                    "default": host.FROM_CHECKPOINT,
                    "tooltip": "A T5-XL encoder folder (config.json, model.safetensors and the tokenizer) from "
                               "models/text_encoders/; '(from checkpoint)' uses text_encoder/ and tokenizer/."}),
                "dtype": (DTYPES, {
                    "default": "auto",
                    "tooltip": "Weights and compute precision of the transformer and T5. auto: bf16 on GPUs "
                               "that run it, else fp16; fp32 on the CPU (fp16 is not supported there). "
                               "The VAE always runs in fp32."}),
            },
            "optional": {
                "weight_format": (WEIGHT_FORMATS, {
                    "default": "default",
                    "tooltip": "default: transformer weights stored in the dtype above. fp8_e4m3: stored in "
                               "fp8 (about half the memory of bf16) and upcast one layer at a time, at a small "
                               "quality cost (see docs/performance.md)."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, dtype=None):
        """The dtype combo, and that this device runs it (fp16 is refused on the CPU) - before queueing.
        ckpt_name & co. stay ComfyUI's combo checks (a name outside models/ is not in the list)."""
        from ..unidiff_core.onediffusion import validation

        def check():
            validation.choice("dtype", dtype, DTYPES)
            if dtype != "auto":
                validation.dtype_on_device(dtype, host.torch_device())

        return True if dtype is None else validation.message(check)

    def load(self, ckpt_name, vae_name, text_encoder_name, dtype, weight_format="default"):
        return (load_model(ckpt_name, vae_name, text_encoder_name, dtype, weight_format),)
