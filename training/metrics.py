"""Per-task metrics on held-out samples, computed through the pack's own decoders.

Each task has one metric function: (sample, predicted frames) -> {metric: value}, the first entry
being the task's headline metric. "Predicted frames" maps a generated frame index to an (H, W, 3)
image in 0..1, or to a (16, h, w) ray latent; the same function scores the model, a trivial baseline
and the codec ceiling (ground truth through the pixel codec), so the three are comparable.
Depth maps, masks, boxes and cameras are read by `unidiff_core.onediffusion.outputs`.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from unidiff_core.onediffusion import outputs

from .data import faces
from .data.figure import JOINTS, keypoints_from_map
from .data.scenes import COLORS

HIGHER = {"attr_acc": True, "count_acc": True, "subject_found": True, "id_match": True, "psnr": True, "psnr_masked": True,
          "edit_success": True, "psnr_outside": True, "layout_iou": True, "abs_rel": False, "delta1": True,
          "edge_f1": True, "pck10": True, "kp_error": False, "miou": True, "box_miou": True, "ap50": True,
          "view_psnr": True, "azimuth_err": False, "elevation_err": False}


def psnr(a, b, mask=None) -> float:
    diff = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    if mask is not None:
        diff = diff[np.asarray(mask, bool)]
    mse = float(diff.mean()) if diff.size else 0.0
    return float(10 * np.log10(1.0 / max(mse, 1e-10)))


# ------------------------------------------------------------------------------ simple detectors
def foreground(image: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Pixels far from their row's background colour (median of the row's 4 leftmost and rightmost pixels)."""
    image = np.asarray(image, np.float32)
    border = np.concatenate([image[:, :4], image[:, -4:]], axis=1)
    background = np.median(border, axis=1, keepdims=True)
    return np.linalg.norm(image - background, axis=-1) > threshold


def detect_objects(image: np.ndarray, min_fraction: float = 0.004, colors: dict = COLORS) -> list[dict]:
    """Coloured blobs: foreground pixels labelled with the nearest object colour, one entry per component."""
    image = np.asarray(image, np.float32)
    h, w = image.shape[:2]
    names = list(colors)
    table = np.array([colors[n] for n in names], np.float32) / 255.0
    distance = np.linalg.norm(image[:, :, None] - table[None, None], axis=-1)
    nearest, close = distance.argmin(-1), distance.min(-1) < 0.3
    fg = foreground(image)
    found = []
    for k, name in enumerate(names):
        mask = ((nearest == k) & close & fg).astype(np.uint8)
        count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for c in range(1, count):
            if stats[c, cv2.CC_STAT_AREA] >= min_fraction * h * w:
                found.append({"color": name, "cx": centroids[c][0] / w, "cy": centroids[c][1] / h,
                              "area": int(stats[c, cv2.CC_STAT_AREA])})
    return found


def _visible_objects(scene, rendered):
    out = []
    for i, s in enumerate(scene.shapes):
        ys, xs = np.nonzero(rendered.ids == i)
        if len(xs) >= 0.004 * rendered.ids.size:
            out.append((s.color, (xs.mean() + 0.5) / rendered.ids.shape[1], (ys.mean() + 0.5) / rendered.ids.shape[0]))
    return out


def attribute_scores(image, scene, rendered, colors: dict = COLORS, only: str | None = None) -> dict:
    """attr_acc: share of visible objects found with their colour near their place (0.15 of the canvas);
    count_acc: 1 when as many blobs as visible objects were found. colors: the detector's colour table;
    only: score only the objects of this colour (attr_acc; count_acc still counts every object)."""
    truth, found = _visible_objects(scene, rendered), detect_objects(image, colors=colors)
    scored = [t for t in truth if only is None or t[0] == only]
    hits = sum(any(f["color"] == c and np.hypot(f["cx"] - x, f["cy"] - y) < 0.15 for f in found)
               for c, x, y in scored)
    return {"attr_acc": hits / max(1, len(scored)), "count_acc": float(len(found) == len(truth))}


def _nearest(rgb, table: dict) -> str:
    names = list(table)
    return names[int(np.argmin([np.linalg.norm(rgb - np.array(table[n]) / 255.0) for n in names]))]


