"""Output decoders: generated frames -> images, depth, masks, boxes, views and cameras.

Single-image decoders work on one (H, W, 3) image (PIL, uint8 array or float 0..1):

* `decode_depth(frame)` -> DepthResult: `depth` float32 (H, W) with **0 = near, 1 = far**
  (grey = ITU-R 601 luma of the frame as PIL's 'L' does, min-max normalised per image, then
  1 - x: the model paints near surfaces bright), `grey` (near white) and `color` (matplotlib's
  'Spectral' of `depth`, re-implemented: near red, far blue), as the reference demo shows it.
* `decode_segmentation(frame, labels)` -> one boolean mask per label: pixels whose nearest colour
  (among the 20 palette colours, black and white) is the label's colour, within `tolerance`
  (RGB distance), minus blobs and holes smaller than `min_area` pixels; plus a 50/50 overlay.
* `decode_boxes(frame, labels)` -> boxes (label, x0, y0, x1, y1, score) from the connected regions
  of each label's colour (x1/y1 exclusive pixels; score = how much of the box the region fills).
* `cameras_from_ray_latents(...)` -> camera poses from predicted ray frames (least-squares centre +
  rotation, numpy).

`decode_result(pipe, request, result)` applies them to a task's GenerationResult -> TaskOutput.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..common.images import to_float, to_uint8
from . import cameras
from .conditions import composite_inpaint
from .palette import PALETTE, ColorLabel, hex_to_rgb
from .pipeline import IMAGE
from .preprocess import center_crop_resize, preprocess_images, to_chw_tensor

DEFAULT_TOLERANCE = 80.0  # RGB distance from a label's colour still counted as that colour
DEFAULT_MIN_AREA = 16  # pixels: smaller blobs/holes are noise

# ColorBrewer 'Spectral' (11 classes), the anchor colours of matplotlib's Spectral colour map.
_SPECTRAL = np.array([
    (158, 1, 66), (213, 62, 79), (244, 109, 67), (253, 174, 97), (254, 224, 139), (255, 255, 191),
    (230, 245, 152), (171, 221, 164), (102, 194, 165), (50, 136, 189), (94, 79, 162)], dtype=np.float64) / 255.0
_LUT_SIZE = 256  # matplotlib samples the segmented map into 256 entries and looks values up


def _spectral_lut() -> np.ndarray:
    anchors = np.linspace(0.0, 1.0, len(_SPECTRAL))
    x = np.linspace(0.0, 1.0, _LUT_SIZE)
    return np.stack([np.interp(x, anchors, _SPECTRAL[:, c]) for c in range(3)], axis=-1)


SPECTRAL_LUT = _spectral_lut()


def spectral(values) -> np.ndarray:
    """Spectral colour map: values 0..1 (any shape) -> RGB float32 (..., 3); 0 red, 0.5 pale yellow, 1 blue."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    index = np.clip((v * _LUT_SIZE).astype(np.int64), 0, _LUT_SIZE - 1)
    return SPECTRAL_LUT[index].astype(np.float32)


LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # PIL 'L' weights


# --------------------------------------------------------------------------- depth
@dataclass
class DepthResult:
    depth: np.ndarray  # (H, W) float32, 0 near .. 1 far
    grey: np.ndarray  # (H, W, 3) float32, near white .. far black (the model's own convention)
    color: np.ndarray  # (H, W, 3) float32, Spectral(depth): near red .. far blue


def decode_depth(frame) -> DepthResult:
    """A generated depth frame -> normalised depth (0 near, 1 far), grey and colour images.

    grey = luma of the frame; d = (grey - min) / (max - min) per image; depth = 1 - d.
    A flat frame (max = min) gives depth 1 everywhere.
    """
    pixels = to_float(frame, "depth frame")
    grey = pixels @ LUMA
    lo, hi = float(grey.min()), float(grey.max())
    normalised = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
    depth = (1.0 - normalised).astype(np.float32)
    near_bright = np.repeat((1.0 - depth)[..., None], 3, axis=-1)
    return DepthResult(depth, near_bright.astype(np.float32), spectral(depth))


# --------------------------------------------------------------------------- colour classification
def _candidates(labels: list[ColorLabel]) -> tuple[np.ndarray, list[str]]:
    colours = [h for h, _ in PALETTE] + ["#000000", "#FFFFFF"]
    for lab in labels:
        if lab.hex not in colours:
            colours.append(lab.hex)
    return np.array([hex_to_rgb(h) for h in colours], dtype=np.float32), colours


