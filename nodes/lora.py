"""UniDiffLoRA: a LoRA from models/loras/ applied to a UniDiff model, as a new model value (the loaded one stays).

Inside ComfyUI the transformer's ModelPatcher is cloned and the LoRA added as weight patches (ComfyUI's way:
it patches the weights when it loads them for this model, and manages the memory); outside ComfyUI the LoRA
is merged into a copy of the transformer. The file is read and checked against the transformer by the core
(`unidiff_core/onediffusion/lora.py`).
"""

from __future__ import annotations

import copy

from ..unidiff_core.common import checks
from ..unidiff_core.common.errors import InputError
from . import host
from .common import CATEGORY, MODEL, validate


def apply_lora(model, lora_name: str, strength: float):
    """The model with this LoRA at `strength` (0 = the model's results exactly)."""
    from ..unidiff_core.onediffusion.lora import load_lora, merge_loras

    strength = checks.lora_strength(strength)
    if getattr(model.pipeline, "family", None) == "mmgen":
        raise InputError("model", model.name, "is an MMGen model", "UniDiff LoRAs apply to OneDiffusion checkpoints")
    transformer = model.pipeline.transformer
    lora = load_lora(host.resolve("loras", lora_name), transformer)
    name = f"{model.name} + {lora.name}@{strength:g}"
    if strength == 0:  # nothing to add: the same weights, bit for bit
        return model.derived(name)
    patched = host.with_lora(model.parts["transformer"], lora.weights, lora.alpha, strength)
    if patched is not None:
        return model.derived(name, transformer=patched)
    pipeline = copy.copy(model.pipeline)  # shares the VAE and the text encoder; the transformer is a merged copy
    pipeline.transformer = merge_loras(copy.deepcopy(transformer), [(lora, strength)])
    part = model.parts["transformer"]
    return model.derived(name, pipeline, transformer=host.ManagedPart(part.name, pipeline.transformer,
                                                                        part.load_device, part.offload_device))


class UniDiffLoRA:
    DESCRIPTION = ("Applies a UniDiff LoRA (from models/loras/, written by python -m training.train --lora-rank R) "
                   "to the transformer of a UniDiff model. Returns a new model; the loaded one is unchanged, so "
                   "workflows can run with and without the LoRA side by side. Chain several for several LoRAs.")
    CATEGORY = CATEGORY + "/loaders"
    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model with the LoRA applied (for the Sampler and the decoders).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "From UniDiff Loader (or another UniDiff LoRA)."}),
                "lora_name": (host.list_loras(), {
                    "tooltip": "A UniDiff LoRA .safetensors in models/loras/, trained for this checkpoint "
                               "(its layers and sizes are checked against the transformer)."}),
                "strength": ("FLOAT", {
                    "default": 1.0, "min": -checks.MAX_LORA_STRENGTH, "max": checks.MAX_LORA_STRENGTH, "step": 0.05,
                    "tooltip": "How much of the LoRA to add: 1 = as trained, 0 = off (the model's results "
                               "exactly), in between or above scales the change."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, strength=None):
        return validate(cls, strength=strength)  # ComfyUI's min/max check lets NaN through

    def apply(self, model, lora_name, strength):
        return (apply_lora(model, lora_name, strength),)