def read_identity(image, pose) -> faces.Identity:
    """The identity attributes of the portrait at `pose` (the target's place, size and tilt, which the
    caption gives): colours at the face's fixed points (faces.FACE_POINTS), the head shape from how far the
    skin reaches down and towards the lower corners, long hair from the hair colour beside the face."""
    image = np.ascontiguousarray(image, np.float32)
    size = image.shape[0]

    def at(point, patch=1):  # bilinear colour at a face point (pixel centres at +0.5)
        x, y = faces.face_xy(pose, point, size)
        return cv2.getRectSubPix(image, (patch, patch), (x - 0.5, y - 0.5)).reshape(-1, 3).mean(0)

    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    background, skin, hair = np.median(border, 0), at(faces.FACE_POINTS["skin"], 3), at(faces.FACE_POINTS["hair"])

    def like(rgb, colour):  # closer to `colour` than to the background
        return np.linalg.norm(rgb - colour) < np.linalg.norm(rgb - background)

    def reach(dx, dy, start):  # how far (in R) the skin runs from `start` along a direction
        steps = np.arange(start, 1.8, 0.04)
        run = next((i for i, d in enumerate(steps) if not like(at((dx * d, dy * d)), skin)), len(steps))
        return start + 0.04 * run

    diagonal = min(reach(-0.7071, 0.7071, 0.6), reach(0.7071, 0.7071, 0.6))  # square 1.34, round 1.0, oval 0.96
    head = "square" if diagonal > 1.17 else "oval" if reach(0, 1, 0.7) > 1.15 else "round"  # down: oval 1.3
    eyes = (at(faces.FACE_POINTS["eye_left"]) + at(faces.FACE_POINTS["eye_right"])) / 2
    sides = [like(at(faces.side_point(head, s)), hair) for s in (-1, 1)]
    return faces.Identity(head, _nearest(skin, faces.SKINS), _nearest(hair, faces.HAIR_COLORS),
                          "long" if all(sides) else "short", _nearest(eyes, faces.EYES))


def id_match(image, identity, pose) -> float:
    """Share of the identity's attributes read back from the portrait at `pose`."""
    found = read_identity(image, pose)
    return float(np.mean([a == b for a, b in zip(found.values(), identity.values())]))


def edge_f1(pred, truth, threshold: float = 0.5, tolerance: int = 1) -> float:
    """F1 of edge pixels (grey > threshold), a match within `tolerance` pixels."""
    p = np.asarray(pred, np.float32).mean(-1) > threshold
    t = np.asarray(truth, np.float32).mean(-1) > threshold
    if not p.any() and not t.any():
        return 1.0
    kernel = np.ones((2 * tolerance + 1,) * 2, np.uint8)
    t_near = cv2.dilate(t.astype(np.uint8), kernel) > 0
    p_near = cv2.dilate(p.astype(np.uint8), kernel) > 0
    precision = (p & t_near).sum() / max(1, p.sum())
    recall = (t & p_near).sum() / max(1, t.sum())
    return float(2 * precision * recall / max(precision + recall, 1e-9))


def depth_scores(pred_frame, truth_depth) -> dict:
    """AbsRel and delta1 on depth shifted to 1..2 (decoded depth is min-max normalised to 0..1 per image)."""
    pred = outputs.decode_depth(pred_frame).depth.astype(np.float64) + 1
    lo, hi = truth_depth.min(), truth_depth.max()
    truth = (truth_depth - lo) / max(hi - lo, 1e-9) + 1
    ratio = np.maximum(pred / truth, truth / pred)
    return {"abs_rel": float(np.mean(np.abs(pred - truth) / truth)), "delta1": float(np.mean(ratio < 1.25))}


