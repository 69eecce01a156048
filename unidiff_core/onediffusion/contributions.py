"""Frame contributions and how a run is formed from them: the one-way request path.

A contribution is what one source gives a run: a frame node of the ComfyUI pack, or a flag of the
command line. It holds the task inputs it sets (`TaskInputs` fields) and the frames it appends to
a free-form sequence (task 'custom'). The constructors below make one per kind of frame node, each
building its condition image once; `task_request` turns an ordered list of them, with the task,
the prompt and the run settings, into a `TaskRequest`:

    parts = [contributions.condition_map(depth, "depth")]
    request = contributions.task_request("depth2image", "a room", parts)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from ..common import checks
from ..common.errors import InputError
from . import conditions, validation
from .pipeline import RAY
from .requests import FrameInput, TaskInputs, TaskRequest
from .tasks import build_request, freeform_request, get_task
from .validation import CUSTOM, GENERATED_WHATS, MAP_TYPES

_LISTS = ("images", "references")  # inputs that several sources may add to, in order


@dataclass(frozen=True)
class Contribution:
    """What one source gives a run. `inputs`: TaskInputs fields (empty = a frame to generate, custom runs
    only); `frames`: FrameInputs appended to a custom sequence; `labels`: ColorLabels of a map built here;
    `map_type`: what a given condition map is (it must fit the task)."""

    source: str  # named in errors: a node's display name, a command-line flag
    inputs: dict = field(default_factory=dict)
    frames: tuple = ()
    labels: tuple = ()
    map_type: str | None = None


# ------------------------------------------------------------------------------------ one per frame node
def given_images(images: Sequence, what: str = "image", source: str = "image") -> Contribution:
    """Given images: the photo of image2X / editing / deblurring, the views of multi-view."""
    checks.choice("what", what, GENERATED_WHATS)
    return Contribution(source, {"images": list(images)}, tuple(FrameInput(image=im, what=what) for im in images))


def generated_frame(what: str = "image", source: str = "image frame") -> Contribution:
    """A frame to generate, for custom sequences (a task lays out its own generated frames)."""
    checks.choice("what", what, GENERATED_WHATS)
    return Contribution(source, frames=(FrameInput(what=what),))


def inpaint(image, mask, fill: str = "black", composite: bool = True, feather: int = 8,
            source: str = "inpaint") -> Contribution:
    """The inpainting condition, built once (a mask scaled like its image is resized to it)."""
    built = conditions.inpaint_source(image, mask, fill=fill, composite=composite, feather=feather,
                                      scaled_mask_ok=True)
    return Contribution(source, {"inpaint": built}, (FrameInput(image=built.condition, what="masked_image"),))


def layout_boxes(boxes, width: int, height: int, source: str = "boxes") -> tuple[Contribution, Any]:
    """Labelled boxes (fractions of the width x height canvas) -> (contribution, the rendered box map)."""
    parsed = validation.boxes(boxes, units="fraction")  # JSON, count, labels, inside 0..1, ordered corners
    canvas = (checks.size("height", height), checks.size("width", width))
    layout = conditions.box_map(parsed, canvas, units="fraction")
    part = Contribution(source, {"boxes": parsed, "box_units": "fraction", "canvas_size": canvas},
                        (FrameInput(image=layout.image, what="box_map"),), tuple(layout.labels))
    return part, layout.image


def references(refs: Sequence, subject: str = "", source: str = "references") -> Contribution:
    """(image, caption) reference photos (faceid: 1-3; subject_driven: one, with the subject's name)."""
    inputs = {"references": list(refs)}
    if (subject or "").strip():
        inputs["subject"] = subject.strip()
    return Contribution(source, inputs, tuple(FrameInput(image=im, what="reference") for im, _ in refs))


def condition_map(image, map_type: str, extract_canny: bool = False, canny_low: int = 100, canny_high: int = 200,
                  source: str = "map") -> tuple[Contribution, Any]:
    """A condition map (extract_canny: a photo, turned into its Canny edges here) -> (contribution, the map)."""
    checks.choice("map_type", map_type, MAP_TYPES)
    validation.canny_options(map_type, extract_canny, canny_low, canny_high)
    used = conditions.canny_map(image, canny_low, canny_high) if extract_canny else image
    return Contribution(source, {"image": used}, (FrameInput(image=used, what=map_type),), map_type=map_type), used


def multiview_cameras(azimuths, elevations, distance: float, focal: float, images: Sequence = (),
                      source: str = "cameras") -> Contribution:
    """One view per azimuth ('none' = unknown camera, estimated); images fill the first views."""
    az, el = validation.cameras(azimuths, elevations)
    images = list(images or [])
    if len(images) > len(az):
        raise InputError("images", f"{len(images)} images", f"{len(images)} images for {len(az)} views",
                         "give at most one image per view")
    inputs = {"azimuths": az, "elevations": el, "distances": float(distance), "focal": float(focal)}
    if images:
        inputs["images"] = images
    frames = []
    for i, (a, e) in enumerate(zip(az, el)):
        frames.append(FrameInput(image=images[i] if i < len(images) else None, what="image"))
        frames.append(FrameInput(kind=RAY, camera=None if a is None else (a, e, float(distance))))
    return Contribution(source, inputs, tuple(frames))


# ------------------------------------------------------------------------------------ merging
def task_inputs(task: str, parts: Sequence[Contribution]) -> TaskInputs:
    """The task's inputs from its contributions, in order: lists (images, references) are joined, any
    other input comes from one source; given images become the task's image (one), its references or
    its views; an input the task does not read, or a map of another kind, is an error naming its source."""
    spec = get_task(task)
    given, owner = {}, {}
    for part in parts:
        if not part.inputs:
            raise InputError(part.source, "a frame to generate", "a frame to generate only works with task 'custom'",
                             "connect an image, or pick task 'custom'",
                             text=f"{part.source}: a frame to generate only works with task 'custom'; task "
                                  f"{spec.name!r} lays out its own generated frame(s) - connect an image, or pick "
                                  "task 'custom'")
        wanted = spec.frames[1].what if len(spec.frames) > 1 and not spec.frames[1].generated else None
        if part.map_type is not None and wanted in MAP_TYPES and wanted != part.map_type:
            fix = f"set map_type to {wanted!r} or pick the task for {part.map_type!r}"
            problem = f"map_type {part.map_type!r} but task {spec.name!r} takes a {wanted.replace('_', ' ')}"
            raise InputError("map_type", part.map_type, problem, fix, text=f"{part.source}: {problem}; {fix}")
        for key, value in part.inputs.items():
            if key in _LISTS:
                given.setdefault(key, []).extend(value)
                owner.setdefault(key, part.source)
            elif key in given:
                raise InputError(key, f"from {part.source} and {owner[key]}", "given twice", "connect it once",
                                 text=f"{part.source} and {owner[key]} both give {key}; task {spec.name!r} takes one")
            else:
                given[key], owner[key] = value, part.source
    if "images" in given and not spec.multiview:
        images = given.pop("images")
        target = "references" if spec.takes("references") and not spec.takes("image") else "image"
        if target == "references":
            given["references"] = given.get("references", []) + [(im, "") for im in images]
        elif "image" in given or "inpaint" in given:
            other = owner.get("image", owner.get("inpaint"))
            raise InputError("image", f"from {owner['images']} and {other}", "given twice", "connect it once",
                             text=f"{owner['images']} and {other} both give the image; task {spec.name!r} takes one")
        elif len(images) != 1:
            problem = f"task {spec.name!r} takes one image, got {len(images)}"
            raise InputError("image", f"a batch of {len(images)}", problem, "pick one image of the batch",
                             text=f"{owner['images']}: {problem}; pick one image of the batch (e.g. ImageFromBatch)")
        else:
            given["image"] = images[0]
        owner.setdefault(target, owner["images"])
    for key, value in given.items():
        if not spec.takes(key):
            validation.takes(spec.name, spec.inputs, key, type(value).__name__, source=owner[key])
    return TaskInputs(**given)


def task_request(task: str, prompt: str, parts: Sequence[Contribution], negative_prompt: str | None = None,
                 labels: str = "", width=None, height=None, steps: int | None = None,
                 guidance: float | None = None) -> TaskRequest:
    """A run from its task, prompt and contributions. task 'custom': the contributed frames in order, the
    prompt verbatim. Otherwise a prompt starting with '[[' is used verbatim, else it is the caption.
    negative_prompt None = the task's default; width/height None = the task's default (or the bucket)."""
    if task == CUSTOM:
        if not parts:
            raise InputError("frames", None, "task 'custom' runs the chained frames, none is connected",
                             "connect frames (at least one frame to generate, e.g. UniDiff Image Frame without "
                             "an image)")
        if not (prompt or "").strip():
            raise InputError("prompt", prompt, "empty, but task 'custom' uses the prompt verbatim",
                             "write the whole prompt with its task token, e.g. '[[depth2image]] a cat'")
        frame_labels = [lab for part in parts for lab in part.labels]
        return freeform_request(prompt, [f for part in parts for f in part.frames],
                                negative_prompt=negative_prompt or "", height=height, width=width,
                                steps=50 if steps is None else steps, guidance=4.0 if guidance is None else guidance,
                                labels=labels or frame_labels or None)
    inputs = task_inputs(task, parts)
    as_written = validation.verbatim(prompt)
    return build_request(task, replace(inputs, caption="" if as_written else prompt, prompt=prompt if as_written else None,
                                       negative_prompt=negative_prompt, labels=labels or None, height=height,
                                       width=width, steps=steps, guidance=guidance))


__all__ = ["Contribution", "CUSTOM", "given_images", "generated_frame", "inpaint",
           "layout_boxes", "references", "condition_map", "multiview_cameras", "task_inputs", "task_request"]
