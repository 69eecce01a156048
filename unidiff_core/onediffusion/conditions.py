"""Condition builders: turn a task's natural inputs into the frames the model was trained on.

Plain functions on PIL images / numpy arrays / tensors, each usable on its own:

* inpainting: `inpaint_condition(image, mask)` paints the masked region (1 = repaint) black, as in
  the reference's inpainting example ("Inpainting with Black mask"); `composite_inpaint` pastes a
  result back into the original with a feathered edge, unmasked pixels exact.
* layout boxes: `box_map(boxes, (H, W))` -> filled palette-coloured rectangles on black + labels.
* semantic maps: `semantic_map([(label, mask), ...])` -> palette-coloured regions on black + labels.
* references: `reference_list` / `reference_prompt` for [[imgN]] prompts.
* multi-view: `multiview_layout` (which views/cameras are given) and `multiview_frames` (ray frames).
* Canny: `canny_map(photo, low, high)` with OpenCV, white edges on black.
HED and pose maps are taken as given images (no extractor is bundled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from . import cameras, preprocess
from .palette import MAX_COLORS, ColorLabel, assign_colors

MASK_THRESHOLD = 0.5  # soft masks are binarised: > 0.5 = repaint / belongs to the label


# --------------------------------------------------------------------------- image helpers
def to_uint8(image, name: str = "image") -> np.ndarray:
    """PIL / float tensor or array in 0..1 (H, W, 3) or (3, H, W) / uint8 array -> (H, W, 3) uint8."""
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name}: expected a PIL image, tensor or array, got {type(image).__name__}")
    array = image
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3:
        raise ValueError(f"{name}: image must be (H, W, 3) or (3, H, W), got shape {array.shape}")
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

    size = (H, W) the mask must have; a different size is a ValueError naming both sizes.
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
            raise ValueError(f"{name}: expected a (H, W) mask, got shape {tuple(np.shape(mask))}")
    if size is not None and tuple(array.shape) != tuple(size):
        raise ValueError(f"{name}: size {array.shape[1]}x{array.shape[0]} (WxH) does not match the image "
                         f"{size[1]}x{size[0]}; resize the mask to the image first")
    return np.clip(array, 0.0, 1.0)


# --------------------------------------------------------------------------- inpainting
FILLS = {"black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}


def inpaint_condition(image, mask, fill: str = "black") -> Image.Image:
    """The inpainting condition frame: the image with the masked region (mask > 0.5) painted over.

    fill 'black' (default) is what the reference's inpainting example feeds the model (its
    masked region is pure black); 'grey' (128) is what the demo's unused helper paints.
    """
    if fill not in FILLS:
        raise ValueError(f"fill={fill!r} is not one of {', '.join(FILLS)}; use 'black' (what the model saw)")
    pixels = to_uint8(image).copy()
    m = mask_array(mask, pixels.shape[:2]) > MASK_THRESHOLD
    pixels[m] = FILLS[fill]
    return Image.fromarray(pixels)


def feather_alpha(mask, feather: int) -> np.ndarray:
    """Blend weight of the result: 0 outside the mask, ramping to 1 over `feather` pixels inside it.

    The ramp lies inside the masked region, so unmasked pixels keep weight 0 (stay exact).
    """
    import cv2

    binary = (mask_array(mask) > MASK_THRESHOLD).astype(np.uint8)
    if feather <= 0:
        return binary.astype(np.float32)
    # distance of each masked pixel to the nearest unmasked pixel (image borders do not count)
    padded = np.pad(binary, 1, constant_values=1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    return np.clip(distance / float(feather), 0.0, 1.0).astype(np.float32) * binary


crop_box = preprocess.crop_box  # the crop the model saw, to paste results back


def composite_inpaint(generated, original, mask, feather: int = 8) -> np.ndarray:
    """Paste a generated image back into the original: (H, W, 3) float32 0..1 at the original's size.

    The generated frame covers the centre crop the pipeline took from the original; it is resized
    onto that crop and blended with `feather_alpha(mask, feather)`. Unmasked pixels are exactly the
    original's; masked pixels outside the crop window (if the size cropped them away) stay original.
    """
    import cv2

    base = to_float(original, "original")
    m = mask_array(mask, base.shape[:2])
    gen = to_float(generated, "generated")
    top, left, ch, cw = crop_box(base.shape[0], base.shape[1], gen.shape[0], gen.shape[1])
    resized = cv2.resize(gen, (cw, ch), interpolation=cv2.INTER_LINEAR if cw >= gen.shape[1] else cv2.INTER_AREA)
    alpha = feather_alpha(m, feather)
    out = base.copy()
    window = (slice(top, top + ch), slice(left, left + cw))
    a = alpha[window][..., None]
    out[window] = a * resized + (1.0 - a) * base[window]
    out[alpha == 0] = base[alpha == 0]
    return out


# --------------------------------------------------------------------------- layout boxes
@dataclass
class BoxLayout:
    """A rendered box map: `image` (PIL RGB), one ColorLabel per distinct label, boxes in pixels
    ({'label', 'box': [x0, y0, x1, y1], 'color'}, x1/y1 exclusive)."""

    image: Image.Image
    labels: list[ColorLabel]
    boxes: list[dict]


def _box_list(boxes) -> list[dict]:
    if isinstance(boxes, str):
        import json

        try:
            boxes = json.loads(boxes) if boxes.strip() else []
        except json.JSONDecodeError as e:
            raise ValueError(f"boxes: not valid JSON ({e}); give a list of {{\"label\", \"box\"}}") from None
    if boxes is None or not isinstance(boxes, (list, tuple)):
        raise ValueError(f"boxes: expected a list of {{'label', 'box': [x0, y0, x1, y1]}}, got {type(boxes).__name__}")
    out = []
    for i, item in enumerate(boxes):
        if not isinstance(item, dict) or "box" not in item:
            raise ValueError(f"boxes[{i}] = {item!r}: each box is {{'label': str, 'box': [x0, y0, x1, y1]}}")
        box = item["box"]
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise ValueError(f"boxes[{i}]['box'] = {box!r}: must be 4 numbers [x0, y0, x1, y1]")
        try:
            box = [float(v) for v in box]
        except (TypeError, ValueError):
            raise ValueError(f"boxes[{i}]['box'] = {box!r}: must be 4 numbers [x0, y0, x1, y1]") from None
        label = str(item.get("label", "")).strip()
        if not label:
            raise ValueError(f"boxes[{i}] has no label; give each box a label (the concept it holds)")
        out.append({"label": label, "box": box, "color": item.get("color")})
    return out


def box_units(boxes: list[dict], units: str = "auto") -> str:
    """'fraction' or 'pixel'. auto: fractions of the canvas when every coordinate is within 0..1."""
    if units not in ("auto", "fraction", "pixel"):
        raise ValueError(f"box units {units!r} must be 'auto', 'fraction' or 'pixel'")
    if units != "auto":
        return units
    return "fraction" if all(0.0 <= v <= 1.0 for b in boxes for v in b["box"]) else "pixel"


def boxes_to_pixels(boxes, size: tuple[int, int], units: str = "auto") -> list[dict]:
    """Boxes -> integer pixel boxes [x0, y0, x1, y1] (x1, y1 exclusive) clipped to the canvas (H, W).

    Fractions are multiplied by the canvas width/height and rounded; pixels are rounded.
    A box that is empty after clipping is a ValueError.
    """
    from . import validation

    boxes = _box_list(boxes)
    height, width = size
    kind = box_units(boxes, units)
    validation.boxes(boxes, units=kind, canvas=(height, width), allow_empty=True)  # inside the canvas, ordered
    out = []
    for i, b in enumerate(boxes):
        x0, y0, x1, y1 = b["box"]
        if kind == "fraction":
            x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
        x0, x1 = sorted((int(round(x0)), int(round(x1))))
        y0, y1 = sorted((int(round(y0)), int(round(y1))))
        x0, x1 = max(0, x0), min(width, x1)
        y0, y1 = max(0, y0), min(height, y1)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"boxes[{i}] {b['box']} ({kind}) is empty inside the {width}x{height} canvas; "
                             "give x0 < x1 and y0 < y1 within the canvas")
        out.append({"label": b["label"], "box": [x0, y0, x1, y1], "color": b["color"]})
    return out


def _labels_for(items: list[dict]) -> list[ColorLabel]:
    """Distinct labels in order of first appearance, with the first colour pinned for each."""
    order, pins = [], {}
    for item in items:
        if item["label"] not in pins:
            order.append(item["label"])
            pins[item["label"]] = item.get("color")
        elif item.get("color") is not None and pins[item["label"]] is not None:
            from .palette import resolve_color
            if resolve_color(item["color"]) != resolve_color(pins[item["label"]]):
                raise ValueError(f"label {item['label']!r} is given two colours ({pins[item['label']]}, "
                                 f"{item['color']}); one label = one colour")
    return assign_colors(order, [pins[k] for k in order])


def box_map(boxes, size: tuple[int, int] = (512, 512), units: str = "auto") -> BoxLayout:
    """Render layout boxes: filled rectangles in each label's palette colour on black (like the
    training maps). Boxes with the same label share a colour; colours go in palette order of first
    appearance unless a box has 'color'. Later boxes are drawn over earlier ones.

    boxes: [{'label': str, 'box': [x0, y0, x1, y1], 'color'?: name/hex}] or its JSON text;
    coordinates in pixels of the (H, W) canvas or fractions 0..1 (units='auto' decides: all values
    within 0..1 = fractions). Empty list, more than 20 boxes: ValueError.
    """
    items = _box_list(boxes)
    if not items:
        raise ValueError("boxes is empty; give at least one {'label', 'box': [x0, y0, x1, y1]}")
    if len(items) > MAX_COLORS:
        raise ValueError(f"{len(items)} boxes given; the model's palette allows at most {MAX_COLORS} "
                         "(one colour per box/label) - remove some boxes")
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"canvas size {size} must be positive (height, width)")
    pixels = boxes_to_pixels(items, (height, width), units)
    labels = _labels_for(pixels)
    colour = {lab.label: lab for lab in labels}
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for b in pixels:
        x0, y0, x1, y1 = b["box"]
        canvas[y0:y1, x0:x1] = colour[b["label"]].rgb
        b["color"] = colour[b["label"]].hex
    return BoxLayout(Image.fromarray(canvas), labels, pixels)


# --------------------------------------------------------------------------- semantic maps
@dataclass
class SemanticLayout:
    image: Image.Image
    labels: list[ColorLabel]


def semantic_map(masks, labels=None) -> SemanticLayout:
    """Labelled masks -> a colour-coded map (palette colours on black) and its ColorLabels.

    masks: [(label, mask), ...] or {label: mask}; every mask (H, W), 1 = the label, same size.
    labels: optional colours: [(label, colour)] / {label: colour} / ['cat=cyan']; default palette order.
    Later masks are painted over earlier ones. More than 20 labels, masks of different sizes: ValueError.
    """
    items = list(masks.items()) if isinstance(masks, dict) else list(masks or [])
    if not items:
        raise ValueError("masks is empty; give [(label, mask), ...] with at least one mask")
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"masks[{i}]: expected a (label, mask) pair, got {type(item).__name__}")
    names = [str(label).strip() for label, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"masks repeat a label ({names}); merge the masks of one label first")
    pins = {}
    if labels is not None:
        from .palette import split_labels

        lab_names, lab_colors = split_labels(list(labels.items()) if isinstance(labels, dict) else labels)
        pins = dict(zip(lab_names, lab_colors))
        unknown = set(pins) - set(names)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} have no mask; give a mask for each label")
    colour_labels = assign_colors(names, [pins.get(n) for n in names])
    size = mask_array(items[0][1], name=f"mask of {names[0]!r}").shape
    canvas = np.zeros(size + (3,), dtype=np.uint8)
    for (label, mask), lab in zip(items, colour_labels):
        m = mask_array(mask, size, name=f"mask of {label!r}") > MASK_THRESHOLD
        canvas[m] = lab.rgb
    return SemanticLayout(Image.fromarray(canvas), colour_labels)


# --------------------------------------------------------------------------- references
def reference_list(references, max_count: int = 3) -> list[tuple[Any, str]]:
    """[(image, caption)] or [image] -> [(image, caption)], 1..max_count of them."""
    if references is None:
        raise ValueError("references is None; give [(image, caption), ...] (1 to "
                         f"{max_count} reference image(s))")
    refs = []
    for i, item in enumerate(references):
        if isinstance(item, (tuple, list)) and len(item) == 2 and (item[1] is None or isinstance(item[1], str)):
            image, caption = item
        else:
            image, caption = item, ""
        if image is None:
            raise ValueError(f"references[{i}] has no image; give (image, caption)")
        refs.append((image, (caption or "").strip()))
    if not 1 <= len(refs) <= max_count:
        raise ValueError(f"{len(refs)} reference images given; this task takes 1 to {max_count}")
    return refs


def reference_prompt(caption: str, reference_captions: Sequence[str]) -> str:
    """'[[img0]] <target caption> [[img1]] <caption 1> ...' (frame 0 = the generated image)."""
    from .tasks import join_prompt

    parts = ["[[img0]]", caption]
    for i, cap in enumerate(reference_captions, start=1):
        parts += [f"[[img{i}]]", cap]
    return join_prompt(*parts)


# --------------------------------------------------------------------------- multi-view
@dataclass
class ViewSpec:
    azimuth: float | None
    elevation: float | None
    distance: float | None
    image: Any = None

    @property
    def image_given(self) -> bool:
        return self.image is not None

    @property
    def camera_given(self) -> bool:
        return self.azimuth is not None


@dataclass
class MultiviewLayout:
    """Views in order; the denoise mask interleaves [image_0, ray_0, image_1, ray_1, ...]."""

    views: list[ViewSpec]

    @property
    def denoise_mask(self) -> list[int]:
        mask = []
        for v in self.views:
            mask += [0 if v.image_given else 1, 0 if v.camera_given else 1]
        return mask


def _per_view(values, count: int, name: str) -> list:
    if values is None:
        return [None] * count
    if isinstance(values, (int, float)):
        return [float(values)] * count
    values = [None if v is None else float(v) for v in values]
    if len(values) == 1 and count > 1:
        return values * count
    if len(values) != count:
        raise ValueError(f"{name}: {len(values)} value(s) for {count} views; give one per view (None = unknown)")
    return values


def multiview_layout(images: Sequence, azimuths, elevations=None, distances=1.5,
                     image_views: Sequence[int] | None = None) -> MultiviewLayout:
    """Which views have images and cameras. One view per azimuth (None = unknown camera, generated);
    images go to `image_views` (default: the first len(images) views); views without an image are
    generated. Elevations default to 0 for known cameras; distances may be one number."""
    azimuths = [None if a is None else float(a) for a in (azimuths or [])]
    images = list(images or [])
    image_views = list(range(len(images))) if image_views is None else [int(v) for v in image_views]
    if len(image_views) != len(images):
        raise ValueError(f"image_views {image_views} has {len(image_views)} entries for {len(images)} images; "
                         "give one view index per image")
    count = max([len(azimuths)] + [v + 1 for v in image_views])
    if count == 0:
        raise ValueError("no views: give azimuths (one per view) and/or images")
    if len(set(image_views)) != len(image_views) or any(v < 0 for v in image_views):
        raise ValueError(f"image_views {image_views} must be distinct view indices >= 0")
    azimuths = azimuths + [None] * (count - len(azimuths))
    elevations = _per_view(elevations if elevations is not None else [None if a is None else 0.0 for a in azimuths],
                           count, "elevations")
    distances = _per_view(distances, count, "distances")
    views = []
    placed = dict(zip(image_views, images))
    for i in range(count):
        az, el, dist = azimuths[i], elevations[i], distances[i]
        if az is None:
            el = dist = None
        else:
            if el is None:
                raise ValueError(f"view {i}: azimuth {az} is known but elevation is None; give both or neither")
            if dist is None or dist <= 0:
                raise ValueError(f"view {i}: distance {dist} must be a positive number")
        views.append(ViewSpec(az, el, dist, placed.get(i)))
    if not any(v.camera_given for v in views):
        raise ValueError("no camera is known; give the camera of at least one view (view 0: azimuth 0, "
                         "elevation 0) - the model needs one reference camera")
    if all(v.image_given and v.camera_given for v in views):
        raise ValueError("every view's image and camera are given; nothing to generate")
    return MultiviewLayout(views)


def multiview_frames(layout: MultiviewLayout, size: int = 512, focal: float = cameras.DEFAULT_FOCAL):
    """Frames of a multi-view layout (rays of the known cameras, relative to the first known one)."""
    from . import layout as layout_mod

    views = layout.views
    return layout_mod.multiview_frames(layout.denoise_mask, [v.image for v in views if v.image_given],
                                       [v.azimuth for v in views], [v.elevation for v in views],
                                       [v.distance for v in views], focal=focal, size=size)


def camera_rays(camera_list: Sequence, size: int, focal: float = cameras.DEFAULT_FOCAL) -> torch.Tensor:
    """[(azimuth, elevation, distance)] -> latent ray frames (V, 16, size/8, size/8), relative to the first."""
    cams = []
    for i, cam in enumerate(camera_list):
        if not isinstance(cam, (tuple, list)) or len(cam) not in (2, 3):
            raise ValueError(f"camera {i} = {cam!r}: give (azimuth, elevation[, distance]) in degrees")
        cams.append((float(cam[0]), float(cam[1]), float(cam[2]) if len(cam) == 3 else 1.5))
    return cameras.ray_frames([c[0] for c in cams], [c[1] for c in cams], [c[2] for c in cams], size, focal=focal)


# --------------------------------------------------------------------------- canny
def canny_map(image, low: int = 100, high: int = 200) -> Image.Image:
    """OpenCV Canny edges of a photo: white edges on black, RGB (what canny2image was trained on).

    low/high: the hysteresis thresholds of cv2.Canny (0..255 grey levels; low < high).
    """
    import cv2

    if not (0 <= low < high):
        raise ValueError(f"canny thresholds low={low}, high={high}: need 0 <= low < high (e.g. 100, 200)")
    grey = cv2.cvtColor(to_uint8(image, "photo"), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, int(low), int(high))
    return Image.fromarray(np.repeat(edges[..., None], 3, axis=-1))
