"""Multiview cameras for OneDiffusion: orbit poses, Plücker ray maps and camera recovery.

The model sees every camera as a 16-channel "ray frame" at latent resolution. Rays are
expressed in the frame of view 0, with pytorch3d-style axes (x left, y up, z forward), so
view 0 always sits at the origin looking down +z. Ray maps are float32; camera recovery
works in float64 numpy.

Axis conventions used below:
  * world: z up; orbit cameras sit on a sphere and look at the origin.
  * OpenGL camera axes (what ``c2w_from_orbit`` returns): x right, y up, z backwards.
  * "reference axes" of any camera: x left, y up, z forward (pytorch3d style).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

RAY_SCALE = 1.658
DEFAULT_FOCAL = 1.3887
DEFAULT_DISTANCE = 1.7

# OpenGL camera axes -> reference axes (x left, y up, z forward).
_GL_TO_REF_AXES = np.diag([-1.0, 1.0, -1.0])

FocalLike = Union[float, Sequence[float], torch.Tensor, np.ndarray]


# ---------------------------------------------------------------------------
# Camera poses
# ---------------------------------------------------------------------------

def c2w_from_orbit(azimuth_deg: float, elevation_deg: float, distance: float) -> torch.Tensor:
    """OpenGL camera-to-world matrix (4, 4) of a camera orbiting the origin (float64).

    The camera sits at distance * (cos el cos az, cos el sin az, sin el) in a z-up world
    and looks at the origin, so its +z axis points away from the origin.
    """
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    position = distance * np.array(
        [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]
    )
    backward = position / np.linalg.norm(position)
    right = np.cross([0.0, 0.0, 1.0], backward)
    if np.linalg.norm(right) < 1e-6:
        # Looking straight up or down: world z is useless as an up hint.
        right = np.cross([0.0, 1.0, 0.0], backward)
    right /= np.linalg.norm(right)
    up = np.cross(backward, right)

    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, up, backward], axis=1)
    c2w[:3, 3] = position
    return torch.from_numpy(c2w)


def _c2w_batch(c2ws) -> np.ndarray:
    """Accept a tensor/array (V,4,4) or a list of (4,4) matrices; return float64 numpy."""
    if isinstance(c2ws, (list, tuple)):
        c2ws = [m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else m for m in c2ws]
    elif isinstance(c2ws, torch.Tensor):
        c2ws = c2ws.detach().cpu().numpy()
    array = np.asarray(c2ws, dtype=np.float64)
    if array.ndim != 3 or array.shape[1:] != (4, 4) or array.shape[0] == 0:
        raise ValueError(f"c2ws must have shape (V, 4, 4) with V >= 1, got {tuple(array.shape)}")
    return array


def _focal_per_view(focal: FocalLike, num_views: int) -> np.ndarray:
    if isinstance(focal, torch.Tensor):
        focal = focal.detach().cpu().numpy()
    values = np.asarray(focal, dtype=np.float64).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, num_views)
    if values.size != num_views:
        raise ValueError(f"focal must be a scalar or one value per view ({num_views}), got {values.size}")
    if np.any(values <= 0):
        raise ValueError(f"focal must be positive, got {values.tolist()}")
    return values


# ---------------------------------------------------------------------------
# Ray maps
# ---------------------------------------------------------------------------

def _pixel_grid(grid: int) -> np.ndarray:
    """Pixel-centre coordinates (n, n, 2) in [-1, 1], reference axes: +x left, +y up.

    Row 0 is the top of the image and column 0 its left edge, hence the flipped signs.
    """
    centres = (2.0 * np.arange(grid) + 1.0) / grid - 1.0
    a = np.broadcast_to(-centres[None, :], (grid, grid))
    b = np.broadcast_to(-centres[:, None], (grid, grid))
    return np.stack([a, b], axis=-1)


def camera_pixel_directions(grid: int, focal: float) -> np.ndarray:
    """Unnormalised pixel directions (n, n, 3) in a camera's own reference axes.

    Normalised intrinsics K = [[f, 0, .5], [0, f, .5], [0, 0, 1]] on a unit image put the
    image edge at tan(half fov) = 1 / (2 f).
    """
    ab = _pixel_grid(grid) / (2.0 * focal)
    return np.concatenate([ab, np.ones((grid, grid, 1))], axis=-1)


def _relative_poses(c2ws: np.ndarray):
    """Rotations (V,3,3) and centres (V,3) of all cameras in view 0's reference frame."""
    frames = c2ws[:, :3, :3] @ _GL_TO_REF_AXES  # columns: camera reference axes in world
    centres = c2ws[:, :3, 3]
    to_ref = frames[0].T
    rotations = to_ref @ frames
    rel_centres = (centres - centres[0]) @ to_ref.T
    return rotations, rel_centres


