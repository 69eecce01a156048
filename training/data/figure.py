"""Stick figures for the pose tasks: a random body pose, its picture and its colour-coded skeleton.

The skeleton map follows the OpenPose look (coloured limbs and joints on black); every joint has
its own colour, so keypoints can be read back from a generated map (`keypoints_from_map`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .scenes import BACKGROUNDS, COLORS, SUPERSAMPLE, background_image, Scene, rng_for

JOINTS = ("head", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
          "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle")
LIMBS = ((0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
         (12, 13))
# One saturated hue per joint / limb, OpenPose style.
JOINT_COLORS = [tuple(int(c) for c in cv2.cvtColor(np.uint8([[[int(180 * k / len(JOINTS)), 255, 255]]]),
                                                   cv2.COLOR_HSV2RGB)[0, 0]) for k in range(len(JOINTS))]


@dataclass(frozen=True)
class Figure:
    keypoints: tuple[tuple[float, float], ...]  # (x, y) fractions of the canvas, in JOINTS order
    color: str
    background: str
    action: str  # a word for the caption


def sample_figure(seed: int) -> Figure:
    rng = rng_for(seed, "figure")
    scale = float(rng.uniform(0.28, 0.42))  # body height ~ 2.2 * scale
    cx, top = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.08, 0.2))
    arms_up = rng.random() < 0.5
    neck = np.array([cx, top + 0.3 * scale])
    head = neck + [0, -0.22 * scale]
    pts = {"head": head, "neck": neck}
    for side, sign in (("r", -1), ("l", 1)):
        shoulder = neck + [sign * 0.25 * scale, 0.05 * scale]
        a1 = np.radians(rng.uniform(-160, -20) if arms_up else rng.uniform(20, 160))
        elbow = shoulder + 0.35 * scale * np.array([sign * abs(np.cos(a1)), np.sin(a1)])
        a2 = a1 + np.radians(rng.uniform(-50, 50))
        wrist = elbow + 0.32 * scale * np.array([sign * abs(np.cos(a2)), np.sin(a2)])
        hip = neck + [sign * 0.13 * scale, 0.8 * scale]
        spread = np.radians(rng.uniform(0, 35))
        knee = hip + 0.45 * scale * np.array([sign * np.sin(spread), np.cos(spread)])
        ankle = knee + 0.45 * scale * np.array([sign * np.sin(spread * rng.uniform(0, 1.2)), 1.0])
        pts.update({f"{side}_shoulder": shoulder, f"{side}_elbow": elbow, f"{side}_wrist": wrist,
                    f"{side}_hip": hip, f"{side}_knee": knee, f"{side}_ankle": ankle})
    keypoints = tuple((float(np.clip(pts[j][0], 0.02, 0.98)), float(np.clip(pts[j][1], 0.02, 0.98)))
                      for j in JOINTS)
    background = str(rng.choice([b for b in BACKGROUNDS if b not in ("grey",)]))
    bg = np.array(BACKGROUNDS[background], dtype=float)
    colours = [n for n, rgb in COLORS.items() if np.linalg.norm(np.array(rgb) - bg) > 120]
    return Figure(keypoints, str(rng.choice(colours)), background, "raising its arms" if arms_up else "standing")


def figure_caption(fig: Figure) -> str:
    return f"a {fig.color} stick figure {fig.action} on a {fig.background} background"


def render_figure(fig: Figure, size: int = 64) -> np.ndarray:
    """The picture: thick limbs and a round head in the figure's colour, (H, W, 3) float32 0..1."""
    big = size * SUPERSAMPLE
    image = background_image(Scene(fig.background, None), big)
    p = (np.array(fig.keypoints) * big).astype(np.int32)
    colour = tuple(float(c) for c in COLORS[fig.color])
    width = max(1, int(round(0.035 * big)))
    for a, b in LIMBS[1:]:
        cv2.line(image, tuple(p[a]), tuple(p[b]), colour, width)
    head_r = int(round(np.linalg.norm(p[0] - p[1]) * 0.8))
    cv2.circle(image, tuple(p[0]), max(head_r, width), colour, -1)
    return (cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) / 255.0).astype(np.float32)


def pose_map(fig: Figure, size: int = 64) -> np.ndarray:
    """The skeleton: coloured limbs, joint dots on top, on black; (H, W, 3) float32 0..1."""
    big = size * SUPERSAMPLE
    canvas = np.zeros((big, big, 3), dtype=np.float32)
    p = (np.array(fig.keypoints) * big).astype(np.int32)
    for (a, b) in LIMBS:
        colour = tuple(0.6 * float(c) for c in JOINT_COLORS[b])
        cv2.line(canvas, tuple(p[a]), tuple(p[b]), colour, max(1, big // 40))
    for k, colour in enumerate(JOINT_COLORS):
        cv2.circle(canvas, tuple(p[k]), max(2, big // 28), tuple(float(c) for c in colour), -1)
    return (cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA) / 255.0).astype(np.float32)


def keypoints_from_map(frame: np.ndarray, tolerance: float = 100.0) -> list[tuple[float, float] | None]:
    """(x, y) fractions per joint: where the (3x3-smoothed) map comes closest to that joint's colour, or None
    when no pixel is within `tolerance` (RGB distance). Robust to the soft colours of a decoded map."""
    pixels = cv2.blur(np.asarray(frame, dtype=np.float32), (3, 3)) * 255.0
    h, w = pixels.shape[:2]
    out = []
    for colour in JOINT_COLORS:
        distance = np.linalg.norm(pixels - np.array(colour, np.float32), axis=-1)
        k = int(distance.argmin())
        y, x = divmod(k, w)
        out.append(None if distance.flat[k] > tolerance else ((x + 0.5) / w, (y + 0.5) / h))
    return out
