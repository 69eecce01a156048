"""OneDiffusion's input checks that run before any model work, shared by the nodes, the CLI and the core API.

Every check raises `InputError` (a ValueError) whose message names the input, the value received
and the fix, e.g. ``boxes[0].box: reaches outside the image (got [0, 0, 2, 1]); keep every coordinate
within 0..1``. The nodes call these from `VALIDATE_INPUTS` (ComfyUI then answers POST /prompt with
HTTP 400 and the message in `node_errors`, nothing is queued) or, for checks that need linked tensors
(a mask against its image), at the start of the node. Model-agnostic checks (numbers, sizes, number
lists, dtypes) are in common/checks.py; `docs/errors.md` lists what is checked where.

This module imports neither torch nor ComfyUI (ComfyUI validates prompts with it on every POST).
"""

from __future__ import annotations

import json
import math

from ..common.checks import choice, dtype_on_device, message, numbers  # noqa: F401  (the Loader reads these here)
from ..common.errors import InputError
from .palette import MAX_COLORS, assign_colors, split_labels

MAX_BOXES = MAX_COLORS  # one palette colour per box label
BOX_EPSILON = 1e-6  # fractions written with rounding (the box editor keeps 4 decimals)
BOX_UNITS = ("auto", "fraction", "pixel")
MAP_TYPES = ("depth", "canny", "hed", "pose", "semantic_map", "box_map")  # the condition maps of X->image tasks
GENERATED_WHATS = ("image",) + MAP_TYPES  # what a generated frame of a custom run may hold
CUSTOM = "custom"  # the task of a free-form run: the frames as chained, the prompt verbatim


# ------------------------------------------------------------------------------------ layout boxes
def _parse_boxes(text, name: str) -> list:
    """Box JSON text (or an already parsed list) -> list; malformed JSON names the position."""
    if isinstance(text, (list, tuple)):
        return list(text)
    text = "" if text is None else str(text)
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(name, text, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})",
                         'draw boxes in the editor or write [{"label": "cat", "box": [0.1, 0.2, 0.5, 0.9]}]') from None
    if not isinstance(value, list):
        raise InputError(name, text, f"a JSON {type(value).__name__}, not a list",
                         'write a list: [{"label": "cat", "box": [x0, y0, x1, y1]}]')
    return value


def box_units(items: list[dict], units: str = "auto") -> str:
    """'fraction' or 'pixel' for checked boxes. auto: fractions when every coordinate is within 0..1."""
    choice("box_units", units, BOX_UNITS)
    if units != "auto":
        return units
    return "fraction" if all(0.0 <= v <= 1.0 for b in items for v in b["box"]) else "pixel"


