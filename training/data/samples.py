"""Task samples: a scene turned into one request of the pack's task table plus its ground truth.

Every sample is built by the pack's own `build_request` (or `freeform_request`), so its prompt and
frame layout are exactly what inference sends for that task. The ground truth fills the generated
frames (`targets`); `truth` keeps what the metrics need (masks, boxes, keypoints, cameras, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from unidiff_core.onediffusion import conditions
from unidiff_core.onediffusion.requests import TaskInputs, TaskRequest, join_prompt
from unidiff_core.onediffusion.tasks import build_request, freeform_request

from . import maps
from .faces import pose_caption, render_portrait, sample_identity, sample_pose
from .figure import figure_caption, pose_map, render_figure, sample_figure
from .objects3d import object_caption, render_view, sample_object
from .scenes import (COLORS, SHAPES, Scene, Shape, caption, describe_shape, object_colors, random_shape, render,
                     rng_for, sample_scene)

MULTIVIEW_DISTANCE = 1.5


@dataclass
class TrainSample:
    task: str
    request: TaskRequest
    targets: dict[int, Any]  # generated frame index -> (H, W, 3) float32 image or (16, h, w) ray latent
    truth: dict = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        return self.request.prompt

    def frame_values(self) -> list:
        """Per frame: the given image/latent, or the target of a generated frame."""
        out = []
        for i, f in enumerate(self.request.frames):
            if i in self.targets:
                out.append(self.targets[i])
            else:
                out.append(f.latent if f.latent is not None else np.asarray(f.image, dtype=np.float32)
                           / (255.0 if np.asarray(f.image).dtype == np.uint8 else 1.0))
        return out


def _maybe(rng, text: str, p: float = 0.5) -> str:
    return text if rng.random() < p else ""


def _request(task, size, **kw):
    return build_request(task, TaskInputs(height=size, width=size, **kw))


# ------------------------------------------------------------------------------ image tasks
def text2image(seed, size):
    scene = sample_scene(seed)
    r = render(scene, size)
    req = _request("text2image", size, caption=caption(scene))
    return TrainSample("text2image", req, {0: r.image}, {"scene": scene, "rendered": r})


def inpainting(seed, size):
    scene, rng = sample_scene(seed), rng_for(seed, "inpaint")
    r = render(scene, size)
    mask = np.zeros((size, size), np.float32)
    # A box anywhere, not mostly over an object: trained on object boxes, the model learnt to paint an object
    # into every hole, and lost to a mean-colour fill on holes over the background (docs/training.md).
    cx, cy, half = *(rng.uniform(0.25, 0.75, 2) * size), rng.uniform(0.1, 0.25) * size
    y0, y1 = int(max(0, cy - half)), int(min(size, cy + half))
    x0, x1 = int(max(0, cx - half)), int(min(size, cx + half))
    mask[y0:y1, x0:x1] = 1.0
    req = _request("inpainting", size, image=r.image, mask=mask, caption=_maybe(rng, caption(scene)))
    return TrainSample("inpainting", req, {0: r.image}, {"scene": scene, "mask": mask, "rendered": r})


def deblurring(seed, size):
    scene, rng = sample_scene(seed), rng_for(seed, "blur")
    r = render(scene, size)
    # At 64x64 the pixel codec itself keeps about what a 1-2 px blur keeps, so milder blurs could not be undone
    # by any model with that codec: blur harder than its resolution.
    sigma = float(rng.uniform(2.0, 4.0))
    req = _request("deblurring", size, image=maps.blurred(r.image, sigma), caption=_maybe(rng, caption(scene)))
    return TrainSample("deblurring", req, {0: r.image}, {"scene": scene, "sigma": sigma})


EDIT_KINDS = ("recolour", "remove", "move", "add")
DIRECTIONS = {"left": (-0.3, 0.0), "right": (0.3, 0.0), "top": (0.0, -0.3), "bottom": (0.0, 0.3)}


def edit_pair(seed) -> tuple[Scene, Scene, str, str, int]:
    """(before, after, instruction, edit kind, index of the edited shape in `after`, or -1 if removed)."""
    rng = rng_for(seed, "edit")
    kind = EDIT_KINDS[int(rng.integers(len(EDIT_KINDS)))]
    before = sample_scene(seed, max_shapes=3, min_shapes=1 if kind == "add" else 1)
    i = int(rng.integers(len(before.shapes)))
    s = before.shapes[i]
    if kind == "recolour":
        new = str(rng.choice([c for c in object_colors(before.background) if c != s.color]))
        return before, before.replace_shape(i, color=new), f"make the {s.name} {new}", kind, i
    if kind == "remove":
        return before, before.without(i), f"remove the {s.name}", kind, -1
    if kind == "move":
        options = [d for d, (dx, dy) in DIRECTIONS.items()
                   if s.size <= s.cx + dx <= 1 - s.size and s.size <= s.cy + dy <= 1 - s.size]
        if options:
            d = str(rng.choice(options))
            dx, dy = DIRECTIONS[d]
            return before, before.replace_shape(i, cx=s.cx + dx, cy=s.cy + dy), f"move the {s.name} to the {d}", kind, i
        kind = "add"
    added = random_shape(rng, before.background, list(before.shapes))
    added = Shape(added.kind, added.color, added.cx, added.cy, added.size, 0.05, added.angle)  # in front
    after = before.with_shape(added)
    return before, after, f"add {describe_shape(added)}", "add", len(after.shapes) - 1


def image_editing(seed, size):
    before, after, instruction, kind, index = edit_pair(seed)
    rb, ra = render(before, size), render(after, size)
    region = (rb.ids != ra.ids) | (np.abs(rb.image - ra.image).max(-1) > 0.02)
    req = _request("image_editing", size, image=rb.image, caption=instruction)
    return TrainSample("image_editing", req, {0: ra.image},
                       {"before": before, "after": after, "edit": kind, "index": index, "region": region})


def subject_driven(seed, size):
    rng = rng_for(seed, "subject")
    target = sample_scene(seed, max_shapes=3)
    subject = target.shapes[0]
    alone = Scene("white", None, (Shape(subject.kind, subject.color, 0.5, 0.5, 0.3, 0.5, subject.angle),))
    if subject.color == "white":
        alone = Scene("dark blue", None, alone.shapes)
    ref = render(alone, size).image
    r = render(target, size)
    req = _request("subject_driven", size, references=[(ref, caption(alone, detail=False))], subject=subject.name,
                   caption=caption(target))
    return TrainSample("subject_driven", req, {0: r.image}, {"scene": target, "subject": subject, "rendered": r})


def faceid(seed, size, views=None):
    """1-3 portraits of one cartoon identity -> the same identity in the context the caption describes.
    Captions name only the context (place, size, expression, background), so identity comes from pixels.
    `views` fixes the reference count (a training batch shares one frame layout)."""
    rng = rng_for(seed, "faceid")
    identity = sample_identity(seed)
    count = views or int(rng.integers(1, 4))
    poses = [sample_pose(rng, identity) for _ in range(count + 1)]  # the target's first
    refs = [(render_portrait(identity, p, size), pose_caption(p)) for p in poses[1:]]
    target = render_portrait(identity, poses[0], size)
    req = _request("faceid", size, references=refs, caption=pose_caption(poses[0]))
    return TrainSample("faceid", req, {0: target}, {"identity": identity, "pose": poses[0], "poses": poses})


# ------------------------------------------------------------------------------ condition tasks
def _scene_maps(seed, size, what, label_shift=0):
    """(photo, condition frame, caption, truth) for a condition kind; `label_shift` moves each semantic-map
    label's colour on by that many places (the same photo and masks, another colour for every label)."""
    if what == "pose":
        fig = sample_figure(seed)
        return render_figure(fig, size), pose_map(fig, size), figure_caption(fig), {"figure": fig}, []
    scene = sample_scene(seed)
    r = render(scene, size)
    truth = {"scene": scene, "rendered": r}
    if what == "depth":
        return r.image, maps.depth_frame(r.depth), caption(scene), dict(truth, depth=r.depth), []
    if what == "canny":
        return r.image, maps.canny_frame(r.image), caption(scene), truth, []
    if what == "hed":
        return r.image, maps.hed_frame(r), caption(scene), truth, []
    if what == "semantic_map":
        masks = maps.label_masks(scene, r)
        rng_for(seed, "labels").shuffle(masks)  # colour = position in the prompt, not the shape
        shift = label_shift % len(masks)
        masks = masks[shift:] + masks[:shift]
        frame, labels = maps.semantic_frame(masks)
        return r.image, frame, caption(scene), dict(truth, masks=masks), labels
    if what == "box_map":
        boxes = maps.object_boxes(scene, r)
        frame, labels, pixel_boxes = maps.box_frame(boxes, size)
        return r.image, frame, caption(scene), dict(truth, boxes=pixel_boxes), labels
    raise ValueError(what)