def plucker_rays(c2ws, grid: int, focal: FocalLike = DEFAULT_FOCAL) -> torch.Tensor:
    """Plücker rays (V, n, n, 6) = (unit direction, moment = centre x direction).

    ``c2ws`` are OpenGL camera-to-world matrices in any common world frame; the rays are
    re-expressed in view 0's reference frame, so that frame cancels out.
    """
    if int(grid) != grid or grid <= 0:
        raise ValueError(f"grid must be a positive integer, got {grid!r}")
    matrices = _c2w_batch(c2ws)
    focals = _focal_per_view(focal, len(matrices))
    rotations, centres = _relative_poses(matrices)

    rays = []
    for rotation, centre, f in zip(rotations, centres, focals):
        directions = camera_pixel_directions(int(grid), f) @ rotation.T
        directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
        moments = np.cross(np.broadcast_to(centre, directions.shape), directions)
        rays.append(np.concatenate([directions, moments], axis=-1))
    return torch.from_numpy(np.stack(rays)).float()


def pack_rays(rays: torch.Tensor) -> torch.Tensor:
    """(V, n, n, 6) rays -> (V, 16, n, n) latent frames ``[d, m, d, m, d, m_x] * RAY_SCALE``.

    The model's latents have 16 channels, so the 6 ray channels are tiled to fill them.
    """
    packed = torch.cat([rays, rays, rays[..., :4]], dim=-1) * RAY_SCALE
    return packed.permute(0, 3, 1, 2).contiguous()


def _check_size(size_px: int) -> int:
    if int(size_px) != size_px or size_px <= 0 or size_px % 8 != 0:
        raise ValueError(f"size_px must be a positive multiple of 8 (latent grid = size/8), got {size_px!r}")
    return int(size_px)