def boxes(value, name: str = "boxes", units: str = "fraction", canvas: tuple[int, int] | None = None,
          allow_empty: bool = False) -> list[dict]:
    """Labelled boxes [{"label", "box": [x0, y0, x1, y1], "color"?}] (a list or its JSON) -> checked copies.

    units 'fraction': every coordinate within 0..1; 'pixel': within the canvas (height, width); 'auto':
    fractions when every value is within 0..1. Corners must be ordered (x0 < x1, y0 < y1): [x, y, w, h]
    boxes are caught here. At most 20 boxes (one palette colour per label).
    """
    items = _parse_boxes(value, name)
    if not items and not allow_empty:
        raise InputError(name, value, "no box yet (boxes is empty)", "draw a box on the canvas of UniDiff Layout "
                         "Boxes (drag) and double-click it to set its label")
    if len(items) > MAX_BOXES:
        raise InputError(name, f"{len(items)} boxes", f"{len(items)} boxes given; the model's palette allows at "
                         f"most {MAX_BOXES} (more than {MAX_BOXES} boxes: one colour per box label)",
                         f"keep at most {MAX_BOXES} boxes")
    out = []
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(item, dict) or "box" not in item:
            raise InputError(where, item, "not a box", 'each box is {"label": "cat", "box": [x0, y0, x1, y1]}')
        box = item["box"]
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise InputError(f"{where}.box", box, "not 4 numbers", "write [x0, y0, x1, y1]")
        try:
            box = [float(v) for v in box]
        except (TypeError, ValueError):
            raise InputError(f"{where}.box", item["box"], "not 4 numbers", "write [x0, y0, x1, y1]") from None
        if not all(math.isfinite(v) for v in box):
            raise InputError(f"{where}.box", item["box"], "not 4 finite numbers", "write [x0, y0, x1, y1]")
        label = item.get("label")
        if not isinstance(label, str) or not label.strip() or any(c in label for c in "<>"):
            raise InputError(f"{where}.label", label, "no label (the box has no label: empty or not text)",
                             "give each box a label (the concept it holds; double-click the box in the editor), "
                             "without '<' or '>'")
        out.append(dict(item, label=label.strip(), box=box))
    units = box_units(out, units)
    if units == "pixel" and canvas is None:
        raise InputError("canvas_size", None, "needed for pixel boxes", "give the canvas (height, width)")
    if units == "fraction":
        limit_x = limit_y = 1.0
        unit_text = "fractions 0..1 of the canvas"
    else:
        limit_y, limit_x = canvas
        unit_text = f"pixels of the {limit_x}x{limit_y} canvas"
    for i, item in enumerate(out):
        x0, y0, x1, y1 = box = item["box"]
        where = f"{name}[{i}].box"
        if min(box) < -BOX_EPSILON or max(x0, x1) > limit_x + BOX_EPSILON or max(y0, y1) > limit_y + BOX_EPSILON:
            raise InputError(where, box, f"reaches outside the image ({unit_text})",
                             f"keep every coordinate within 0..{limit_x:g} (x) and 0..{limit_y:g} (y)")
        if not (x0 < x1 and y0 < y1):
            raise InputError(where, box, "corners not ordered or the box is empty",
                             "write [x0, y0, x1, y1] with x0 < x1 and y0 < y1 (corners, not [x, y, w, h])")
    return out


# ------------------------------------------------------------------------------------ cameras
def cameras(azimuths, elevations) -> tuple[list, list]:
    """Multi-view camera lists: one azimuth per view, one elevation per view (or one for all), 'none' in
    both places for an unknown camera, at least one known camera."""
    az = numbers(azimuths, "azimuths", allow_none=True)
    el = numbers(elevations, "elevations", allow_none=True)
    if not az:
        raise InputError("azimuths", azimuths, "no view", "give one azimuth per view, e.g. 0, 30, 60, 90 "
                         "(none = unknown camera)")
    if len(el) == 1 and len(az) > 1:
        el = [None if a is None else el[0] for a in az]
    if len(el) != len(az):
        raise InputError("elevations", elevations, f"{len(el)} value(s) for {len(az)} azimuths",
                         "give one elevation per view (or one for all views)")
    for i, (a, e) in enumerate(zip(az, el)):
        if (a is None) != (e is None):
            raise InputError(f"view {i}", f"azimuth {a}, elevation {e}", "only one of the two is known",
                             "give both, or 'none' for both (unknown camera)")
    if all(a is None for a in az):
        raise InputError("azimuths", azimuths, "no known camera", "give the camera of view 0 (azimuth 0, "
                         "elevation 0): the model needs one reference camera")
    return az, el


def square(width, height, what: str = "multi-view tasks") -> None:
    """Ray frames (multi-view cameras) need a square size."""
    if width != height:
        raise InputError("width/height", (width, height), f"{what} need a square size",
                         "set width = height, e.g. 512 x 512")


# ------------------------------------------------------------------------------------ task inputs
def verbatim(prompt: str | None) -> bool:
    """A prompt that starts with '[[' (a task token) is used as written, not as a caption."""
    return prompt is not None and prompt.lstrip().startswith("[[")


def caption(task: str, required: bool, text, name: str = "caption") -> None:
    """'Caption required': a task that needs a caption (image_editing: an instruction) gets a non-empty one."""
    if not required or (text or "").strip():
        return
    what = "an instruction" if task == "image_editing" else "a caption"
    raise InputError(name, text, f"empty, but task {task!r} needs {what}",
                     f"write {what} (" + ("what to change)" if task == "image_editing" else "what to generate)"))


