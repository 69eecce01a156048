"""Type names, categories and the ComfyUI tensor conventions shared by the node modules.

IMAGE: float32 (B, H, W, 3) in 0..1 on the CPU. MASK: float32 (B, H, W) in 0..1 (an (H, W) mask is
accepted). The engine takes single images as (H, W, 3) tensors in 0..1 and masks as (H, W) arrays.
"""

from __future__ import annotations

from ..unidiff_core.common import checks

CATEGORY = "UniDiff"
MODEL = "UNIDIFF_MODEL"
TEXT = "UNIDIFF_TEXT"
FRAMES = "UNIDIFF_FRAMES"
LATENTS = "UNIDIFF_LATENTS"


def check_image(image, name: str = "image"):
    """A ComfyUI IMAGE (B, H, W, C>=3) -> float32 (B, H, W, 3) on the CPU; clear error otherwise."""
    import torch

    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] < 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{name}: expected a ComfyUI IMAGE (batch, height, width, 3), got {shape}")
    return image[..., :3].detach().float().cpu()


def image_list(image, name: str = "image") -> list:
    """IMAGE batch -> list of (H, W, 3) tensors, one per batch item."""
    image = check_image(image, name)
    return [image[i] for i in range(image.shape[0])]


def check_mask(mask, name: str = "mask"):
    """A ComfyUI MASK (B, H, W) or (H, W) -> float32 (B, H, W) on the CPU."""
    import torch

    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{name}: expected a ComfyUI MASK (batch, height, width), got {shape}")
    mask = mask.detach().float().cpu()
    return mask[None] if mask.ndim == 2 else mask


def to_image(value):
    """One picture -> IMAGE (1, H, W, 3): a PIL image, a uint8/float array or a float tensor (H, W, 3) in 0..1."""
    import numpy as np
    import torch

    if not isinstance(value, (torch.Tensor, np.ndarray)):  # PIL
        value = np.asarray(value.convert("RGB"))
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value.astype(np.float32) / (255.0 if value.dtype == np.uint8 else 1.0))
    t = value.detach().float().cpu()
    if t.ndim == 3:
        t = t[None]
    return t[..., :3].clamp(0, 1).contiguous()


# ------------------------------------------------------------------------------------ VALIDATE_INPUTS
def widget_checks(cls, **values) -> None:
    """ComfyUI's own checks (combo, min/max) of the widgets a node validates itself: declaring an input in
    VALIDATE_INPUTS turns ComfyUI's checks off for it. None = linked (checked when the node runs)."""
    spec = cls.INPUT_TYPES()
    declared = {**spec.get("required", {}), **spec.get("optional", {})}
    for name, value in values.items():
        if value is None:
            continue
        kind = declared[name][0]
        opts = declared[name][1] if len(declared[name]) > 1 else {}
        if isinstance(kind, list):
            checks.choice(name, value, kind)
        elif kind in ("INT", "FLOAT"):
            checks.number(name, value, opts.get("min"), opts.get("max"), integer=kind == "INT")


def validate(cls, check=None, **values):
    """The VALIDATE_INPUTS answer: True, or the message of the first failed check (ComfyUI shows it in
    node_errors as `custom_validation_failed` and POST /prompt answers 400)."""
    def run():
        widget_checks(cls, **values)
        if check is not None:
            check()

    return checks.message(run)
