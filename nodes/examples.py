"""UniDiffExampleImage: loads the small input images shipped with the example workflows.

The workflows use it so that they run as-is on a fresh ComfyUI (nothing to copy into input/);
replace it with Load Image to use your own pictures. The files live in example_workflows/inputs/ (the
UniDiff-Mini twins' in inputs/mini/).
"""

from __future__ import annotations

import os

from .common import CATEGORY

INPUTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_workflows", "inputs")


def example_names() -> list[str]:
    """Picture files of inputs/ and of its subfolders ('mini/text2image.png': the UniDiff-Mini twins' inputs)."""
    names = []
    for folder, _dirs, files in os.walk(INPUTS_DIR):
        rel = os.path.relpath(folder, INPUTS_DIR)
        for f in files:
            if f.lower().endswith((".png", ".jpg", ".jpeg", ".webp")):
                names.append(f if rel == "." else f"{rel.replace(os.sep, '/')}/{f}")
    return sorted(names)


def load_example(name: str):
    """-> (IMAGE (1, H, W, 3), MASK (1, H, W)): mask = 1 - alpha like Load Image (zeros without alpha)."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    if name not in example_names():
        raise ValueError(f"image {name!r} is not one of the pack's example images: {', '.join(example_names())}")
    with Image.open(os.path.join(INPUTS_DIR, name)) as im:
        im = ImageOps.exif_transpose(im)
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        if "A" in im.getbands():
            mask = 1.0 - np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        else:
            mask = np.zeros(rgb.shape[:2], dtype=np.float32)
    return torch.from_numpy(rgb)[None], torch.from_numpy(mask)[None]


class UniDiffExampleImage:
    DESCRIPTION = ("One of the small example inputs shipped with the pack's workflows (no copying into "
                   "ComfyUI's input folder). Swap it for Load Image to use your own picture.")
    CATEGORY = CATEGORY + "/utils"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = ("The image (RGB).", "1 - alpha, like Load Image (the region to repaint in the inpainting "
                                           "example); zeros when the file has no alpha.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        names = example_names()
        return {"required": {"image": (names, {"default": names[0] if names else "",
                                               "tooltip": "A file of the pack's example_workflows/inputs/ folder."})}}

    def load(self, image):
        return load_example(image)