def takes(task: str, inputs, key: str, value, source: str | None = None) -> None:
    """'Task does not take X': an input the task does not read is an error (it would be ignored otherwise)."""
    if key in inputs:
        return
    where = f" (from {source})" if source else ""
    raise InputError(key, value, f"task {task!r} does not take {key}{where}",
                     f"its inputs are: {', '.join(inputs)}")


def task_text(task: str | None, prompt: str | None, labels: str | None, tasks: dict) -> None:
    """The text node's widgets: a known task (a name of `tasks`, the task table), a caption where the task
    needs one, labels only for the tasks that read them and present where they are required.
    None = linked (checked at run time)."""
    if task is None:
        return
    if task != CUSTOM:
        choice("task", task, list(tasks) + [CUSTOM])
    if task == CUSTOM:
        if prompt is not None and not prompt.strip():
            raise InputError("prompt", prompt, "empty, but task 'custom' uses the prompt verbatim",
                             "write the whole prompt with its task token, e.g. '[[depth2image]] a cat'")
        return
    spec = tasks[task]
    if prompt is not None:
        caption(task, "caption" in spec.required, prompt, name="prompt")
    if labels is None:
        return
    if labels.strip() and "labels" not in spec.inputs:  # worded for the widget: the node's documented message
        raise InputError("labels", labels, f"task {task!r} takes no labels", "clear the labels widget")
    if not labels.strip() and "labels" in spec.required and not verbatim(prompt):
        raise InputError("labels", labels, f"empty, but task {task!r} needs the concepts to find",
                         "name them comma-separated, e.g. 'cat, dog' (or 'cat=red, dog=cyan')")
    if labels.strip():
        label_list(labels)


def label_list(labels, name: str = "labels"):
    """Labels in any accepted shape ('cat, dog=cyan', ['cat', ('dog', 'cyan')], [{'label', 'color'}]) ->
    ColorLabels; bad colours, repeats and more than 20 labels are named."""
    names, colours = split_labels(labels)
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise InputError(name, labels, f"repeats {', '.join(repeated)}", "name each concept once")
    try:
        return assign_colors(names, colours)
    except ValueError as e:
        problem, _, fix = str(e).partition("; ")
        raise InputError(name, labels, problem, fix or "fix the labels") from None


def select_labels(wanted: str, known: list[str], name: str = "label") -> list[str]:
    """Label filtering: 'cat, dog' -> those of the run's labels (`known`), in the order asked; empty = all."""
    picked = [lab.strip() for lab in (wanted or "").split(",") if lab.strip()]
    unknown = [lab for lab in picked if lab not in known]
    if unknown:
        raise InputError(name, wanted, f"{unknown} not among the labels {known}",
                         "use some of them, comma-separated, or leave it empty for all")
    return picked or list(known)


# ------------------------------------------------------------------------------------ other widgets
def canny_options(map_type: str | None, extract_canny, low, high) -> None:
    if extract_canny and map_type is not None and map_type != "canny":
        raise InputError("extract_canny", True, f"works with map_type 'canny', not {map_type!r}",
                         "set map_type to 'canny' or turn extract_canny off")
    if extract_canny and low is not None and high is not None and not int(low) < int(high):
        raise InputError("canny_low/canny_high", (low, high), "need canny_low < canny_high",
                         "use e.g. 100 and 200")


def mask_fits_image(mask_hw: tuple[int, int], image_hw: tuple[int, int], name: str = "mask",
                    allow_scaled: bool = True) -> bool:
    """A mask must be its image's mask: the same size, or (allow_scaled) the same aspect ratio (a scaled
    copy, resized to the image). Returns True when it needs resizing."""
    (mh, mw), (ih, iw) = mask_hw, image_hw
    if (mh, mw) == (ih, iw):
        return False
    same_aspect = abs(mw * ih - mh * iw) <= max(mh, ih) + max(mw, iw)  # within a pixel of rounding
    if allow_scaled and same_aspect:
        return True
    raise InputError(name, f"{mw}x{mh} (WxH)", f"does not match the image {iw}x{ih}",
                     "give the mask of this image (the same size"
                     + (", or a scaled copy with the same aspect ratio)" if allow_scaled else ")"))
