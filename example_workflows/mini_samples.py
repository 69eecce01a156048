"""The held-out scenes the UniDiff-Mini twin workflows show: one per OneDiffusion example workflow.

Each twin runs the evaluator's first held-out sample of its task (training.evaluate: seed
`seeds_for(task, 1)[0]`, noise seed 0, 20 Euler steps, its guidance, negative prompt ""), so a twin's
output can be scored with the evaluator's own metric and compared with the command-line path.
make_inputs.py writes the sample's given pictures to inputs/mini/, make_workflows.py the graphs.

A generator script, not pack code: the pack's nodes and core never import training/.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import replace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PACK = os.path.dirname(HERE)
if PACK not in sys.path:  # training/ and unidiff_core/ are top-level packages of the checkout
    sys.path.insert(0, PACK)

from training.data import make_sample  # noqa: E402
from training.evaluate import TEXT_TASKS, seeds_for  # noqa: E402

CHECKPOINT = "UniDiff-Mini"
STEPS = 20  # the evaluator's
INPUT_DIR = "mini"  # inputs/mini/
MULTIVIEW_VIEWS = 4  # the evaluator's view count for the multi-view tasks

# Twin workflow -> (the OneDiffusion workflow it mirrors, the data task whose held-out sample it shows).
# The free-form twin runs the combination Mini was trained on (photo -> depth + semantic map) instead of
# text -> image + depth.
TWINS = {f"mini_{name}": (name, name) for name in (
    "text2image", "inpainting", "deblurring", "image_editing", "faceid", "subject_driven", "depth2image",
    "image2depth", "canny2image", "image2canny", "hed2image", "image2hed", "pose2image", "image2pose",
    "semanticmap2image", "image2semanticmap", "boundingbox2image", "image2boundingbox", "image2multiview",
    "text2multiview", "camera_estimation")}
TWINS["mini_custom_depth_and_semantic"] = ("custom_image_and_depth", "freeform_depth_semantic")


def guidance(twin: str) -> float:
    """The evaluator's rule: guidance where text is the main input (TEXT_TASKS), none elsewhere."""
    return TEXT_TASKS.get(TWINS[twin][1], 1.0)


def sample(twin: str):
    """The held-out TrainSample a twin shows (the evaluator's sample 0 of its data task)."""
    task = TWINS[twin][1]
    views = MULTIVIEW_VIEWS if task in ("image2multiview", "text2multiview") else None  # as the evaluator draws
    return make_sample(task, seeds_for(task, 1)[0], 64, views=views)


def to_uint8(image) -> np.ndarray:
    """A 0..1 picture (or an 8-bit one, e.g. PIL) as the PNG input stores it (rounded to 8 bits)."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    return np.round(np.clip(array.astype(np.float32), 0, 1) * 255).astype(np.uint8)


def as_png_values(image) -> np.ndarray:
    """What UniDiff Example Image reads back from that PNG (uint8 / 255)."""
    return to_uint8(image).astype(np.float32) / 255.0


def given_images(twin: str) -> dict[str, np.ndarray]:
    """{input file name (under inputs/mini/): uint8 RGB or RGBA picture} of a twin's given frames."""
    s, name = sample(twin), twin[len("mini_"):]
    task, given, req = s.task, s.frame_values(), s.request
    if task == "inpainting":  # the photo with a transparent hole (Load Image's MASK = 1 - alpha)
        alpha = np.where(s.truth["mask"] > 0.5, 0, 255).astype(np.uint8)
        return {f"{name}.png": np.dstack([to_uint8(s.targets[0]), alpha])}
    if task == "subject_driven":
        return {f"{name}_reference.png": to_uint8(req.frames[1].image)}
    if task == "faceid":  # frames 1..n: the references
        return {f"{name}_reference{n}.png": to_uint8(f.image) for n, f in enumerate(req.frames[1:], 1)}
    if task == "camera_estimation":
        return {f"{name}_view0.png": to_uint8(given[0]), f"{name}_view1.png": to_uint8(given[2])}
    if task in ("image2multiview",):
        return {f"{name}_view0.png": to_uint8(given[0])}
    if task in ("text2image", "text2multiview"):
        return {}
    index = next(i for i, f in enumerate(req.frames) if f.image is not None)
    return {f"{name}.png": to_uint8(given[index])}


TOKEN = re.compile(r"\[\[[^\]]*\]\]|<[^>]*>")  # [[task]] / [[img0]] and <colour / item> tokens


IMG = re.compile(r"\[\[img\d+\]\]")


def caption(s) -> str:
    """The free text of a sample's prompt (what the text node's prompt widget holds; the sampler adds the
    tokens back). faceid / subject_driven: the target caption, between [[img0]] and [[img1]]."""
    prompt = s.request.prompt
    if "[[img1]]" in prompt:
        prompt = IMG.split(prompt)[1]
    return " ".join(TOKEN.sub(" ", prompt).split())


def reference_captions(s) -> list[str]:
    """faceid / subject_driven: each reference's caption (after [[img1]], [[img2]], ...)."""
    return [" ".join(part.split()) for part in IMG.split(s.request.prompt)[2:]]


def input_name(file: str) -> str:
    """The Example Image node's name for a file of inputs/mini/."""
    return f"{INPUT_DIR}/{file}"


def labels_text(labels) -> str:
    """ColorLabels -> the text node's labels widget, colours pinned ('square=#FF0000, circle=#00FF00')."""
    return ", ".join(f"{lab.label}={lab.hex}" for lab in labels)


def numbers_text(values) -> str:
    """Camera angles for the Multi-View Cameras widgets: exact (repr) so the rays equal the sample's."""
    return ", ".join("none" if v is None else repr(float(v)) for v in values)


def _float_picture(image) -> bool:
    """A float picture to round; None and 8-bit ones (PIL: the inpainting condition) stay as they are."""
    return image is not None and np.asarray(image).dtype != np.uint8


def png_sample(twin: str):
    """The twin's sample with its given pictures as the PNG inputs hold them (8-bit), i.e. exactly what
    the workflow feeds the sampler; ground truth untouched. The command-line side of the comparison."""
    s = sample(twin)
    frames = [replace(f, image=as_png_values(f.image)) if _float_picture(f.image) else f for f in s.request.frames]
    return replace(s, request=replace(s.request, frames=frames))