_CONDITION_KEYS = {"depth": "depth", "canny": "canny", "hed": "hed", "pose": "pose", "semanticmap": "semantic_map",
                   "boundingbox": "box_map"}


def _cond2image(key):
    what = _CONDITION_KEYS[key]

    def build(seed, size):
        rng = rng_for(seed, "cond2image")
        photo, frame, cap, truth, labels = _scene_maps(seed, size, what)
        extra = {}
        if labels:  # the map's colours, named in the prompt in palette order
            extra["labels"] = [(lab.label, lab.hex) for lab in labels]
        req = _request(f"{key}2image", size, image=frame, caption=_maybe(rng, cap, 0.7), **extra)
        return TrainSample(f"{key}2image", req, {0: photo}, dict(truth, condition=frame))
    return build


def _image2cond(key):
    what = _CONDITION_KEYS[key]

    def build(seed, size, label_shift=0):
        rng = rng_for(seed, "image2cond")
        photo, frame, cap, truth, labels = _scene_maps(seed, size, what, label_shift)
        extra = {"labels": [(lab.label, lab.hex) for lab in labels]} if labels else {}
        req = _request(f"image2{key}", size, image=photo, caption=_maybe(rng, cap, 0.3), **extra)
        return TrainSample(f"image2{key}", req, {1: frame}, dict(truth, photo=photo, target=frame))
    return build


