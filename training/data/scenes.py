"""2-D procedural scenes: coloured shapes on plain or gradient backgrounds, drawn far to near.

A `Scene` is pure data (background, shapes with colour, size, position and depth), sampled from a
seed. `render(scene, size)` draws it with anti-aliasing (4x supersampling) and returns the image
with its exact ground truth: per-object visible masks, a depth map, boxes. Every condition map of
the pack's tasks is derived from these (see `maps.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

# Disjoint seed ranges: training draws from the first, evaluation only from the second.
TRAIN_SEEDS = range(0, 1_000_000_000)
HELDOUT_SEEDS = range(1_000_000_000, 1_000_100_000)

SHAPES = ("circle", "square", "triangle", "diamond")
# Object colours: names a caption can use, far apart in RGB so a detector can tell them apart.
COLORS = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (240, 210, 20),
    "orange": (245, 130, 20), "purple": (130, 40, 170), "cyan": (20, 200, 210), "pink": (240, 120, 180),
    "white": (245, 245, 245), "black": (20, 20, 20),
}
BACKGROUNDS = {
    "white": (235, 235, 235), "grey": (128, 128, 128), "beige": (225, 210, 170), "light blue": (170, 205, 235),
    "dark blue": (20, 30, 70), "dark green": (25, 60, 35), "black": (15, 15, 15),
}
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Shape:
    kind: str  # one of SHAPES
    color: str  # a COLORS name
    cx: float  # centre, fractions of the canvas (0..1, x right, y down)
    cy: float
    size: float  # half-extent, fraction of the canvas
    depth: float  # 0 near .. 1 far; shapes are drawn far to near
    angle: float = 0.0  # rotation in degrees

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"


@dataclass(frozen=True)
class Scene:
    background: str  # a BACKGROUNDS name
    gradient: str | None  # second background colour (vertical gradient) or None = plain
    shapes: tuple[Shape, ...] = field(default_factory=tuple)

    def replace_shape(self, index: int, **changes) -> "Scene":
        shapes = list(self.shapes)
        shapes[index] = replace(shapes[index], **changes)
        return replace(self, shapes=tuple(shapes))

    def without(self, index: int) -> "Scene":
        return replace(self, shapes=tuple(s for i, s in enumerate(self.shapes) if i != index))

    def with_shape(self, shape: Shape) -> "Scene":
        return replace(self, shapes=self.shapes + (shape,))


def rng_for(seed: int, stream: str = "") -> np.random.Generator:
    """One generator per (seed, stream): independent draws that never depend on call order."""
    key = [int(seed)] + [ord(c) for c in stream]
    return np.random.default_rng(key)


def object_colors(background: str) -> list[str]:
    """Object colours that stand out from the background."""
    bg = np.array(BACKGROUNDS[background], dtype=float)
    return [n for n, rgb in COLORS.items() if np.linalg.norm(np.array(rgb) - bg) > 120]


def random_shape(rng: np.random.Generator, background: str, avoid: list[Shape] = ()) -> Shape:
    """A shape whose centre keeps clear of the others' centres, so every object stays visible."""
    colours = object_colors(background)
    for _ in range(30):
        size = float(rng.uniform(0.1, 0.22))
        cx, cy = (float(v) for v in rng.uniform(size, 1 - size, 2))
        if all(np.hypot(cx - s.cx, cy - s.cy) > 0.6 * (size + s.size) for s in avoid):
            break
    return Shape(kind=str(rng.choice(SHAPES)), color=str(rng.choice(colours)), cx=cx, cy=cy, size=size,
                 depth=float(rng.uniform(0.1, 0.7)), angle=float(rng.uniform(-20, 20)))


def sample_scene(seed: int, max_shapes: int = 3, min_shapes: int = 1) -> Scene:
    rng = rng_for(seed, "scene")
    background = str(rng.choice(list(BACKGROUNDS)))
    gradient = str(rng.choice([b for b in BACKGROUNDS if b != background])) if rng.random() < 0.3 else None
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(min_shapes, max_shapes + 1))):
        shapes.append(random_shape(rng, background, shapes))
    return Scene(background, gradient, tuple(shapes))