def color_masks(frame, labels: list[ColorLabel], tolerance: float = DEFAULT_TOLERANCE) -> dict[str, np.ndarray]:
    """Raw per-label masks: nearest colour (palette + black + white) = the label's, distance <= tolerance."""
    pixels = to_uint8(frame, "map").astype(np.float32)
    table, hexes = _candidates(labels)
    distance = np.linalg.norm(pixels[:, :, None, :] - table[None, None], axis=-1)
    nearest = distance.argmin(-1)
    close = distance.min(-1) <= tolerance
    return {lab.label: (nearest == hexes.index(lab.hex)) & close for lab in labels}


def clean_mask(mask: np.ndarray, min_area: int = DEFAULT_MIN_AREA) -> np.ndarray:
    """Drop connected blobs smaller than min_area pixels and fill holes smaller than min_area."""
    mask = np.asarray(mask, dtype=bool)
    if min_area <= 1:
        return mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    mask = keep[labels]
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    fill = np.zeros(count, dtype=bool)
    h, w = mask.shape
    for k in range(1, count):
        x, y, bw, bh, area = stats[k]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        fill[k] = area < min_area and not touches
    return mask | fill[labels]


def overlay(source, map_frame, alpha: float = 0.5) -> np.ndarray:
    """50/50 blend (like the reference demo) of the source image, centre-cropped and resized to the
    map's size the way the pipeline saw it, and the map -> (H, W, 3) float32."""
    target = to_float(map_frame, "map")
    if source is None:
        return target
    src = center_crop_resize(to_chw_tensor(source), target.shape[0], target.shape[1]).permute(1, 2, 0).numpy()
    return ((1 - alpha) * np.clip(src, 0, 1) + alpha * target).astype(np.float32)


# --------------------------------------------------------------------------- segmentation / boxes
@dataclass
class SegmentationResult:
    masks: dict[str, np.ndarray]  # label -> (H, W) bool
    overlay: np.ndarray  # (H, W, 3) float32


def decode_segmentation(frame, labels: list[ColorLabel], source=None, tolerance: float = DEFAULT_TOLERANCE,
                        min_area: int = DEFAULT_MIN_AREA) -> SegmentationResult:
    """A semantic-map frame -> one mask per requested label and the overlay on `source`."""
    if not labels:
        raise ValueError("decode_segmentation needs labels (got none); give the labels of the prompt's tokens")
    raw = color_masks(frame, labels, tolerance)
    return SegmentationResult({k: clean_mask(v, min_area) for k, v in raw.items()}, overlay(source, frame))


@dataclass
class BoxesResult:
    boxes: list[dict]  # {'label', 'color', 'x0', 'y0', 'x1', 'y1', 'score', 'box_fraction'}
    masks: dict[str, np.ndarray]  # label -> (H, W) bool, the union of its boxes
    overlay: np.ndarray


