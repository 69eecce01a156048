"""Input checks that run before any model work, shared by the ComfyUI nodes, the CLI and the core API.

Every check raises `InputError` (a ValueError) whose message names the input, the value received
and the fix, e.g. ``width: 100 is not a multiple of 16 (got 100); use 96 or 112``. The nodes call
these from `VALIDATE_INPUTS` (ComfyUI then answers POST /prompt with HTTP 400 and the message in
`node_errors`, nothing is queued) or, for checks that need linked tensors (a mask against its
image), at the start of the node, before any model work. `docs/errors.md` lists what is checked where.

This module imports neither torch nor ComfyUI (ComfyUI validates prompts with it on every POST).
"""

from __future__ import annotations

import difflib
import json
import math

from ..common.errors import InputError, show_value as _show

SIZE_MULTIPLE = 16  # VAE factor 8 x patch size 2 (as preprocess.SIZE_MULTIPLE)
MAX_SIZE = 4096
MAX_BOXES = 20  # the model's palette has 20 colours: one per box label (as palette.MAX_COLORS)
BOX_EPSILON = 1e-6  # fractions written with rounding (the box editor keeps 4 decimals)
DTYPES = ("fp32", "bf16", "fp16")
CAMERA_NONE = ("none", "null", "?", "unknown")


def message(check, *args, **kwargs):
    """True when check(*args, **kwargs) passes, else its error message (what VALIDATE_INPUTS returns)."""
    try:
        check(*args, **kwargs)
    except ValueError as e:
        return str(e)
    return True


# ------------------------------------------------------------------------------------ numbers, choices
def number(name: str, value, low=None, high=None, integer: bool = False):
    """A widget number within [low, high] (ComfyUI's own range check, for inputs a node validates itself)."""
    kind = "an integer" if integer else "a number"
    try:
        out = int(value) if integer else float(value)
        if integer and float(value) != out:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InputError(name, value, f"not {kind}", f"give {kind}"
                         + (f" from {low} to {high}" if low is not None and high is not None else "")) from None
    if not integer and not math.isfinite(out):
        raise InputError(name, value, "not a finite number", "give a finite number")
    if low is not None and out < low:
        raise InputError(name, value, f"smaller than the minimum {low}", f"use a value from {low} to {high}")
    if high is not None and out > high:
        raise InputError(name, value, f"bigger than the maximum {high}", f"use a value from {low} to {high}")
    return out


def choice(name: str, value, options) -> str:
    options = list(options)
    if value in options:
        return value
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InputError(name, value, "not one of the choices", f"{hint}use one of {', '.join(map(str, options))}")