def ray_frames_from_c2ws(c2ws, size_px: int, focal: FocalLike = DEFAULT_FOCAL) -> torch.Tensor:
    """Latent ray frames (V, 16, n, n), n = size_px / 8, from OpenGL camera-to-world matrices."""
    size_px = _check_size(size_px)
    return pack_rays(plucker_rays(c2ws, size_px // 8, focal))


def ray_frames(
    azimuths: Sequence[float],
    elevations: Sequence[float],
    distances: Union[float, Sequence[float]],
    size_px: int,
    focal: FocalLike = DEFAULT_FOCAL,
) -> torch.Tensor:
    """Latent ray frames (V, 16, n, n) for orbit cameras given in degrees.

    ``distances`` may be one number for all views. Unknown (None) cameras must be dropped
    by the caller first: every entry here becomes one camera.
    """
    size_px = _check_size(size_px)
    azimuths, elevations = list(azimuths), list(elevations)
    if isinstance(distances, (int, float)):
        distances = [float(distances)] * len(azimuths)
    distances = list(distances)
    if not azimuths:
        raise ValueError("ray_frames needs at least one camera (azimuths is empty)")
    if not len(azimuths) == len(elevations) == len(distances):
        raise ValueError(
            "azimuths, elevations and distances must have the same length, got "
            f"azimuths={len(azimuths)}, elevations={len(elevations)}, distances={len(distances)}"
        )
    for name, values in (("azimuths", azimuths), ("elevations", elevations), ("distances", distances)):
        if any(v is None for v in values):
            raise ValueError(f"{name} contains None; drop unknown cameras before building ray frames")
    if any(d <= 0 for d in distances):
        raise ValueError(f"distances must be positive, got {distances}")

    c2ws = torch.stack([c2w_from_orbit(a, e, d) for a, e, d in zip(azimuths, elevations, distances)])
    return ray_frames_from_c2ws(c2ws, size_px, focal)


def unpack_ray_frames(frames: torch.Tensor, average_copies: bool = False) -> torch.Tensor:
    """(V, 16, n, n) scaled ray frames -> (V, n, n, 6) rays (direction, moment).

    By default the first 6 channels are used (the canonical copy). With
    ``average_copies=True`` the tiled copies are averaged (3 for d, 2 for m_y/m_z,
    3 for m_x), which damps noise in denoised predictions.
    """
    if frames.ndim != 4 or frames.shape[1] != 16:
        raise ValueError(f"ray frames must have shape (V, 16, n, n), got {tuple(frames.shape)}")
    channels = frames.permute(0, 2, 3, 1) / RAY_SCALE
    if not average_copies:
        return channels[..., :6].contiguous()
    directions = (channels[..., 0:3] + channels[..., 6:9] + channels[..., 12:15]) / 3.0
    moments = (channels[..., 3:6] + channels[..., 9:12]) / 2.0
    moment_x = (channels[..., 3] + channels[..., 9] + channels[..., 15]) / 3.0
    moments = torch.cat([moment_x[..., None], moments[..., 1:]], dim=-1)
    return torch.cat([directions, moments], dim=-1)


# ---------------------------------------------------------------------------
# Camera recovery from rays
# ---------------------------------------------------------------------------

@dataclass
class RecoveredCamera:
    """A camera in view 0's reference frame (x left, y up, z forward).

    rotation: (3, 3) maps the camera's own reference axes to view 0's (identity for view 0).
    centre:   (3,) camera position in view 0's frame (view 0 is at the origin).
    focal:    normalised focal length (the K[0, 0] of the pipeline, 1.3887 by default).
    centre_residual: RMS distance between the rays and the recovered centre (a quality hint).
    """

    rotation: np.ndarray
    centre: np.ndarray
    focal: float
    centre_residual: float


def _to_numpy64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def closest_point_to_rays(directions: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Least-squares point nearest to lines (point + t * unit direction), shapes (N, 3)."""
    projectors = np.eye(3)[None] - directions[:, :, None] * directions[:, None, :]
    lhs = projectors.sum(axis=0)
    rhs = np.einsum("nij,nj->i", projectors, points)
    return np.linalg.lstsq(lhs, rhs, rcond=None)[0]


def _procrustes_rotation(targets: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Rotation R minimising sum |targets_i - R sources_i|^2 (proper, det = +1)."""
    u, _, vt = np.linalg.svd(targets.T @ sources)
    flip = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, flip]) @ vt


def estimate_focal(directions: np.ndarray, grid: int) -> float:
    """Focal from unit ray directions (n*n, 3) of one view via a DLT homography.

    directions ~ R @ diag(g, g, 1) @ (a, b, 1) with g = 1 / (2 f): the homography is a
    rotation times an upper-triangular matrix, which a QR decomposition separates.
    """
    ab = _pixel_grid(grid).reshape(-1, 2)
    pixels = np.concatenate([ab, np.ones((len(ab), 1))], axis=1)
    # Each correspondence gives direction x (H pixel) = 0, linear in H's 9 entries.
    skew = np.zeros((len(directions), 3, 3))
    skew[:, 0, 1], skew[:, 0, 2] = -directions[:, 2], directions[:, 1]
    skew[:, 1, 0], skew[:, 1, 2] = directions[:, 2], -directions[:, 0]
    skew[:, 2, 0], skew[:, 2, 1] = -directions[:, 1], directions[:, 0]
    lifted = np.einsum("nij,nk->nijk", skew, pixels).reshape(-1, 9)
    homography = np.linalg.svd(lifted)[2][-1].reshape(3, 3)
    if np.linalg.det(homography) < 0:
        homography = -homography
    _, upper = np.linalg.qr(homography)
    diag = np.abs(np.diag(upper))
    return float(0.25 * diag[2] * (1.0 / diag[0] + 1.0 / diag[1]))


def cameras_from_rays(rays, focal: Optional[FocalLike] = DEFAULT_FOCAL) -> list:
    """Recover one ``RecoveredCamera`` per view from Plücker rays (V, n, n, 6).

    Directions need not be unit length. ``focal=None`` estimates each view's focal from
    its rays; otherwise the given focal (scalar or per view) is trusted.
    """
    rays = _to_numpy64(rays)
    if rays.ndim != 4 or rays.shape[-1] != 6 or rays.shape[1] != rays.shape[2] or rays.shape[0] == 0:
        raise ValueError(f"rays must have shape (V, n, n, 6), got {rays.shape}")
    num_views, grid = rays.shape[0], rays.shape[1]
    focals = None if focal is None else _focal_per_view(focal, num_views)

    cameras = []
    for view in range(num_views):
        raw_d, raw_m = rays[view, ..., :3].reshape(-1, 3), rays[view, ..., 3:].reshape(-1, 3)
        norms = np.linalg.norm(raw_d, axis=-1, keepdims=True)
        directions = raw_d / norms
        # (d, m) and (s d, s m) are the same line: rescale m with d, then d x m is on the line.
        points = np.cross(directions, raw_m / norms)
        centre = closest_point_to_rays(directions, points)
        offsets = (centre - points) - ((centre - points) * directions).sum(-1, keepdims=True) * directions
        residual = float(np.sqrt((offsets ** 2).sum(-1).mean()))

        view_focal = estimate_focal(directions, grid) if focals is None else float(focals[view])
        pixel_dirs = camera_pixel_directions(grid, view_focal).reshape(-1, 3)
        pixel_dirs /= np.linalg.norm(pixel_dirs, axis=-1, keepdims=True)
        rotation = _procrustes_rotation(directions, pixel_dirs)
        cameras.append(RecoveredCamera(rotation, centre, view_focal, residual))
    return cameras


def orbit_from_camera(
    camera: RecoveredCamera,
    reference_azimuth: float = 0.0,
    reference_elevation: float = 0.0,
    reference_distance: float = DEFAULT_DISTANCE,
) -> dict:
    """Azimuth/elevation (degrees) and distance of a recovered camera in the orbit world.

    Rays only know poses relative to view 0, so view 0's own orbit (the values the user
    gave for it) is needed to place the frame back in the z-up world. The result also
    reports ``look_at_error_deg``: how far the camera's forward axis is from pointing at
    the origin (0 for cameras made by ``c2w_from_orbit``).
    """
    ref_c2w = c2w_from_orbit(reference_azimuth, reference_elevation, reference_distance).numpy()
    ref_frame = ref_c2w[:3, :3] @ _GL_TO_REF_AXES
    position = ref_c2w[:3, 3] + ref_frame @ np.asarray(camera.centre, dtype=np.float64)
    distance = float(np.linalg.norm(position))
    azimuth = math.degrees(math.atan2(position[1], position[0]))
    elevation = math.degrees(math.atan2(position[2], math.hypot(position[0], position[1])))

    forward = ref_frame @ np.asarray(camera.rotation, dtype=np.float64)[:, 2]
    to_origin = -position / max(distance, 1e-12)
    cosine = float(np.clip(forward @ to_origin, -1.0, 1.0))
    return {
        "azimuth": azimuth,
        "elevation": elevation,
        "distance": distance,
        "look_at_error_deg": math.degrees(math.acos(cosine)),
    }
