"""Simple 3-D primitives rendered from known orbit cameras (multi-view and camera estimation).

An object is a box or a sphere at the origin whose faces / octants carry different colours (so the
azimuth can be seen). Views are ray-cast with the pack's own camera model (`cameras.c2w_from_orbit`,
its focal length and pixel convention), so images and ray frames agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unidiff_core.onediffusion import cameras

from .scenes import BACKGROUNDS, COLORS, rng_for

LIGHT = np.array([0.4, 0.3, 0.85]) / np.linalg.norm([0.4, 0.3, 0.85])
SUPERSAMPLE = 2


@dataclass(frozen=True)
class Object3D:
    kind: str  # "box" | "sphere"
    half: tuple[float, float, float]  # half extents (box) or radius in [0] (sphere)
    colors: tuple[str, ...]  # box: +x, -x, +y, -y, +z, -z faces; sphere: 4 quadrants around z
    background: str


def sample_object(seed: int) -> Object3D:
    rng = rng_for(seed, "object3d")
    background = str(rng.choice(list(BACKGROUNDS)))
    bg = np.array(BACKGROUNDS[background], dtype=float)
    palette = [n for n, rgb in COLORS.items() if np.linalg.norm(np.array(rgb) - bg) > 120]
    if rng.random() < 0.6:
        half = tuple(float(v) for v in rng.uniform(0.18, 0.32, 3))
        picks = rng.choice(palette, size=3, replace=False)
        colors = (picks[0], picks[0], picks[1], picks[1], picks[2], picks[2])  # opposite faces alike
        return Object3D("box", half, tuple(str(c) for c in colors), background)
    r = float(rng.uniform(0.25, 0.34))
    picks = rng.choice(palette, size=2, replace=False)
    return Object3D("sphere", (r, r, r), (str(picks[0]), str(picks[1]), str(picks[0]), str(picks[1])), background)


def object_caption(obj: Object3D) -> str:
    colours = list(dict.fromkeys(obj.colors))
    names = ", ".join(colours[:-1]) + " and " + colours[-1]
    what = "box" if obj.kind == "box" else "ball"
    return f"a {names} {what} on a {obj.background} background"


def _hit_box(origin, dirs, half):
    inv = 1.0 / np.where(np.abs(dirs) < 1e-9, 1e-9, dirs)
    t0, t1 = (-np.array(half) - origin) * inv, (np.array(half) - origin) * inv
    near, far = np.minimum(t0, t1).max(-1), np.maximum(t0, t1).min(-1)
    hit = (near < far) & (near > 0)
    point = origin + near[..., None] * dirs
    axis = np.abs(point / np.array(half)).argmax(-1)
    sign = np.take_along_axis(point, axis[..., None], -1)[..., 0] > 0
    normal = np.zeros_like(point)
    np.put_along_axis(normal, axis[..., None], np.where(sign, 1.0, -1.0)[..., None], -1)
    face = axis * 2 + (~sign)
    return hit, near, normal, face


def _hit_sphere(origin, dirs, r):
    b = (dirs @ origin)
    c = origin @ origin - r * r
    disc = b * b - c
    hit = disc > 0
    t = -b - np.sqrt(np.maximum(disc, 0))
    point = origin + t[..., None] * dirs
    normal = point / r
    quadrant = (point[..., 0] > 0).astype(int) * 2 + (point[..., 1] > 0).astype(int)
    return hit & (t > 0), t, normal, quadrant


def render_view(obj: Object3D, azimuth: float, elevation: float, distance: float = 1.5, size: int = 64,
                focal: float = cameras.DEFAULT_FOCAL) -> np.ndarray:
    """The object seen from an orbit camera (absolute degrees), (H, W, 3) float32 0..1."""
    grid = size * SUPERSAMPLE
    c2w = cameras.c2w_from_orbit(azimuth, elevation, distance).numpy()
    ref_to_world = c2w[:3, :3] @ np.diag([-1.0, 1.0, -1.0])
    dirs = cameras.camera_pixel_directions(grid, focal) @ ref_to_world.T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = c2w[:3, 3]
    if obj.kind == "box":
        hit, _, normal, part = _hit_box(origin, dirs, obj.half)
    else:
        hit, _, normal, part = _hit_sphere(origin, dirs, obj.half[0])
    palette = np.array([COLORS[c] for c in obj.colors], dtype=np.float32) / 255.0
    shade = 0.45 + 0.55 * np.clip(normal @ LIGHT, 0, 1)
    image = np.broadcast_to(np.array(BACKGROUNDS[obj.background], dtype=np.float32) / 255.0, hit.shape + (3,)).copy()
    colour = palette[np.clip(part, 0, len(palette) - 1)] * shade[..., None]
    image[hit] = colour[hit]
    return image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean((1, 3)).astype(np.float32)