def decode_boxes(frame, labels: list[ColorLabel], source=None, tolerance: float = DEFAULT_TOLERANCE,
                 min_area: int = DEFAULT_MIN_AREA) -> BoxesResult:
    """A box-map frame -> boxes per label (one per connected region of its colour), masks, overlay.

    Coordinates are pixels of the frame, [x0, x1) x [y0, y1) (x1, y1 exclusive); `box_fraction` is
    the same box as fractions of the width/height (the box editor's format). score = region area /
    box area (1.0 for a clean filled rectangle). Boxes are sorted by label order, then top-left.
    """
    if not labels:
        raise ValueError("decode_boxes needs labels (got none); give the labels of the prompt's tokens")
    raw = color_masks(frame, labels, tolerance)
    height, width = next(iter(raw.values())).shape
    boxes, masks = [], {}
    for lab in labels:
        cleaned = clean_mask(raw[lab.label], min_area)
        count, _, stats, _ = cv2.connectedComponentsWithStats(cleaned.astype(np.uint8), connectivity=8)
        box_mask = np.zeros((height, width), dtype=bool)
        found = []
        for k in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[k])
            box_mask[y:y + h, x:x + w] = True
            found.append({"label": lab.label, "color": lab.hex, "x0": x, "y0": y, "x1": x + w, "y1": y + h,
                          "score": round(area / float(w * h), 4),
                          "box_fraction": [round(x / width, 4), round(y / height, 4), round((x + w) / width, 4),
                                           round((y + h) / height, 4)]})
        boxes += sorted(found, key=lambda b: (b["y0"], b["x0"]))
        masks[lab.label] = box_mask
    # contiguous: the overlay of a (permuted) source keeps its strides, which OpenCV's drawing refuses
    view = np.ascontiguousarray((overlay(source, frame) * 255).round().astype(np.uint8))
    for b in boxes:
        colour = tuple(int(c) for c in hex_to_rgb(b["color"]))
        cv2.rectangle(view, (b["x0"], b["y0"]), (b["x1"] - 1, b["y1"] - 1), colour, 1)
        cv2.putText(view, f"{b['label']} {b['score']:.2f}", (b["x0"], max(8, b["y0"] - 2)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.3, (255, 255, 255), 1, cv2.LINE_AA)
    return BoxesResult(boxes, masks, view.astype(np.float32) / 255.0)


# --------------------------------------------------------------------------- cameras
def cameras_from_ray_latents(ray_latents, views=None, focal: float | None = None) -> list[dict]:
    """Ray frames (V, 16, n, n) (scaled, as in the latents) -> one camera dict per view.

    views: TaskRequest.views (to place cameras back in the orbit world relative to the first known
    camera: azimuth/elevation/distance); focal: trusted focal (None = estimated per view).
    Each dict: view, given, rotation (3x3, view-0 reference axes x left/y up/z forward), centre (3),
    focal, residual (RMS ray-to-centre distance) and azimuth, elevation, distance, look_at_error_deg.
    """
    latents = torch.as_tensor(ray_latents).float()
    rays = cameras.unpack_ray_frames(latents, average_copies=True)
    recovered = cameras.cameras_from_rays(rays, focal=focal)
    reference = None
    if views:
        reference = next((v for v in views if v.camera_given), None)
    out = []
    for i, cam in enumerate(recovered):
        entry = {"view": i, "given": bool(views[i].camera_given) if views else None,
                 "rotation": np.round(cam.rotation, 6).tolist(), "centre": np.round(cam.centre, 6).tolist(),
                 "focal": round(float(cam.focal), 6), "residual": round(float(cam.centre_residual), 6)}
        if reference is not None:
            orbit = cameras.orbit_from_camera(cam, reference.azimuth, reference.elevation, reference.distance)
            entry.update({k: round(float(v), 4) for k, v in orbit.items()})
        out.append(entry)
    return out


# --------------------------------------------------------------------------- whole results
@dataclass
class TaskOutput:
    """Decoded outputs of one run. Images are (B, H, W, 3) float32 0..1 tensors (ComfyUI IMAGE),
    masks (B, H, W) float32 0/1 (ComfyUI MASK), depth (B, H, W) float32 0 near .. 1 far."""

    task: str | None
    prompt: str
    images: list[torch.Tensor] = field(default_factory=list)  # one per generated image frame, frame order
    image_frames: list[int] = field(default_factory=list)
    primary: torch.Tensor | None = None  # the task's main image output
    depth: torch.Tensor | None = None
    depth_grey: torch.Tensor | None = None
    depth_color: torch.Tensor | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    overlay: torch.Tensor | None = None
    boxes: list[list[dict]] | None = None  # per batch item
    views: list[torch.Tensor] | None = None  # per view, view order (given views: the preprocessed input)
    generated_views: list[int] | None = None
    cameras: list[list[dict]] | None = None  # per batch item, per view
    composite: torch.Tensor | None = None  # inpainting pasted into the original (original size)
    latents: torch.Tensor | None = None


def _stack(arrays) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(a, dtype=np.float32) for a in arrays]))


