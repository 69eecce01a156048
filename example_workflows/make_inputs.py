"""Draws the small example input images of the workflows into inputs/ (deterministic; run to regenerate).

    python example_workflows/make_inputs.py

Simple synthetic pictures (a garden scene with a red ball and a blue box, its depth/edge/semantic
maps, a pose skeleton, two cartoon faces, a toy robot, a cube seen from two sides): enough for the
workflows to run and to show what each input looks like. Use your own photos for real results.
The UniDiff-Mini twins' inputs (inputs/mini/) are held-out scenes of training.data, see mini_samples.py.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inputs")
S = 256  # every picture is S x S

BALL = (150, 160, 48)  # centre x, y and radius
BOX = (40, 120, 110, 190)  # x0, y0, x1, y1
HORIZON = 140


def scene() -> Image.Image:
    """A garden: sky gradient, grass, a red ball, a blue box, a sun."""
    y = np.linspace(0, 1, S)[:, None, None]
    sky = (np.array([90, 150, 235]) * (1 - y) + np.array([200, 225, 250]) * y)
    img = np.broadcast_to(sky, (S, S, 3)).copy()
    grass = np.linspace(0, 1, S - HORIZON)[:, None, None]
    img[HORIZON:] = np.array([70, 150, 60]) * (1 - grass) + np.array([40, 110, 35]) * grass
    im = Image.fromarray(img.astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((200, 20, 240, 60), fill=(250, 220, 90))
    d.rectangle(BOX, fill=(40, 70, 200), outline=(20, 30, 110), width=3)
    d.polygon([(BOX[0], BOX[1]), (BOX[0] + 18, BOX[1] - 14), (BOX[2] + 18, BOX[1] - 14), (BOX[2], BOX[1])],
              fill=(80, 110, 230))
    cx, cy, r = BALL
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(215, 35, 35))
    d.ellipse((cx - r // 2, cy - r // 2, cx - r // 8, cy - r // 8), fill=(245, 140, 140))
    return im


def depth_map() -> Image.Image:
    """Depth of the scene, near = white (what depth2image takes)."""
    y = np.linspace(0, 1, S)[:, None]
    depth = np.where(np.arange(S)[:, None] < HORIZON, 0.05, 0.25 + 0.6 * (y - HORIZON / S) / (1 - HORIZON / S))
    depth = np.broadcast_to(depth, (S, S)).copy()
    x0, y0, x1, y1 = BOX
    depth[y0:y1, x0:x1] = 0.6
    cx, cy, r = BALL
    yy, xx = np.mgrid[0:S, 0:S]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
    bulge = np.sqrt(np.clip(1 - ((xx - cx) ** 2 + (yy - cy) ** 2) / (r * r), 0, 1))
    depth[inside] = 0.7 + 0.25 * bulge[inside]
    return Image.fromarray((np.clip(depth, 0, 1) * 255).astype(np.uint8)).convert("RGB")


def normal_map() -> Image.Image:
    """Surface normals of the scene as RGB = (n + 1) / 2 (x right, y up, z to the viewer), as MMGen reads them."""
    def rgb(n):
        n = np.asarray(n, dtype=float)
        return ((n / np.linalg.norm(n, axis=-1, keepdims=True) + 1) / 2 * 255).round().astype(np.uint8)

    img = np.zeros((S, S, 3), np.uint8)
    img[:] = rgb([0, 0, 1])  # sky: facing the viewer
    img[HORIZON:] = rgb([0, 0.8, 0.6])  # ground: tilted up
    x0, y0, x1, y1 = BOX
    img[y0:y1, x0:x1] = rgb([0, 0, 1])
    img[y0 - 14:y0, x0 + 9:x1 + 9] = rgb([0, 1, 0.15])  # the box top
    cx, cy, r = BALL
    yy, xx = np.mgrid[0:S, 0:S]
    dx, dy = (xx - cx) / r, (cy - yy) / r
    inside = dx ** 2 + dy ** 2 < 1
    dz = np.sqrt(np.clip(1 - dx ** 2 - dy ** 2, 0, 1))
    img[inside] = rgb(np.stack([dx, dy, dz], -1)[inside])
    return Image.fromarray(img)


def hed_map() -> Image.Image:
    edges = scene().convert("L").filter(ImageFilter.FIND_EDGES)
    edges = edges.point(lambda v: 255 if v > 24 else 0).filter(ImageFilter.GaussianBlur(1.5))
    return Image.eval(edges, lambda v: min(255, v * 3)).convert("RGB")


def semantic_map() -> Image.Image:
    """Palette colours on black, in label order 'ball, grass, box': red, lime, blue."""
    im = Image.new("RGB", (S, S), (0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rectangle((0, HORIZON, S, S), fill=(0, 255, 0))
    d.rectangle(BOX, fill=(0, 0, 255))
    cx, cy, r = BALL
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 0, 0))
    return im


def pose_map() -> Image.Image:
    """An OpenPose-style skeleton (18 keypoints, coloured limbs) on black."""
    k = {"nose": (128, 50), "neck": (128, 82), "rsh": (100, 84), "rel": (84, 120), "rwr": (76, 156),
         "lsh": (156, 84), "lel": (174, 118), "lwr": (186, 150), "rhip": (112, 160), "rkn": (108, 204),
         "ran": (106, 246), "lhip": (144, 160), "lkn": (150, 204), "lan": (154, 246), "reye": (120, 44),
         "leye": (136, 44), "rear": (110, 50), "lear": (146, 50)}
    limbs = [("neck", "rsh"), ("neck", "lsh"), ("rsh", "rel"), ("rel", "rwr"), ("lsh", "lel"), ("lel", "lwr"),
             ("neck", "rhip"), ("rhip", "rkn"), ("rkn", "ran"), ("neck", "lhip"), ("lhip", "lkn"), ("lkn", "lan"),
             ("neck", "nose"), ("nose", "reye"), ("reye", "rear"), ("nose", "leye"), ("leye", "lear")]
    im = Image.new("RGB", (S, S), (0, 0, 0))
    d = ImageDraw.Draw(im)
    for i, (a, b) in enumerate(limbs):
        hue = i / len(limbs)
        colour = tuple(int(255 * (0.5 + 0.5 * math.cos(2 * math.pi * (hue + s)))) for s in (0, 1 / 3, 2 / 3))
        d.line([k[a], k[b]], fill=colour, width=6)
    for x, y in k.values():
        d.ellipse((x - 4, y - 4, x + 4, y + 4), fill=(255, 0, 0))
    return im


def face(hair, skin, shirt, smile: bool) -> Image.Image:
    im = Image.new("RGB", (S, S), (225, 220, 210))
    d = ImageDraw.Draw(im)
    d.ellipse((58, 30, 198, 190), fill=hair)
    d.rectangle((48, 200, 208, S), fill=shirt)
    d.ellipse((78, 55, 178, 185), fill=skin)
    d.rectangle((110, 175, 146, 205), fill=skin)
    for x in (105, 151):
        d.ellipse((x - 8, 105, x + 8, 117), fill=(255, 255, 255))
        d.ellipse((x - 4, 107, x + 4, 115), fill=(60, 40, 30))
    d.line([(128, 120), (122, 145), (132, 146)], fill=(150, 100, 80), width=2)
    if smile:
        d.arc((105, 140, 151, 172), 20, 160, fill=(160, 50, 60), width=4)
    else:
        d.line([(110, 160), (146, 160)], fill=(160, 50, 60), width=4)
    return im


def robot() -> Image.Image:
    im = Image.new("RGB", (S, S), (245, 245, 245))
    d = ImageDraw.Draw(im)
    d.rectangle((88, 40, 168, 110), fill=(200, 60, 50), outline=(90, 20, 20), width=3)
    d.ellipse((104, 62, 122, 80), fill=(250, 240, 120))
    d.ellipse((134, 62, 152, 80), fill=(250, 240, 120))
    d.line([(128, 40), (128, 20)], fill=(60, 60, 60), width=3)
    d.ellipse((122, 12, 134, 24), fill=(250, 200, 40))
    d.rectangle((78, 116, 178, 196), fill=(60, 110, 200), outline=(20, 40, 90), width=3)
    d.rectangle((52, 124, 74, 180), fill=(90, 90, 100))
    d.rectangle((182, 124, 204, 180), fill=(90, 90, 100))
    d.rectangle((92, 198, 118, 240), fill=(90, 90, 100))
    d.rectangle((138, 198, 164, 240), fill=(90, 90, 100))
    return im


def cube(angle_deg: float) -> Image.Image:
    """A two-coloured cube on white, seen from azimuth `angle_deg` (orthographic, 25 deg elevation)."""
    a, e = math.radians(angle_deg + 35), math.radians(25)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)

    def project(p):
        x, y, z = p
        xr, yr = x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)
        return (128 + 62 * xr, 140 - 62 * (z * math.cos(e) - yr * math.sin(e))), yr * math.cos(e) + z * math.sin(e)

    faces = [([0, 1, 3, 2], (200, 60, 60)), ([4, 5, 7, 6], (60, 160, 80)), ([0, 1, 5, 4], (70, 90, 200)),
             ([2, 3, 7, 6], (230, 190, 60)), ([1, 3, 7, 5], (240, 240, 240)), ([0, 2, 6, 4], (120, 120, 120))]
    im = Image.new("RGB", (S, S), (255, 255, 255))
    d = ImageDraw.Draw(im)
    projected = [project(c) for c in corners]
    order = sorted(faces, key=lambda f: -np.mean([projected[i][1] for i in f[0]]))
    for idx, colour in order:
        d.polygon([projected[i][0] for i in idx], fill=colour, outline=(30, 30, 30))
    return im


def main():
    os.makedirs(OUT, exist_ok=True)
    photo = scene()
    images = {
        "garden.png": photo,
        "garden_blurred.png": photo.filter(ImageFilter.GaussianBlur(4)),
        "garden_depth.png": depth_map(),
        "garden_hed.png": hed_map(),
        "garden_semantic.png": semantic_map(),
        "garden_normal.png": normal_map(),
        "pose.png": pose_map(),
        "face_smiling.png": face((60, 40, 30), (235, 195, 165), (200, 80, 120), smile=True),
        "face_profile.png": face((60, 40, 30), (235, 195, 165), (70, 120, 190), smile=False),
        "robot.png": robot(),
        "cube_front.png": cube(0),
        "cube_side.png": cube(40),
    }
    # Inpainting: the photo with a transparent hole over the ball (Load Image's MASK = 1 - alpha).
    rgba = photo.convert("RGBA")
    alpha = Image.new("L", (S, S), 255)
    cx, cy, r = BALL
    ImageDraw.Draw(alpha).ellipse((cx - r - 8, cy - r - 8, cx + r + 8, cy + r + 8), fill=0)
    rgba.putalpha(alpha)
    images["garden_inpaint.png"] = rgba
    for name, im in images.items():
        im.save(os.path.join(OUT, name), format="PNG", optimize=True)
        print(name)
    write_mini_inputs()


def write_mini_inputs():
    """inputs/mini/: the given pictures of the held-out scene each UniDiff-Mini twin shows (64x64)."""
    import mini_samples

    folder = os.path.join(OUT, mini_samples.INPUT_DIR)
    os.makedirs(folder, exist_ok=True)
    for twin in mini_samples.TWINS:
        for name, pixels in mini_samples.given_images(twin).items():
            Image.fromarray(pixels).save(os.path.join(folder, name), format="PNG", optimize=True)
            print(mini_samples.input_name(name))


if __name__ == "__main__":
    main()
