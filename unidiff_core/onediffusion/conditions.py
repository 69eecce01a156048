"""Condition builders: turn a task's natural inputs into the frames the model was trained on.

Plain functions on PIL images / numpy arrays / tensors, each usable on its own:

* inpainting: `inpaint_source(image, mask)` builds, once, the repaint mask and the condition frame
  (`inpaint_condition`: the masked region (1 = repaint) painted black, as in the reference's
  inpainting example "Inpainting with Black mask"); `composite_inpaint` pastes a result back into
  the original with a feathered edge, unmasked pixels exact.
* layout boxes: `box_map(boxes, (H, W))` -> filled palette-coloured rectangles on black + labels.
* semantic maps: `semantic_map([(label, mask), ...])` -> palette-coloured regions on black + labels.
* references: `reference_list` checks the (image, caption) pairs of [[imgN]] prompts.
* multi-view: `multiview_layout` (which views/cameras are given) and `multiview_frames` (ray frames).
* Canny: `canny_map(photo, low, high)` with OpenCV, white edges on black.
HED and pose maps are taken as given images (no extractor is bundled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from ..common.errors import InputError
from ..common.images import MASK_THRESHOLD, image_hw, mask_array, resize_mask, to_float, to_uint8
from . import cameras, validation
from . import layout as frame_layout
from .palette import ColorLabel, split_labels
from .preprocess import crop_box  # the crop the model saw, to paste results back


# --------------------------------------------------------------------------- inpainting
FILLS = {"black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}


def inpaint_condition(image, mask, fill: str = "black") -> Image.Image:
    """The inpainting condition frame: the image with the masked region (mask > 0.5) painted over.

    fill 'black' (default) is what the reference's inpainting example feeds the model (its
    masked region is pure black); 'grey' (128) is what the demo's unused helper paints.
    """
    if fill not in FILLS:
        raise InputError("fill", fill, "not a fill colour", f"use one of {', '.join(FILLS)} ('black': what the "
                         "model saw)")
    pixels = to_uint8(image).copy()
    m = mask_array(mask, pixels.shape[:2]) > MASK_THRESHOLD
    pixels[m] = FILLS[fill]
    return Image.fromarray(pixels)


@dataclass
class InpaintSource:
    """An inpainting input, built once: the original, its repaint mask (H, W) float32 at the image's size,
    the condition frame (the masked region painted over) and the composite options."""

    original: Any
    mask: np.ndarray
    condition: Image.Image
    composite: bool = False
    feather: int = 8


def inpaint_source(image, mask, fill: str = "black", composite: bool = False, feather: int = 8,
                   scaled_mask_ok: bool = False) -> InpaintSource:
    """Image + mask (1 = repaint) -> InpaintSource. scaled_mask_ok: a mask with the image's aspect ratio
    but another size (ComfyUI's Load Image mask) is resized to the image; otherwise sizes must match."""
    m = mask_array(mask)
    if float(m.max()) <= MASK_THRESHOLD:  # first: Load Image gives a 64x64 zero mask for an image without alpha
        raise InputError("mask", "every value <= 0.5", "nothing to repaint", "paint the region to repaint "
                         "(1 = repaint), e.g. in the image editor of Load Image")
    hw = image_hw(image)
    if scaled_mask_ok and validation.mask_fits_image(m.shape, hw):
        m = resize_mask(m, hw)
        if float(m.max()) <= MASK_THRESHOLD:
            raise InputError("mask", "every value <= 0.5 after resizing it to the image", "nothing to repaint",
                             "paint a larger region to repaint (1 = repaint)")
    m = mask_array(m, hw)
    return InpaintSource(original=image, mask=m, condition=inpaint_condition(image, m, fill=fill),
                         composite=bool(composite), feather=int(feather))


def feather_alpha(mask, feather: int) -> np.ndarray:
    """Blend weight of the result: 0 outside the mask, ramping to 1 over `feather` pixels inside it.

    The ramp lies inside the masked region, so unmasked pixels keep weight 0 (stay exact).
    """
    binary = (mask_array(mask) > MASK_THRESHOLD).astype(np.uint8)
    if feather <= 0:
        return binary.astype(np.float32)
    # distance of each masked pixel to the nearest unmasked pixel (image borders do not count)
    padded = np.pad(binary, 1, constant_values=1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    return np.clip(distance / float(feather), 0.0, 1.0).astype(np.float32) * binary


def composite_inpaint(generated, original, mask, feather: int = 8) -> np.ndarray:
    """Paste a generated image back into the original: (H, W, 3) float32 0..1 at the original's size.

    The generated frame covers the centre crop the pipeline took from the original; it is resized
    onto that crop and blended with `feather_alpha(mask, feather)`. Unmasked pixels are exactly the
    original's; masked pixels outside the crop window (if the size cropped them away) stay original.
    """
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


def boxes_to_pixels(boxes, size: tuple[int, int], units: str = "auto") -> list[dict]:
    """Boxes (checked by validation.boxes) -> integer pixel boxes [x0, y0, x1, y1] (x1, y1 exclusive)
    clipped to the canvas (H, W). Fractions are multiplied by the canvas width/height and rounded;
    pixels are rounded. A box that is empty after rounding is an error."""
    height, width = size
    items = validation.boxes(boxes, units=units, canvas=(height, width))  # inside the canvas, ordered, <= 20
    kind = validation.box_units(items, units)
    out = []
    for i, b in enumerate(items):
        x0, y0, x1, y1 = b["box"]
        if kind == "fraction":
            x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
        x0, x1 = sorted((int(round(x0)), int(round(x1))))
        y0, y1 = sorted((int(round(y0)), int(round(y1))))
        x0, x1 = max(0, x0), min(width, x1)
        y0, y1 = max(0, y0), min(height, y1)
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"boxes[{i}].box", b["box"], f"empty inside the {width}x{height} canvas ({kind})",
                             "give x0 < x1 and y0 < y1 at least a pixel apart")
        out.append({"label": b["label"], "box": [x0, y0, x1, y1], "color": b.get("color")})
    return out


def _hex(colour) -> str:
    """A box's colour (palette name, hex code or index) -> its palette hex code; a colour outside it is named."""
    return validation.label_list([("box", colour)], "color")[0].hex


def _labels_for(items: list[dict]) -> list[ColorLabel]:
    """Distinct labels in order of first appearance, with the first colour pinned for each."""
    order, pins = [], {}
    for item in items:
        if item["label"] not in pins:
            order.append(item["label"])
            pins[item["label"]] = item.get("color")
        elif item.get("color") is not None and pins[item["label"]] is not None:
            if _hex(item["color"]) != _hex(pins[item["label"]]):
                raise InputError(f"label {item['label']!r}", (pins[item["label"]], item["color"]),
                                 "given two colours", "one label = one colour")
    return validation.label_list([(k, pins[k]) for k in order])


def box_map(boxes, size: tuple[int, int] = (512, 512), units: str = "auto") -> BoxLayout:
    """Render layout boxes: filled rectangles in each label's palette colour on black (like the
    training maps). Boxes with the same label share a colour; colours go in palette order of first
    appearance unless a box has 'color'. Later boxes are drawn over earlier ones.

    boxes: [{'label': str, 'box': [x0, y0, x1, y1], 'color'?: name/hex}] or its JSON text;
    coordinates in pixels of the (H, W) canvas or fractions 0..1 (units='auto' decides: all values
    within 0..1 = fractions). Checked by validation.boxes (1 to 20 boxes, inside the canvas, ordered).
    """
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise InputError("canvas_size", size, "not positive", "give (height, width) > 0")
    pixels = boxes_to_pixels(boxes, (height, width), units)
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
    Later masks are painted over earlier ones. More than 20 labels, masks of different sizes: an error.
    """
    items = list(masks.items()) if isinstance(masks, dict) else list(masks or [])
    if not items:
        raise InputError("masks", masks, "masks is empty", "give [(label, mask), ...] with at least one mask")
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InputError(f"masks[{i}]", type(item).__name__, "not a (label, mask) pair", "give (label, mask)")
    names = [str(label).strip() for label, _ in items]
    if len(set(names)) != len(names):
        raise InputError("masks", names, "masks repeat a label", "merge the masks of one label first")
    pins = {}
    if labels is not None:
        lab_names, lab_colors = split_labels(list(labels.items()) if isinstance(labels, dict) else labels)
        pins = dict(zip(lab_names, lab_colors))
        unknown = set(pins) - set(names)
        if unknown:
            raise InputError("labels", sorted(unknown), "labels without a mask", "give a mask for each label")
    colour_labels = validation.label_list([(n, pins.get(n)) for n in names])
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
        raise InputError("references", None, "no reference", f"give [(image, caption), ...] (1 to {max_count} "
                         "reference image(s))")
    refs = []
    for i, item in enumerate(references):
        if isinstance(item, (tuple, list)) and len(item) == 2 and (item[1] is None or isinstance(item[1], str)):
            image, caption = item
        else:
            image, caption = item, ""
        if image is None:
            raise InputError(f"references[{i}]", None, "no image", "give (image, caption)")
        refs.append((image, (caption or "").strip()))
    if not 1 <= len(refs) <= max_count:
        raise InputError("references", f"{len(refs)} images", f"{len(refs)} reference images given; this task takes "
                         f"1 to {max_count}", "remove some" if refs else "give at least one")
    return refs


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
        raise InputError(name, values, f"{len(values)} value(s) for {count} views", "give one per view "
                         "(None = unknown)")
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
        raise InputError("image_views", image_views, f"{len(image_views)} entries for {len(images)} images",
                         "give one view index per image")
    count = max([len(azimuths)] + [v + 1 for v in image_views])
    if count == 0:
        raise InputError("azimuths", azimuths, "no views", "give azimuths (one per view) and/or images")
    if len(set(image_views)) != len(image_views) or any(v < 0 for v in image_views):
        raise InputError("image_views", image_views, "not distinct view indices >= 0", "give each image its view")
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
                raise InputError(f"view {i}", f"azimuth {az}, elevation None", "the azimuth is known but the "
                                 "elevation is not", "give both or neither")
            if dist is None or dist <= 0:
                raise InputError(f"view {i}", f"distance {dist}", "not a positive distance", "give a distance > 0")
        views.append(ViewSpec(az, el, dist, placed.get(i)))
    if not any(v.camera_given for v in views):
        raise InputError("azimuths", azimuths, "no camera is known", "give the camera of at least one view "
                         "(view 0: azimuth 0, elevation 0) - the model needs one reference camera")
    if all(v.image_given and v.camera_given for v in views):
        raise InputError("images", f"{len(images)} images", "every view's image and camera are given; nothing to "
                         "generate", "leave a view without an image or a camera")
    return MultiviewLayout(views)


def multiview_frames(layout: MultiviewLayout, size: int = 512, focal: float = cameras.DEFAULT_FOCAL):
    """Frames of a multi-view layout (rays of the known cameras, relative to the first known one)."""
    views = layout.views
    return frame_layout.multiview_frames(layout.denoise_mask, [v.image for v in views if v.image_given],
                                         [v.azimuth for v in views], [v.elevation for v in views],
                                         [v.distance for v in views], focal=focal, size=size)


def camera_rays(camera_list: Sequence, size: int, focal: float = cameras.DEFAULT_FOCAL) -> torch.Tensor:
    """[(azimuth, elevation, distance)] -> latent ray frames (V, 16, size/8, size/8), relative to the first."""
    cams = []
    for i, cam in enumerate(camera_list):
        if not isinstance(cam, (tuple, list)) or len(cam) not in (2, 3):
            raise InputError(f"camera {i}", cam, "not a camera", "give (azimuth, elevation[, distance]) in degrees")
        cams.append((float(cam[0]), float(cam[1]), float(cam[2]) if len(cam) == 3 else 1.5))
    return cameras.ray_frames([c[0] for c in cams], [c[1] for c in cams], [c[2] for c in cams], size, focal=focal)


# --------------------------------------------------------------------------- canny
def canny_map(image, low: int = 100, high: int = 200) -> Image.Image:
    """OpenCV Canny edges of a photo: white edges on black, RGB (what canny2image was trained on).

    low/high: the hysteresis thresholds of cv2.Canny (0..255 grey levels; low < high).
    """
    if not (0 <= low < high):
        raise InputError("canny_low/canny_high", (low, high), "need 0 <= low < high", "use e.g. 100, 200")
    grey = cv2.cvtColor(to_uint8(image, "photo"), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, int(low), int(high))
    return Image.fromarray(np.repeat(edges[..., None], 3, axis=-1))
