"""Image preprocessing as the reference pipeline does it: aspect-ratio buckets, centre crop, resize.

Images enter as PIL images or float tensors (H, W, 3) / (3, H, W) in 0..1 and leave as a
(N, 3, H, W) float32 batch in -1..1, ready for the VAE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..common import checks

# ASPECT_RATIO_512 of the reference: height/width ratio -> (height, width), keys ascending.
ASPECT_RATIO_512 = {
    0.25: (256, 1024), 0.26: (256, 992), 0.27: (256, 960), 0.28: (256, 928), 0.32: (288, 896),
    0.33: (288, 864), 0.35: (288, 832), 0.4: (320, 800), 0.42: (320, 768), 0.48: (352, 736),
    0.5: (352, 704), 0.52: (352, 672), 0.57: (384, 672), 0.6: (384, 640), 0.68: (416, 608),
    0.72: (416, 576), 0.78: (448, 576), 0.82: (448, 544), 0.88: (480, 544), 0.94: (480, 512),
    1.0: (512, 512), 1.07: (512, 480), 1.13: (544, 480), 1.21: (544, 448), 1.29: (576, 448),
    1.38: (576, 416), 1.46: (608, 416), 1.67: (640, 384), 1.75: (672, 384), 2.0: (704, 352),
    2.09: (736, 352), 2.4: (768, 320), 2.5: (800, 320), 2.89: (832, 288), 3.0: (864, 288),
    3.11: (896, 288), 3.62: (928, 256), 3.75: (960, 256), 3.88: (992, 256), 4.0: (1024, 256),
}



def bucket_size(height: int, width: int) -> tuple[int, int]:
    """The ~512² bucket (height, width) whose ratio is closest to height/width (first wins ties)."""
    ratio = height / width
    key = min(ASPECT_RATIO_512, key=lambda r: abs(r - ratio))
    return ASPECT_RATIO_512[key]


def check_size(height: int, width: int) -> None:
    """The engine's height/width keywords: the size rule of checks.size (positive multiples of 16)."""
    checks.size("height", height, high=None, keyword=True)
    checks.size("width", width, high=None, keyword=True)


def image_size(image) -> tuple[int, int]:
    """(height, width) of a PIL image, an image tensor or an array."""
    if hasattr(image, "size") and not isinstance(image, (torch.Tensor, np.ndarray)):  # PIL: size = (w, h)
        w, h = image.size
        return h, w
    t = to_chw_tensor(image)
    return t.shape[-2], t.shape[-1]


def to_chw_tensor(image) -> torch.Tensor:
    """PIL (converted to RGB, alpha dropped like the reference) or tensor -> (3, H, W) float32 in 0..1."""
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3:
            raise ValueError(f"image tensor must be (H, W, 3) or (3, H, W), got shape {tuple(image.shape)}")
        if t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):
            t = t.permute(2, 0, 1)
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        return t[:3].contiguous()
    if isinstance(image, np.ndarray):
        return to_chw_tensor(torch.from_numpy(image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)))
    array = np.array(image.convert("RGB"))
    return torch.from_numpy(array).permute(2, 0, 1).float().div(255)


def crop_box(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) of the centre crop to the target aspect, truncated like the reference."""
    h, w = float(height), float(width)
    aspect = target_w / target_h
    if w / h > aspect:
        crop_h, crop_w = h, h * aspect
    else:
        crop_h, crop_w = w / aspect, w
    return int((h - crop_h) / 2), int((w - crop_w) / 2), int(crop_h), int(crop_w)


def check_crops(image_sizes, height: int, width: int) -> None:
    """Each image (height, width) must keep at least one pixel in its centre crop to the output aspect."""
    from ..common.errors import InputError

    for i, (ih, iw) in enumerate(image_sizes):
        _, _, crop_h, crop_w = crop_box(ih, iw, height, width)
        if crop_h < 1 or crop_w < 1:
            raise InputError("width/height", f"{width}x{height}", f"the centre crop of image {i} ({iw}x{ih}) to "
                             f"this aspect ratio keeps no pixel ({crop_w}x{crop_h})",
                             "use an output size closer to the image's aspect ratio, a larger image, or crop "
                             "off (the image is then stretched)")


def center_crop_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop (3, h, w) to the target aspect around the centre, then bilinear resize (no antialias)."""
    top, left, crop_h, crop_w = crop_box(image.shape[1], image.shape[2], height, width)
    cropped = image[:, top:top + crop_h, left:left + crop_w]
    return F.interpolate(cropped[None], size=(height, width), mode="bilinear", align_corners=False)[0]


def preprocess_images(images, height: int, width: int, crop: bool = True,
                      reference_bright_quirk: bool = False) -> torch.Tensor:
    """List of images -> (N, 3, height, width) in -1..1.

    crop=False resizes without keeping the aspect (bilinear with antialias, as the reference's
    do_crop=False). reference_bright_quirk reproduces a reference bug: when every pixel of the whole
    batch is >= 128 the batch is normalised a second time (2x-1). Off by default.
    """
    out = []
    for image in images:
        t = to_chw_tensor(image)
        if crop:
            t = center_crop_resize(t, height, width)
        else:
            t = F.interpolate(t[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)[0]
        out.append((t - 0.5) / 0.5)
    batch = torch.stack(out)
    if reference_bright_quirk and batch.min() >= 0:
        batch = 2.0 * batch - 1.0
    return batch