def freeform_depth_semantic(seed, size):
    """A combination no table entry has: one photo -> depth map and semantic map at once."""
    scene = sample_scene(seed)
    r = render(scene, size)
    masks = maps.label_masks(scene, r)
    frame, labels = maps.semantic_frame(masks)
    prompt = join_prompt("[[depth2image]]", "[[semanticmap2image]]", *[lab.token("mask") for lab in labels])
    req = freeform_request(prompt, [{"kind": "image", "image": r.image}, {"kind": "image", "what": "depth"},
                                    {"kind": "image", "what": "semantic_map"}], height=size, width=size)
    req.task = "freeform_depth_semantic"
    return TrainSample("freeform_depth_semantic", req, {1: maps.depth_frame(r.depth), 2: frame},
                       {"scene": scene, "rendered": r, "depth": r.depth, "masks": masks})


# ------------------------------------------------------------------------------ multi-view
def _cameras(rng, views):
    az = [0.0] + [float(v) for v in rng.uniform(-90, 90, views - 1)]
    el = [0.0] + [float(v) for v in rng.uniform(-10, 30, views - 1)]
    return az, el


def _views(obj, az0, az, el, size):
    return [render_view(obj, az0 + a, e, MULTIVIEW_DISTANCE, size) for a, e in zip(az, el)]


def image2multiview(seed, size, views=None):
    rng = rng_for(seed, "multiview")
    views = views or int(rng.integers(2, 5))
    obj, az0 = sample_object(seed), float(rng.uniform(0, 360))
    az, el = _cameras(rng, views)
    images = _views(obj, az0, az, el, size)
    req = _request("image2multiview", size, images=images[:1], azimuths=az, elevations=el,
                   distances=MULTIVIEW_DISTANCE, caption=_maybe(rng, object_caption(obj), 0.3))
    targets = {2 * i: images[i] for i in range(1, views)}
    return TrainSample("image2multiview", req, targets, {"object": obj, "views": images, "azimuths": az,
                                                          "elevations": el})


