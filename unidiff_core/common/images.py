"""Image and mask conversions shared by every family: PIL / tensor / array in, numpy out.

Images: PIL images, float tensors or arrays in 0..1 ((H, W, 3), (3, H, W) or a batch of one), or
uint8 arrays. Masks: (H, W) (or (1, H, W)), 1 = the region (ComfyUI MASK convention).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .errors import InputError

MASK_THRESHOLD = 0.5  # soft masks are binarised: > 0.5 = inside


def to_uint8(image, name: str = "image") -> np.ndarray:
    """PIL / float tensor or array in 0..1 (H, W, 3) or (3, H, W) / uint8 array -> (H, W, 3) uint8."""
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise InputError(name, type(image).__name__, "not an image", "give a PIL image, tensor or array")
    array = image
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3:
        raise InputError(name, f"shape {array.shape}", "not an image", "give (H, W, 3) or (3, H, W)")
    if array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    return np.ascontiguousarray((np.clip(array.astype(np.float32), 0, 1) * 255).round().astype(np.uint8))


def to_float(image, name: str = "image") -> np.ndarray:
    """Any image -> (H, W, 3) float32 0..1 (float input keeps its values, no uint8 rounding)."""
    if isinstance(image, torch.Tensor) and image.dtype.is_floating_point:
        array = image.detach().float().cpu().numpy()
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = np.repeat(array, 3, axis=-1)
        if array.ndim == 3:
            return np.ascontiguousarray(array[..., :3], dtype=np.float32)
    if isinstance(image, np.ndarray) and image.dtype != np.uint8 and image.ndim == 3 and image.shape[-1] == 3:
        return image.astype(np.float32)
    return to_uint8(image, name).astype(np.float32) / 255.0


def image_hw(image) -> tuple[int, int]:
    """(height, width) of a PIL image, tensor or array."""
    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    return to_uint8(image).shape[:2]


def mask_array(mask, size: tuple[int, int] | None = None, name: str = "mask") -> np.ndarray:
    """A mask (PIL 'L'/RGB, tensor or array, (H, W) or (1, H, W); values 0..1 or 0..255) -> float32 (H, W).

    size = (H, W) the mask must have; a different size is an error naming both sizes.
    """
    if isinstance(mask, Image.Image):
        array = np.array(mask.convert("L"), dtype=np.float32) / 255.0
    else:
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().float().cpu().numpy()
        array = np.asarray(mask)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        array = array.astype(np.float32)
        while array.ndim > 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
            array = array[..., 0]
        if array.ndim != 2:
            raise InputError(name, f"shape {tuple(np.shape(mask))}", "not a (H, W) mask", "give one (H, W) mask")
    if size is not None and tuple(array.shape) != tuple(size):
        raise InputError(name, tuple(array.shape), f"size {array.shape[1]}x{array.shape[0]} (WxH) does not match the "
                         f"image {size[1]}x{size[0]}", "resize the mask to the image first")
    return np.clip(array, 0.0, 1.0)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) float mask -> (H, W), bilinear (a scaled copy of an image's mask, resized to the image)."""
    if tuple(mask.shape) == tuple(size):
        return mask
    resized = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None], size=tuple(size), mode="bilinear",
                                              align_corners=False)
    return resized[0, 0].clamp(0, 1).numpy()
