"""Tests for unidiff_core.onediffusion.cameras: golden ray maps and camera recovery."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from unidiff_core.onediffusion import cameras

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
AZIMUTHS, ELEVATIONS, DISTANCE, SIZE = [0, 30, 60, 90], [0, 10, 15, 20], 1.5, 64
TOL = 1e-5


@pytest.fixture(scope="module")
def golden_rays():
    return load_file(str(GOLDEN / "multiview_rays.safetensors"))


def _orbit_c2ws(azimuths, elevations, distance):
    return torch.stack([cameras.c2w_from_orbit(a, e, distance) for a, e in zip(azimuths, elevations)])


def _rotation_angle(a, b):
    """Angle (rad) of the rotation taking b to a."""
    cosine = (np.trace(a @ b.T) - 1.0) / 2.0
    return float(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _expected_poses(c2ws):
    """Relative rotation/centre in view 0's frame (x left, y up, z forward), computed directly."""
    c2ws = c2ws.double().numpy()
    frames = c2ws[:, :3, :3] @ np.diag([-1.0, 1.0, -1.0])
    rotations = [frames[0].T @ f for f in frames]
    centres = [frames[0].T @ (c[:3, 3] - c2ws[0, :3, 3]) for c in c2ws]
    return rotations, centres


# --- golden parity -----------------------------------------------------------

def test_c2w_matches_golden(golden_rays):
    c2ws = _orbit_c2ws(AZIMUTHS, ELEVATIONS, DISTANCE)
    assert (c2ws.float() - golden_rays["c2w_create"]).abs().max() <= 1e-6