# ------------------------------------------------------------------------------------ drawing
def shape_polygon(shape: Shape, canvas: int) -> np.ndarray | None:
    """Polygon vertices in pixels (None for a circle)."""
    if shape.kind == "circle":
        return None
    r = shape.size * canvas
    base = {"square": [(-1, -1), (1, -1), (1, 1), (-1, 1)],
            "triangle": [(0, -1.15), (1.05, 0.85), (-1.05, 0.85)],
            "diamond": [(0, -1.2), (0.85, 0), (0, 1.2), (-0.85, 0)]}[shape.kind]
    a = np.radians(shape.angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = np.array(base, dtype=float) @ rot.T * r * (0.85 if shape.kind == "square" else 1.0)
    return pts + np.array([shape.cx, shape.cy]) * canvas


def draw_shape(target: np.ndarray, shape: Shape, value) -> None:
    canvas = target.shape[0]
    poly = shape_polygon(shape, canvas)
    if poly is None:
        cv2.circle(target, (int(round(shape.cx * canvas)), int(round(shape.cy * canvas))),
                   int(round(shape.size * canvas)), value, -1)
    else:
        cv2.fillPoly(target, [np.round(poly).astype(np.int32)], value)


def background_image(scene: Scene, size: int) -> np.ndarray:
    top = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    bottom = np.array(BACKGROUNDS[scene.gradient or scene.background], dtype=np.float32)
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - t) + bottom * t, (size, size, 3)).copy()


@dataclass
class Rendered:
    image: np.ndarray  # (H, W, 3) float32 0..1
    ids: np.ndarray  # (H, W) int: index of the visible shape, -1 = background
    depth: np.ndarray  # (H, W) float32, 0 near .. 1 far (background: a floor from 1 at the top to 0.85)

    def mask(self, index: int) -> np.ndarray:
        return (self.ids == index).astype(np.float32)

    def box(self, index: int) -> list[int] | None:
        """[x0, y0, x1, y1] (pixels, exclusive) of the visible part, None when hidden."""
        ys, xs = np.nonzero(self.ids == index)
        if not len(xs):
            return None
        return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def draw_order(scene: Scene) -> list[int]:
    """Far to near; ties keep list order."""
    return sorted(range(len(scene.shapes)), key=lambda i: -scene.shapes[i].depth)


def render(scene: Scene, size: int = 64, colors: dict = COLORS) -> Rendered:
    """colors: the RGB of each colour name (a demo that teaches a new colour word passes a larger table)."""
    big = size * SUPERSAMPLE
    image = background_image(scene, big)
    ids = np.full((big, big), -1, dtype=np.int32)
    for i in draw_order(scene):
        shape = scene.shapes[i]
        draw_shape(image, shape, tuple(float(c) for c in colors[shape.color]))
        draw_shape(ids, shape, int(i))
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) / 255.0
    ids = ids[SUPERSAMPLE // 2::SUPERSAMPLE, SUPERSAMPLE // 2::SUPERSAMPLE]  # pixel centres
    depth = np.broadcast_to(np.linspace(1.0, 0.85, size, dtype=np.float32)[:, None], (size, size)).copy()
    for i, shape in enumerate(scene.shapes):
        depth[ids == i] = shape.depth
    return Rendered(np.clip(image, 0, 1).astype(np.float32), ids, depth)


# ------------------------------------------------------------------------------------ words
def position_word(shape: Shape) -> str:
    horizontal = "left" if shape.cx < 0.4 else "right" if shape.cx > 0.6 else ""
    vertical = "top" if shape.cy < 0.4 else "bottom" if shape.cy > 0.6 else ""
    if not horizontal and not vertical:
        return "in the centre"
    return "at the " + " ".join(w for w in (vertical, horizontal) if w)


def size_word(shape: Shape) -> str:
    return "small" if shape.size < 0.14 else "large" if shape.size > 0.18 else ""


def describe_shape(shape: Shape, detail: bool = True) -> str:
    words = ["a", size_word(shape) if detail else "", shape.color, shape.kind, position_word(shape) if detail else ""]
    return " ".join(w for w in words if w)


def caption(scene: Scene, detail: bool = True) -> str:
    """'a red circle at the left and a small blue square at the top on a white background'."""
    parts = [describe_shape(s, detail) for s in scene.shapes]
    objects = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1] if parts else "nothing"
    bg = f"a {scene.background} background" if scene.gradient is None else \
        f"a {scene.background} to {scene.gradient} gradient background"
    return f"{objects} on {bg}"
