"""Cartoon face identities (faceid): an identity is a tuple of named attributes, a portrait shows it in a context.

`Identity` (head shape, skin, hair colour, hair style, eye colour) never changes between the portraits of one
person; `Pose` (place, size, background, tilt, expression) is the context a caption describes. Geometry is
in units of the head radius R around the head centre, so `FACE_POINTS` tells a detector where each attribute
shows (training/metrics.py reads them back). Rendered with 4x supersampling like scenes.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .scenes import BACKGROUNDS, SUPERSAMPLE, Scene, background_image, position_word, rng_for, size_word

# Colours far apart within each attribute, and hair far from every skin, so each reads back by nearest colour.
HEADS = {"round": (1.0, 1.0), "oval": (0.8, 1.3), "square": (0.95, 1.0)}  # half width, half height (R)
SKINS = {"pale": (245, 215, 190), "tan": (210, 160, 110), "brown": (135, 85, 50)}
HAIR_COLORS = {"black": (25, 20, 20), "blonde": (245, 215, 60), "red": (190, 45, 25), "grey": (150, 150, 160)}
HAIR_STYLES = ("short", "long")
EYES = {"blue": (30, 80, 230), "green": (30, 170, 60), "black": (15, 15, 15)}
ATTRIBUTES = ("head", "skin", "hair", "hair_style", "eyes")
# Where a detector looks (x, y in R, before tilt); see render_portrait for the shapes.
FACE_POINTS = {"skin": (0.0, 0.25), "hair": (0.0, -0.8), "eye_left": (-0.4, -0.05), "eye_right": (0.4, -0.05)}
EYE_RADIUS, FRINGE = 0.2, -0.35  # eye disc radius; the hair cap's lower edge


def side_point(identity_head: str, side: int) -> tuple[float, float]:
    """Where long hair hangs beside the face (outside the head's half width)."""
    return side * (HEADS[identity_head][0] + 0.17), 0.2


@dataclass(frozen=True)
class Identity:
    head: str  # HEADS
    skin: str  # SKINS
    hair: str  # HAIR_COLORS
    hair_style: str  # HAIR_STYLES
    eyes: str  # EYES

    def values(self) -> tuple[str, ...]:
        return tuple(getattr(self, a) for a in ATTRIBUTES)


@dataclass(frozen=True)
class Pose:
    background: str  # BACKGROUNDS
    cx: float  # head centre, fractions of the canvas
    cy: float
    size: float  # head radius R, fraction of the canvas (the scenes' size words apply)
    tilt: float = 0.0  # degrees
    smile: bool = False


def sample_identity(seed: int) -> Identity:
    rng = rng_for(seed, "identity")
    return Identity(*(str(rng.choice(list(names))) for names in (HEADS, SKINS, HAIR_COLORS, HAIR_STYLES, EYES)))


def backgrounds_for(identity: Identity) -> list[str]:
    """Backgrounds that keep skin and hair visible (the detector tells them from the background)."""
    def far(rgb, name):
        return np.linalg.norm(np.subtract(rgb, BACKGROUNDS[name])) > 90
    return [b for b in BACKGROUNDS if far(SKINS[identity.skin], b) and far(HAIR_COLORS[identity.hair], b)]


def sample_pose(rng: np.random.Generator, identity: Identity) -> Pose:
    size = float(rng.uniform(0.13, 0.2))
    margin = 1.45 * size  # the face reaches 1.32 R from its centre (hair top, long hair, oval chin)
    cx, cy = (float(v) for v in rng.uniform(margin, 1 - margin, 2))
    return Pose(str(rng.choice(backgrounds_for(identity))), cx, cy, size, float(rng.uniform(-8, 8)),
                bool(rng.random() < 0.5))


def face_xy(pose: Pose, point: tuple[float, float], canvas: int) -> tuple[float, float]:
    """A point given in head radii (face frame) -> pixels, with the pose's place, size and tilt."""
    a = np.radians(pose.tilt)
    x, y = point
    r = pose.size * canvas
    return (pose.cx * canvas + r * (x * np.cos(a) - y * np.sin(a)), pose.cy * canvas + r * (x * np.sin(a) + y * np.cos(a)))


def _poly(pose, points, canvas):
    return np.round([face_xy(pose, p, canvas) for p in points]).astype(np.int32)


def _ellipse(pose, hw, hh, cx=0.0, cy=0.0, lo=0.0, hi=360.0, canvas=64):
    t = np.radians(np.linspace(lo, hi, 48))
    return _poly(pose, np.stack([cx + hw * np.cos(t), cy + hh * np.sin(t)], 1), canvas)


def render_portrait(identity: Identity, pose: Pose, size: int = 64) -> np.ndarray:
    """(H, W, 3) float32 0..1: long hair behind, the head, the hair cap, eyes and mouth."""
    big = size * SUPERSAMPLE
    image = background_image(Scene(pose.background, None), big)
    hw, hh = HEADS[identity.head]
    hair = tuple(float(c) for c in HAIR_COLORS[identity.hair])
    if identity.hair_style == "long":  # two strands beside the face, from the fringe to below the cheeks
        for s in (-1, 1):
            x0, x1 = s * (hw - 0.1), s * (hw + 0.32)
            cv2.fillPoly(image, [_poly(pose, [(x0, FRINGE), (x1, FRINGE), (x1, 0.6), (x0, 0.6)], big)], hair)
    if identity.head == "square":
        head = _poly(pose, [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)], big)
    else:
        head = _ellipse(pose, hw, hh, canvas=big)
    cv2.fillPoly(image, [head], tuple(float(c) for c in SKINS[identity.skin]))
    # the cap: the upper half of an ellipse from the fringe to just above the top of the head
    cv2.fillPoly(image, [_ellipse(pose, hw + 0.08, hh + 0.12 + FRINGE, cy=FRINGE, lo=180, hi=360, canvas=big)], hair)
    for name in ("eye_left", "eye_right"):
        x, y = FACE_POINTS[name]
        cv2.fillPoly(image, [_ellipse(pose, EYE_RADIUS, EYE_RADIUS, x, y, canvas=big)],
                     tuple(float(c) for c in EYES[identity.eyes]))
    # expression: a smile (lower half ellipse) or a straight mouth; it is context, not identity
    mouth = _ellipse(pose, 0.3, 0.15, cy=0.5, lo=0, hi=180, canvas=big) if pose.smile else \
        _ellipse(pose, 0.28, 0.05, cy=0.55, canvas=big)
    cv2.fillPoly(image, [mouth], (120.0, 30.0, 40.0))
    return (cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) / 255.0).astype(np.float32)


def pose_caption(pose: Pose) -> str:
    """'the person at the top left, small, smiling, on a grey background' (context only, never identity)."""
    words = [position_word(pose), size_word(pose), "smiling" if pose.smile else ""]
    return "the person " + ", ".join(w for w in words if w) + f", on a {pose.background} background"