def test_plucker_rays_match_golden(golden_rays):
    rays = cameras.plucker_rays(_orbit_c2ws(AZIMUTHS, ELEVATIONS, DISTANCE), SIZE // 8)
    expected = golden_rays["plucker_rays"]
    assert rays.dtype == torch.float32 and rays.shape == expected.shape
    assert (rays - expected).abs().max() <= TOL


def test_latent_ray_frames_match_golden(golden_rays):
    frames = cameras.ray_frames(AZIMUTHS, ELEVATIONS, DISTANCE, SIZE, focal=cameras.DEFAULT_FOCAL)
    expected = golden_rays["latent_ray_frames"]
    assert frames.dtype == torch.float32 and frames.shape == expected.shape
    assert (frames - expected).abs().max() <= TOL


def test_ray_frames_match_multiview_transformer_input():
    samples = load_file(str(GOLDEN / "multiview_mask0010" / "tensors.safetensors"))["step00.samples"]
    frames = cameras.ray_frames([0, 30], [0, 10], [1.5, 1.5], 64)
    for batch in range(samples.shape[0]):  # CFG batch: both halves carry the same rays
        assert (samples[batch, 1::2] - frames).abs().max() <= TOL


def test_per_view_focal_tensor():
    c2ws = _orbit_c2ws(AZIMUTHS, ELEVATIONS, DISTANCE)
    scalar = cameras.plucker_rays(c2ws, 8)
    # A float32 focal tensor rounds 1.3887 slightly: equal up to float32 precision.
    per_view = cameras.plucker_rays(c2ws, 8, torch.full((4,), cameras.DEFAULT_FOCAL))
    assert (per_view - scalar).abs().max() <= 1e-6
    mixed = cameras.plucker_rays(c2ws, 8, torch.tensor([cameras.DEFAULT_FOCAL, 1.0, 1.3887, 1.3887]))
    assert (mixed[[0, 2, 3]] - scalar[[0, 2, 3]]).abs().max() <= 1e-6
    assert (mixed[1] - scalar[1]).abs().max() > 1e-2


def test_ray_frames_from_c2ws_accepts_list():
    c2ws = list(_orbit_c2ws([0, 45], [0, 30], 1.7))
    assert torch.equal(
        cameras.ray_frames_from_c2ws(c2ws, 32),
        cameras.ray_frames([0, 45], [0, 30], cameras.DEFAULT_DISTANCE, 32),
    )


# --- properties ---------------------------------------------------------------

@pytest.mark.parametrize("azimuth, elevation, distance", [(0, 0, 1.5), (73, -20, 2.5), (200, 45, 0.9)])
def test_view0_rays_ignore_its_own_pose(azimuth, elevation, distance):
    reference = cameras.ray_frames([0, 30], [0, 10], [1.5, 1.5], 64)[0]
    frames = cameras.ray_frames([azimuth, azimuth + 30], [elevation, 5], [distance, 2.0], 64)
    assert (frames[0] - reference).abs().max() <= 1e-6
    assert frames[0, 3:6].abs().max() == 0  # view 0 sits at the origin: zero moments


def test_shared_azimuth_offset_cancels():
    base = cameras.ray_frames([0, 30, 60], [5, 10, 15], 1.5, 64)
    shifted = cameras.ray_frames([100, 130, 160], [5, 10, 15], 1.5, 64)
    assert (base - shifted).abs().max() <= 1e-5


def test_unpack_inverts_packing():
    rays = cameras.plucker_rays(_orbit_c2ws(AZIMUTHS, ELEVATIONS, DISTANCE), 8)
    frames = cameras.pack_rays(rays)
    assert (cameras.unpack_ray_frames(frames) - rays).abs().max() <= 1e-6
    assert (cameras.unpack_ray_frames(frames, average_copies=True) - rays).abs().max() <= 1e-6


# --- camera recovery ------------------------------------------------------------

CASES = [
    ([0, 30, 60, 90], [0, 10, 15, 20], 1.5, cameras.DEFAULT_FOCAL),
    ([0, -45, 120, 180], [20, 0, -15, 35], 2.0, 1.0),
]


@pytest.mark.parametrize("azimuths, elevations, distance, focal", CASES)
def test_recover_cameras_exactly(azimuths, elevations, distance, focal):
    c2ws = _orbit_c2ws(azimuths, elevations, distance)
    rays = cameras.plucker_rays(c2ws, 16, focal)
    rotations, centres = _expected_poses(c2ws)
    for given_focal in (focal, None):
        recovered = cameras.cameras_from_rays(rays, focal=given_focal)
        for cam, rotation, centre in zip(recovered, rotations, centres):
            assert _rotation_angle(cam.rotation, rotation) < 1e-4
            assert np.linalg.norm(cam.centre - centre) < 1e-4
            assert abs(cam.focal - focal) < 1e-4


@pytest.mark.parametrize("azimuths, elevations, distance, focal", CASES)
def test_orbit_round_trip(azimuths, elevations, distance, focal):
    rays = cameras.plucker_rays(_orbit_c2ws(azimuths, elevations, distance), 16, focal)
    for cam, az, el in zip(cameras.cameras_from_rays(rays, focal=None), azimuths, elevations):
        orbit = cameras.orbit_from_camera(cam, azimuths[0], elevations[0], distance)
        assert abs((orbit["azimuth"] - az + 180) % 360 - 180) < 1e-3
        assert abs(orbit["elevation"] - el) < 1e-3
        assert abs(orbit["distance"] - distance) < 1e-4
        assert orbit["look_at_error_deg"] < 1e-3


def test_recovery_degrades_gracefully_with_noise():
    c2ws = _orbit_c2ws(AZIMUTHS, ELEVATIONS, DISTANCE)
    clean = cameras.plucker_rays(c2ws, 8).double().numpy()
    rotations, centres = _expected_poses(c2ws)
    rng = np.random.default_rng(0)
    worst = []
    for sigma in (1e-4, 1e-3, 1e-2):
        noisy = clean + sigma * rng.standard_normal(clean.shape)
        recovered = cameras.cameras_from_rays(noisy)
        rot_err = max(_rotation_angle(c.rotation, r) for c, r in zip(recovered, rotations))
        centre_err = max(np.linalg.norm(c.centre - t) for c, t in zip(recovered, centres))
        assert rot_err < 5 * sigma and centre_err < 20 * sigma, (sigma, rot_err, centre_err)
        worst.append(max(rot_err, centre_err))
    assert worst[0] < worst[-1]


def test_recovery_from_predicted_frames_with_unnormalised_directions():
    frames = cameras.ray_frames(AZIMUTHS, ELEVATIONS, DISTANCE, SIZE)
    rays = cameras.unpack_ray_frames(frames, average_copies=True) * 0.7  # same lines, other scale
    rotations, centres = _expected_poses(_orbit_c2ws(AZIMUTHS, ELEVATIONS, DISTANCE))
    for cam, rotation, centre in zip(cameras.cameras_from_rays(rays), rotations, centres):
        assert _rotation_angle(cam.rotation, rotation) < 1e-4
        assert np.linalg.norm(cam.centre - centre) < 1e-4


# --- input validation -----------------------------------------------------------

def test_mismatched_lengths_name_the_lists():
    with pytest.raises(ValueError, match=r"azimuths=3, elevations=2, distances=3"):
        cameras.ray_frames([0, 30, 60], [0, 10], 1.5, 64)
    with pytest.raises(ValueError, match=r"distances=1"):
        cameras.ray_frames([0, 30], [0, 10], [1.5], 64)


@pytest.mark.parametrize("size", [60, 0, -8, 64.5])
def test_bad_size_rejected(size):
    with pytest.raises(ValueError, match="multiple of 8"):
        cameras.ray_frames([0], [0], 1.5, size)


def test_empty_and_none_cameras_rejected():
    with pytest.raises(ValueError, match="at least one camera"):
        cameras.ray_frames([], [], 1.5, 64)
    with pytest.raises(ValueError, match="None"):
        cameras.ray_frames([0, None], [0, 10], 1.5, 64)


def test_bad_shapes_rejected():
    with pytest.raises(ValueError, match=r"\(V, 4, 4\)"):
        cameras.plucker_rays(torch.eye(4), 8)
    with pytest.raises(ValueError, match=r"\(V, 16, n, n\)"):
        cameras.unpack_ray_frames(torch.zeros(2, 6, 8, 8))
    with pytest.raises(ValueError, match=r"\(V, n, n, 6\)"):
        cameras.cameras_from_rays(np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="one value per view"):
        cameras.plucker_rays(_orbit_c2ws([0, 30], [0, 0], 1.5), 8, focal=[1.0, 1.0, 1.0])