def decode_result(pipe, request, result, tolerance: float = DEFAULT_TOLERANCE, min_area: int = DEFAULT_MIN_AREA,
                  feather: int | None = None) -> TaskOutput:
    """Decode every generated frame of `result` by what it holds (request.whats)."""
    frames = request.frames
    whats = request.whats or ["image" if f.kind == IMAGE else "ray" for f in frames]
    generated = [i for i, f in enumerate(frames) if not f.given]
    image_frames = [i for i in generated if frames[i].kind == IMAGE]
    decoded = pipe.decode(result.latents, image_frames)
    by_frame = dict(zip(image_frames, decoded))
    out = TaskOutput(task=request.task, prompt=request.prompt, images=decoded, image_frames=image_frames,
                     latents=result.latents)
    batch = result.latents.shape[0]
    if decoded:
        out.primary = decoded[0]

    for i in image_frames:
        what, frames_b = whats[i], by_frame[i].numpy()
        if what == "depth" and out.depth is None:
            parts = [decode_depth(f) for f in frames_b]
            out.depth = _stack([p.depth for p in parts])
            out.depth_grey = _stack([p.grey for p in parts])
            out.depth_color = _stack([p.color for p in parts])
            out.primary = out.depth_color
        elif what == "semantic_map" and request.labels and out.overlay is None:
            parts = [decode_segmentation(f, request.labels, request.source_image, tolerance, min_area)
                     for f in frames_b]
            out.masks = {lab.label: _stack([p.masks[lab.label] for p in parts]) for lab in request.labels}
            out.overlay = _stack([p.overlay for p in parts])
        elif what == "box_map" and request.labels and out.boxes is None:
            parts = [decode_boxes(f, request.labels, request.source_image, tolerance, min_area) for f in frames_b]
            out.boxes = [p.boxes for p in parts]
            out.masks = {lab.label: _stack([p.masks[lab.label] for p in parts]) for lab in request.labels}
            out.overlay = _stack([p.overlay for p in parts])

    if request.inpaint is not None and request.inpaint.composite and decoded:
        info = request.inpaint
        out.composite = _stack([composite_inpaint(g, info.original, info.mask,
                                                  info.feather if feather is None else feather)
                                for g in decoded[0].numpy()])

    if request.views:
        views, gen_views = [], []
        for v, view in enumerate(request.views):
            frame = frames[view.image_frame]
            if frame.given:
                pixels = preprocess_images([frame.image], result.height, result.width)[0]
                img = ((pixels + 1) / 2).clamp(0, 1).permute(1, 2, 0)
                views.append(img[None].expand(batch, -1, -1, -1).contiguous())
            else:
                views.append(by_frame[view.image_frame])
                gen_views.append(v)
        out.views, out.generated_views = views, gen_views
        out.primary = by_frame[image_frames[0]] if image_frames else None
        if any(not frames[view.ray_frame].given for view in request.views):
            rays = [view.ray_frame for view in request.views]
            out.cameras = [cameras_from_ray_latents(result.latents[b, rays], request.views, request.focal)
                           for b in range(batch)]
    return out


# --------------------------------------------------------------------------- files
def _png(path: Path, image) -> None:
    Image.fromarray(to_uint8(image)).save(path, format="PNG")


def _safe(label: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in label.strip())
    return keep or "label"


def save_task_output(output: TaskOutput, out_dir, writer=None) -> list[Path]:
    """Write a TaskOutput's natural files into out_dir; returns the paths.

    Per batch item b: depth_{b}.png (near white), depth_color_{b}.png, depth_{b}.npy (float32, 0 near
    .. 1 far); mask_{label}_{b}.png; overlay_{b}.png; composite_{b}.png; view{v}_{b}.png; and
    boxes.json / cameras.json (lists per batch item). Image frames themselves are written by the
    caller (frame{i}_{b}.png in the CLI). writer(path, write_fn) lets the caller write atomically.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = writer or (lambda path, write: write(path))
    written = []

    def put(name: str, write):
        path = out_dir / name
        writer(path, write)
        written.append(path)

    def put_png(name, image):
        put(name, lambda p: _png(Path(p), image))

    def put_json(name, data):
        put(name, lambda p: Path(p).write_text(json.dumps(data, indent=2)))

    if output.depth is not None:
        for b in range(output.depth.shape[0]):
            put_png(f"depth_{b}.png", output.depth_grey[b].numpy())
            put_png(f"depth_color_{b}.png", output.depth_color[b].numpy())
            depth = output.depth[b].numpy()
            put(f"depth_{b}.npy", lambda p, d=depth: np.save(open(p, "wb"), d))
    for label, masks in output.masks.items():
        for b in range(masks.shape[0]):
            put_png(f"mask_{_safe(label)}_{b}.png", masks[b].numpy()[..., None].repeat(3, -1))
    for name, stack in (("overlay", output.overlay), ("composite", output.composite)):
        if stack is not None:
            for b in range(stack.shape[0]):
                put_png(f"{name}_{b}.png", stack[b].numpy())
    if output.views is not None:
        for v, stack in enumerate(output.views):
            for b in range(stack.shape[0]):
                put_png(f"view{v}_{b}.png", stack[b].numpy())
    if output.boxes is not None:
        put_json("boxes.json", output.boxes)
    if output.cameras is not None:
        put_json("cameras.json", output.cameras)
    return written


__all__ = ["DepthResult", "SegmentationResult", "BoxesResult", "TaskOutput", "decode_depth", "decode_segmentation",
           "decode_boxes", "cameras_from_ray_latents", "decode_result", "save_task_output", "spectral", "overlay",
           "clean_mask", "color_masks"]

