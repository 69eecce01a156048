"""Frame layouts from a denoise mask, the way the reference's multi-frame call forms them.

`denoise_mask` has one entry per frame: 1 = generate, 0 = given. Given frames are filled in order:
for ordinary tasks by the images; for multi-view the frames interleave [image_0, ray_0, image_1,
ray_1, ...], given image slots take the images in order and given ray slots take the cameras
whose azimuth/elevation/distance are known (None entries are dropped, as in the reference).
"""

from __future__ import annotations

from ..common import checks
from . import cameras
from .pipeline import IMAGE, RAY, Frame


def parse_mask(text_or_list) -> list[int]:
    """'1,0' or [1, 0] -> [1, 0]: one 0 (given) or 1 (generate) per frame, at least one 1."""
    values = checks.numbers(text_or_list, "denoise mask")
    if not values or any(v not in (0, 1) for v in values):
        raise ValueError(f"denoise mask {text_or_list!r} must be a non-empty list of 0 (given) and 1 (generate)")
    if 1 not in values:
        raise ValueError(f"denoise mask {text_or_list!r} has no 1: mark at least one frame to generate")
    return [int(v) for v in values]


def frames_from_mask(mask, images: list) -> list[Frame]:
    """Ordinary tasks: each 0 takes the next image, in order."""
    mask = parse_mask(mask)
    given = mask.count(0)
    if len(images) != given:
        raise ValueError(f"denoise mask {mask} has {given} given frame(s) but {len(images)} image(s) were given; "
                         "give one image per 0 in the mask")
    it = iter(images)
    return [Frame(IMAGE) if m == 1 else Frame(IMAGE, image=next(it)) for m in mask]


def _known(values):
    return [v for v in values if v is not None]


def multiview_frames(mask, images: list, azimuths, elevations, distances=cameras.DEFAULT_DISTANCE,
                     focal: float = cameras.DEFAULT_FOCAL, size: int = 512) -> list[Frame]:
    """Multi-view: F = 2V interleaved image/ray frames; rays of given cameras, relative to the first."""
    mask = parse_mask(mask)
    if len(mask) % 2:
        raise ValueError(f"multi-view denoise mask {mask} must have an even length (image, ray per view)")
    if not isinstance(distances, (list, tuple)):
        distances = [distances] * len(azimuths)
    az, el, dist = _known(azimuths), _known(elevations), _known(distances)
    image_slots = [i for i in range(0, len(mask), 2) if mask[i] == 0]
    ray_slots = [i for i in range(1, len(mask), 2) if mask[i] == 0]
    if len(images) != len(image_slots):
        raise ValueError(f"denoise mask {mask} has {len(image_slots)} given image slot(s) (even positions) "
                         f"but {len(images)} image(s) were given")
    if not (len(az) == len(el) == len(dist)):
        raise ValueError(f"known azimuths ({len(az)}), elevations ({len(el)}) and distances ({len(dist)}) "
                         "must have the same count")
    if len(az) != len(ray_slots):
        raise ValueError(f"denoise mask {mask} has {len(ray_slots)} given camera slot(s) (odd positions) but "
                         f"{len(az)} camera(s) are known; give azimuth/elevation for exactly those views")
    rays = cameras.ray_frames(az, el, dist, size, focal=focal) if ray_slots else []
    frames, image_it, ray_it = [], iter(images), iter(rays)
    for i, m in enumerate(mask):
        kind = IMAGE if i % 2 == 0 else RAY
        if m == 1:
            frames.append(Frame(kind))
        elif kind == IMAGE:
            frames.append(Frame(IMAGE, image=next(image_it)))
        else:
            frames.append(Frame(RAY, latent=next(ray_it)))
    return frames
