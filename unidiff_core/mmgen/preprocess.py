"""Condition images -> the model's 256² pixels, as MMGen's data pipeline prepares them.

Bit-exact parity needs Pillow's BOX halving and BICUBIC resize (other resizers differ), Python's round for
the resized size and a floor-centred crop.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .layout import RESOLUTION


def center_crop(image: Image.Image, size: int = RESOLUTION) -> np.ndarray:
    """RGB image -> (size, size, 3) uint8: halve with BOX while the short side is >= 2*size, resize the short
    side to size with BICUBIC, crop the centre."""
    image = image.convert("RGB")  # grey depth -> R=G=B; alpha dropped
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return np.ascontiguousarray(arr[top:top + size, left:left + size])


def to_model_pixels(crops: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 crops -> (N, 3, H, W) float32 in [-1, 1]: x / 255, then (x - 0.5) / 0.5."""
    pixels = torch.stack([torch.from_numpy(np.array(c)).permute(2, 0, 1).float().div(255) for c in crops])
    half = torch.tensor(0.5)
    return pixels.sub_(half).div_(half)
