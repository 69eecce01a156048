"""Condition maps derived exactly from a rendered scene, in the pack's own conventions.

depth: grey, near white .. far black (what `outputs.decode_depth` reads); canny: the pack's OpenCV
Canny map of the image; HED-like: soft white edges of the object boundaries on black; pose: a
colour-coded skeleton on black (stick figures, `figure.py`); semantic and box maps: the pack's own
`conditions.semantic_map` / `conditions.box_map` (palette colours on black).
"""

from __future__ import annotations

import cv2
import numpy as np

from unidiff_core.onediffusion import conditions

from .scenes import Rendered, Scene


def depth_frame(depth: np.ndarray) -> np.ndarray:
    """(H, W) depth 0 near .. 1 far -> (H, W, 3) grey image, near bright."""
    grey = 1.0 - np.clip(depth, 0, 1)
    return np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)


def canny_frame(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    return np.asarray(conditions.canny_map(image, low, high), dtype=np.float32) / 255.0


def hed_frame(rendered: Rendered) -> np.ndarray:
    """Soft edges: object boundaries (id changes) blurred and normalised, white on black."""
    ids = rendered.ids
    edge = np.zeros(ids.shape, dtype=np.float32)
    edge[:, 1:] += ids[:, 1:] != ids[:, :-1]
    edge[1:, :] += ids[1:, :] != ids[:-1, :]
    soft = cv2.GaussianBlur(np.minimum(edge, 1.0), (0, 0), 1.0)
    soft = soft / max(float(soft.max()), 1e-6)
    return np.repeat(np.clip(soft * 1.3, 0, 1)[..., None], 3, axis=-1).astype(np.float32)


def label_masks(scene: Scene, rendered: Rendered) -> list[tuple[str, np.ndarray]]:
    """One (label, visible mask) per shape kind present (instances of a kind merged), first-seen order."""
    out: dict[str, np.ndarray] = {}
    for i, shape in enumerate(scene.shapes):
        m = rendered.mask(i)
        if m.any():
            out[shape.kind] = np.maximum(out.get(shape.kind, np.zeros_like(m)), m)
    return list(out.items())


def semantic_frame(masks: list[tuple[str, np.ndarray]]):
    """The pack's semantic map (PIL) and its ColorLabels, colours in the order of `masks`."""
    layout = conditions.semantic_map(masks)
    return np.asarray(layout.image, dtype=np.float32) / 255.0, layout.labels


def object_boxes(scene: Scene, rendered: Rendered, order: list[int] | None = None) -> list[dict]:
    """[{'label': kind, 'box': [x0, y0, x1, y1]}] of the visible shapes, drawn far to near."""
    from .scenes import draw_order

    boxes = []
    for i in order if order is not None else draw_order(scene):
        box = rendered.box(i)
        if box is not None:
            boxes.append({"label": scene.shapes[i].kind, "box": box})
    return boxes


def box_frame(boxes: list[dict], size: int):
    layout = conditions.box_map(boxes, (size, size), units="pixel")
    return np.asarray(layout.image, dtype=np.float32) / 255.0, layout.labels, layout.boxes


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), float(sigma)).astype(np.float32)