def text2multiview(seed, size, views=None):
    rng = rng_for(seed, "multiview")
    views = views or int(rng.integers(2, 5))
    obj, az0 = sample_object(seed), float(rng.uniform(0, 360))
    az, el = _cameras(rng, views)
    images = _views(obj, az0, az, el, size)
    req = _request("text2multiview", size, caption=object_caption(obj), azimuths=az, elevations=el,
                   distances=MULTIVIEW_DISTANCE)
    return TrainSample("text2multiview", req, {2 * i: images[i] for i in range(views)},
                       {"object": obj, "views": images, "azimuths": az, "elevations": el})


def camera_estimation(seed, size):
    rng = rng_for(seed, "camera")
    obj, az0 = sample_object(seed), float(rng.uniform(0, 360))
    az, el = _cameras(rng, 2)
    images = _views(obj, az0, az, el, size)
    req = _request("camera_estimation", size, images=images, azimuths=[0.0, None], elevations=[0.0, None],
                   distances=MULTIVIEW_DISTANCE)
    rays = conditions.camera_rays([(a, e, MULTIVIEW_DISTANCE) for a, e in zip(az, el)], size)
    return TrainSample("camera_estimation", req, {3: rays[1]}, {"object": obj, "azimuths": az, "elevations": el})


TASK_BUILDERS: dict[str, Callable[[int, int], TrainSample]] = {
    "text2image": text2image, "inpainting": inpainting, "deblurring": deblurring, "image_editing": image_editing,
    "subject_driven": subject_driven, "faceid": faceid,
    **{f"{k}2image": _cond2image(k) for k in _CONDITION_KEYS},
    **{f"image2{k}": _image2cond(k) for k in _CONDITION_KEYS},
    "image2multiview": image2multiview, "text2multiview": text2multiview, "camera_estimation": camera_estimation,
    "freeform_depth_semantic": freeform_depth_semantic,
}


MULTIVIEW_TASKS = ("image2multiview", "text2multiview")
# Tasks whose colour per label can be moved on (make_sample's label_shift): the same photo, another prompt.
LABEL_SHIFT_TASKS = ("image2semanticmap",)
# Tasks whose frame layout varies: task -> (fewest, most) of `views` (multi-view: views; faceid: references)
VARIABLE_COUNTS = {"image2multiview": (2, 4), "text2multiview": (2, 4), "faceid": (1, 3)}


def make_sample(task: str, seed: int, size: int = 64, views: int | None = None, label_shift: int = 0) -> TrainSample:
    """One sample of `task` from `seed`; `views` fixes the variable frame count of a VARIABLE_COUNTS task
    (views of the multi-view tasks, references of faceid); `label_shift` (LABEL_SHIFT_TASKS) gives each label
    of the seed's sample the colour `label_shift` places on in the prompt and the target map."""
    if task not in TASK_BUILDERS:
        raise ValueError(f"no data generator for task {task!r}; known: {', '.join(TASK_BUILDERS)}")
    if label_shift:
        if task not in LABEL_SHIFT_TASKS:
            raise ValueError(f"label_shift={label_shift} for task {task!r}: only {', '.join(LABEL_SHIFT_TASKS)} "
                             "have labels to move; use label_shift=0")
        return TASK_BUILDERS[task](int(seed), int(size), label_shift=int(label_shift))
    if task in VARIABLE_COUNTS:
        return TASK_BUILDERS[task](int(seed), int(size), views=views)
    return TASK_BUILDERS[task](int(seed), int(size))


def as_tensor(value) -> torch.Tensor:
    """An image (H, W, 3) -> (3, H, W) float32 0..1; a latent stays as it is."""
    if isinstance(value, torch.Tensor):
        return value.float()
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).permute(2, 0, 1)