# ------------------------------------------------------------------------------------ sizes
def nearest_sizes(value: int, high: int = MAX_SIZE) -> list[int]:
    """The valid sizes next to a value: [below, above] (one when the other is out of range)."""
    below = (int(value) // SIZE_MULTIPLE) * SIZE_MULTIPLE
    return [s for s in (below, below + SIZE_MULTIPLE) if SIZE_MULTIPLE <= s <= high]


def size(name: str, value, allow_auto: bool = False, low: int = SIZE_MULTIPLE, high: int = MAX_SIZE) -> int:
    """A pixel size: a multiple of 16 within [low, high]; 0 also when allow_auto (= the task's default)."""
    value = number(name, value, 0 if allow_auto else low, high, integer=True)
    if allow_auto and value == 0:
        return 0
    if value < low:
        raise InputError(name, value, f"smaller than the minimum {low}", f"use at least {low}"
                         + (" (or 0 for auto)" if allow_auto else ""))
    if value % SIZE_MULTIPLE:
        raise InputError(name, value, f"not a multiple of {SIZE_MULTIPLE}",
                         "use " + " or ".join(map(str, nearest_sizes(value, high))))
    return value


def size_pair(width, height, auto: bool = True) -> tuple[int, int]:
    """Sampler width/height: both multiples of 16, or both 0 (auto: the task's default size)."""
    width = size("width", width, allow_auto=auto)
    height = size("height", height, allow_auto=auto)
    if (width == 0) != (height == 0):
        zero, other = ("width", "height") if width == 0 else ("height", "width")
        raise InputError(zero, 0, f"auto (0) but {other}={width or height}",
                         "set both, or both to 0 (auto: the task's default size or the ~512² bucket of the "
                         "first given image)")
    return width, height


def square_for_multiview(width, height, task: str) -> None:
    if width != height:
        raise InputError("width/height", (width, height), f"task {task!r} (multi-view) needs a square size",
                         "set width = height, e.g. 512 x 512")


# ------------------------------------------------------------------------------------ layout boxes
def parse_boxes(text, name: str = "boxes") -> list:
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


def boxes(value, name: str = "boxes", units: str = "fraction", canvas: tuple[int, int] | None = None,
          allow_empty: bool = False) -> list[dict]:
    """Labelled boxes [{"label", "box": [x0, y0, x1, y1], "color"?}] -> checked copies.

    units 'fraction': every coordinate within 0..1; 'pixel': within the canvas (height, width).
    Corners must be ordered (x0 < x1, y0 < y1): [x, y, w, h] boxes are caught here. At most 20 boxes.
    """
    items = parse_boxes(value, name)
    if not items and not allow_empty:
        raise InputError(name, value, "no box yet", "draw a box on the canvas of UniDiff Layout Boxes (drag) and "
                         "double-click it to set its label")
    if len(items) > MAX_BOXES:
        raise InputError(name, f"{len(items)} boxes", f"more than {MAX_BOXES} boxes (the model's palette has "
                         f"{MAX_BOXES} colours, one per box label)", f"keep at most {MAX_BOXES} boxes")
    if units not in ("fraction", "pixel"):
        raise InputError("box_units", units, "not 'fraction' or 'pixel'", "use 'fraction' (0..1) or 'pixel'")
    if units == "pixel" and canvas is None:
        raise InputError("canvas_size", None, "needed for pixel boxes", "give the canvas (height, width)")
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
            raise InputError(f"{where}.label", label, "no label (empty or not text)",
                             "give each box a label (the concept it holds; double-click the box in the editor), "
                             "without '<' or '>'")
        x0, y0, x1, y1 = box
        if units == "fraction":
            limit_x = limit_y = 1.0
            unit_text = "fractions 0..1 of the canvas"
        else:
            limit_y, limit_x = canvas
            unit_text = f"pixels of the {limit_x}x{limit_y} canvas"
        if min(box) < -BOX_EPSILON or max(x0, x1) > limit_x + BOX_EPSILON or max(y0, y1) > limit_y + BOX_EPSILON:
            raise InputError(f"{where}.box", item["box"], f"reaches outside the image ({unit_text})",
                             f"keep every coordinate within 0..{limit_x:g} (x) and 0..{limit_y:g} (y)")
        if not (x0 < x1 and y0 < y1):
            raise InputError(f"{where}.box", item["box"], "corners not ordered or the box is empty",
                             "write [x0, y0, x1, y1] with x0 < x1 and y0 < y1 (corners, not [x, y, w, h])")
        out.append(dict(item, label=label.strip(), box=box))
    return out


# ------------------------------------------------------------------------------------ cameras
def numbers(text, name: str, allow_none: bool = False) -> list:
    """'0, 30, none' -> [0.0, 30.0, None]; a bad entry is named."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return [float(text)]
    if isinstance(text, (list, tuple)):
        parts = ["none" if v is None else str(v) for v in text]
    else:
        parts = str(text).replace(";", ",").split(",")
    values = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if part.lower() in CAMERA_NONE:
            if not allow_none:
                raise InputError(name, text, "'none' is not allowed here", "give numbers")
            values.append(None)
            continue
        try:
            value = float(part)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise InputError(name, text, f"{part!r} is not a number", "write comma-separated numbers, e.g. "
                             "0, 30, 60" + (" (none = unknown)" if allow_none else ""))
        values.append(value)
    return values


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


# ------------------------------------------------------------------------------------ task text
def task_text(task: str | None, prompt: str | None, labels: str | None, tasks: dict | None = None,
              custom: str = "custom") -> None:
    """The text node's widgets: a known task, a caption where the task needs one, labels only for the
    tasks that read them and present where they are required. None = linked (checked at run time)."""
    if tasks is None:
        from .tasks import TASKS as tasks  # noqa: N811
    if task is None:
        return
    if task != custom:
        choice("task", task, list(tasks) + [custom])
    verbatim = prompt is not None and prompt.lstrip().startswith("[[")
    if task == custom:
        if prompt is not None and not prompt.strip():
            raise InputError("prompt", prompt, "empty, but task 'custom' uses the prompt verbatim",
                             "write the whole prompt with its task token, e.g. '[[depth2image]] a cat'")
        return
    spec = tasks[task]
    if prompt is not None and not prompt.strip() and "caption" in spec.required:
        what = "an instruction" if task == "image_editing" else "a caption"
        raise InputError("prompt", prompt, f"empty, but task {task!r} needs {what}",
                         f"write {what} (what to " + ("change)" if task == "image_editing" else "generate)"))
    if labels is None:
        return
    if labels.strip() and "labels" not in spec.inputs:
        raise InputError("labels", labels, f"task {task!r} takes no labels", "clear the labels widget")
    if not labels.strip() and "labels" in spec.required and not verbatim:
        raise InputError("labels", labels, f"empty, but task {task!r} needs the concepts to find",
                         "name them comma-separated, e.g. 'cat, dog' (or 'cat=red, dog=cyan')")
    if labels.strip():
        label_list(labels)


def label_list(labels: str, name: str = "labels"):
    """'cat, dog=cyan' -> ColorLabels; bad colours, repeats and more than 20 labels are named."""
    from .palette import assign_colors, split_labels

    names, colours = split_labels(labels)
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise InputError(name, labels, f"repeats {', '.join(repeated)}", "name each concept once")
    try:
        return assign_colors(names, colours)
    except ValueError as e:
        problem, _, fix = str(e).partition("; ")
        raise InputError(name, labels, problem, fix or "fix the labels") from None


# ------------------------------------------------------------------------------------ other widgets
def canny_options(map_type: str | None, extract_canny, low, high) -> None:
    if extract_canny and map_type is not None and map_type != "canny":
        raise InputError("extract_canny", True, f"works with map_type 'canny', not {map_type!r}",
                         "set map_type to 'canny' or turn extract_canny off")
    if extract_canny and low is not None and high is not None and not int(low) < int(high):
        raise InputError("canny_low/canny_high", (low, high), "need canny_low < canny_high",
                         "use e.g. 100 and 200")


def dtype_on_device(dtype: str, device) -> None:
    """A dtype the device can run (fp16 is not supported on the CPU; bf16 needs a GPU that has it)."""
    import torch

    choice("dtype", dtype, DTYPES)
    device = torch.device(device)
    if device.type == "cpu" and dtype == "fp16":
        raise InputError("dtype", dtype, "fp16 is not supported on the CPU", "use fp32 or bf16 there (or auto)")
    if device.type == "cuda" and dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise InputError("dtype", dtype, "this GPU cannot run bf16", "use fp16 or fp32 (or auto)")


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


def batch_of_one(count: int, name: str, node: str) -> None:
    if count != 1:
        raise InputError(name, f"a batch of {count}", f"{node} takes one image",
                         "pick one image of the batch (e.g. ImageFromBatch) or use one node per image")