def iou(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def miou(pred_frame, labels, truth_masks) -> float:
    decoded = outputs.decode_segmentation(pred_frame, labels).masks
    return float(np.mean([iou(decoded[label], mask > 0.5) for label, mask in truth_masks]))


def box_iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def box_scores(pred_frame, labels, truth_boxes) -> dict:
    """box_miou: each truth box's best IoU with a decoded box of its label; ap50: share with IoU >= 0.5."""
    found = outputs.decode_boxes(pred_frame, labels).boxes
    best = []
    for t in truth_boxes:
        same = [[b["x0"], b["y0"], b["x1"], b["y1"]] for b in found if b["label"] == t["label"]]
        best.append(max((box_iou(t["box"], b) for b in same), default=0.0))
    return {"box_miou": float(np.mean(best)), "ap50": float(np.mean([b >= 0.5 for b in best]))}


def pose_scores(pred_frame, figure) -> dict:
    """pck10: share of joints read back within 0.1 of the canvas; kp_error: mean distance (missing = 0.5)."""
    found = keypoints_from_map(pred_frame)
    errors = [0.5 if f is None else float(np.hypot(f[0] - k[0], f[1] - k[1])) for f, k in zip(found, figure.keypoints)]
    return {"pck10": float(np.mean([e < 0.1 for e in errors])), "kp_error": float(np.mean(errors))}


def camera_scores(rays_view0, rays_pred, request, truth) -> dict:
    cams = outputs.cameras_from_ray_latents(torch.stack([torch.as_tensor(rays_view0), torch.as_tensor(rays_pred)]),
                                            request.views, focal=request.focal)
    return camera_errors(cams, truth)


def camera_errors(cameras, truth) -> dict:
    """Angle errors of view 1's decoded camera ({"azimuth", "elevation"} in degrees, as Decode Cameras writes)."""
    az = (cameras[1]["azimuth"] - truth["azimuths"][1] + 180) % 360 - 180
    elevation = cameras[1]["elevation"] - truth["elevations"][1]
    return {"azimuth_err": float(abs(az)), "elevation_err": float(abs(elevation))}


# ------------------------------------------------------------------------------ per task
def score(sample, pred: dict) -> dict:
    """{metric: value} of predicted frames against a sample's ground truth (first entry = headline)."""
    task, truth, req = sample.task, sample.truth, sample.request
    given = sample.frame_values()
    if task == "text2image":
        return attribute_scores(pred[0], truth["scene"], truth["rendered"])
    if task == "subject_driven":
        s = truth["subject"]
        found = detect_objects(pred[0])
        return {"subject_found": float(any(f["color"] == s.color for f in found))}
    if task == "faceid":
        return {"id_match": id_match(pred[0], truth["identity"], truth["pose"])}
    if task == "inpainting":
        return {"psnr_masked": psnr(pred[0], sample.targets[0], truth["mask"] > 0.5)}
    if task == "deblurring":
        return {"psnr": psnr(pred[0], sample.targets[0])}
    if task == "image_editing":
        region, before, after = truth["region"], given[1], sample.targets[0]
        inside_after = np.mean((pred[0] - after)[region] ** 2)
        inside_before = np.mean((pred[0] - before)[region] ** 2)
        return {"edit_success": float(inside_after < inside_before), "psnr_outside": psnr(pred[0], after, ~region)}
    if task.endswith("2image"):  # condition -> image: do the objects land where the condition puts them?
        return {"layout_iou": iou(foreground(pred[0]), foreground(sample.targets[0]))}
    if task == "image2depth":
        return depth_scores(pred[1], truth["depth"])
    if task in ("image2canny", "image2hed"):
        return {"edge_f1": edge_f1(pred[1], sample.targets[1], threshold=0.5 if task == "image2canny" else 0.3)}
    if task == "image2pose":
        return pose_scores(pred[1], truth["figure"])
    if task == "image2semanticmap":
        return {"miou": miou(pred[1], req.labels, truth["masks"])}
    if task == "image2boundingbox":
        return box_scores(pred[1], req.labels, truth["boxes"])
    if task in ("image2multiview", "text2multiview"):
        return {"view_psnr": float(np.mean([psnr(pred[i], sample.targets[i]) for i in sample.targets]))}
    if task == "camera_estimation":
        return camera_scores(given[1], pred[3], req, truth)
    if task == "freeform_depth_semantic":
        return {**depth_scores(pred[1], truth["depth"]), "miou": miou(pred[2], req.labels, truth["masks"])}
    raise ValueError(f"no metric for task {task!r}")
