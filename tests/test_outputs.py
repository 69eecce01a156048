"""Output decoders on synthetic frames with known answers (unidiff_core.onediffusion.outputs)."""

import json

import numpy as np
import pytest
import torch

from unidiff_core.onediffusion import cameras, conditions, outputs
from unidiff_core.onediffusion.palette import assign_colors
from unidiff_core.onediffusion.requests import ViewInfo


def _iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return (a & b).sum() / max((a | b).sum(), 1)


# ----------------------------------------------------------------------------- depth
def test_depth_is_normalised_inverted_luma():
    ramp = np.tile(np.linspace(0.2, 0.8, 16, dtype=np.float32), (4, 1))  # left dark (far) .. right bright (near)
    frame = np.repeat(ramp[..., None], 3, axis=-1)
    result = outputs.decode_depth(frame)
    assert result.depth.dtype == np.float32 and result.depth.shape == (4, 16)
    np.testing.assert_allclose(result.depth[0], np.linspace(1, 0, 16), atol=1e-6)  # 0 near, 1 far
    np.testing.assert_allclose(result.grey[..., 0], 1 - result.depth, atol=1e-6)  # grey: near white
    np.testing.assert_allclose(result.color[0, -1], np.array([158, 1, 66]) / 255, atol=1e-6)  # near: Spectral(0)
    np.testing.assert_allclose(result.color[0, 0], np.array([94, 79, 162]) / 255, atol=1e-6)  # far: Spectral(1)


def test_depth_uses_luma_weights_and_flat_frames_do_not_divide_by_zero():
    frame = np.zeros((2, 2, 3), np.float32)
    frame[0, 0] = (1, 0, 0)  # luma 0.299
    frame[0, 1] = (0, 1, 0)  # luma 0.587 (brightest -> nearest)
    result = outputs.decode_depth(frame)
    assert result.depth[0, 1] == 0 and result.depth[1, 1] == 1
    np.testing.assert_allclose(result.depth[0, 0], 1 - 0.299 / 0.587, atol=1e-6)
    flat = outputs.decode_depth(np.full((3, 3, 3), 0.5, np.float32))
    assert np.isfinite(flat.depth).all()


def test_spectral_matches_the_matplotlib_lookup_table():
    # matplotlib's Spectral: 11 ColorBrewer anchors, 256-entry table, value v -> entry floor(v * 256)
    assert outputs.SPECTRAL_LUT.shape == (256, 3)
    np.testing.assert_allclose(outputs.spectral(0.5), outputs.SPECTRAL_LUT[128], atol=1e-7)
    np.testing.assert_allclose(outputs.spectral(1.0), np.array([94, 79, 162]) / 255, atol=1e-7)
    # entry 128 sits just past the middle anchor (255, 255, 191) towards (230, 245, 152)
    t = 128 / 255 * 10 - 5
    expected = (np.array([255, 255, 191]) * (1 - t) + np.array([230, 245, 152]) * t) / 255
    np.testing.assert_allclose(outputs.SPECTRAL_LUT[128], expected, atol=1e-7)
    assert outputs.spectral(np.zeros((2, 3))).shape == (2, 3, 3)


# ----------------------------------------------------------------------------- segmentation
def _colour_map():
    labels = assign_colors(["sky", "car", "tree"], ["cyan", None, "#800080"])
    truth = {lab.label: np.zeros((40, 50), bool) for lab in labels}
    truth["sky"][:12] = True
    truth["car"][20:35, 5:25] = True
    truth["tree"][15:40, 30:45] = True
    img = np.zeros((40, 50, 3), np.uint8)
    for lab in labels:
        img[truth[lab.label]] = lab.rgb
    return labels, truth, img


def test_colour_coded_map_decodes_to_masks_with_iou_1():
    labels, truth, img = _colour_map()
    noisy = np.clip(img.astype(int) + np.random.default_rng(0).integers(-25, 26, img.shape), 0, 255).astype(np.uint8)
    for frame in (img, noisy):
        result = outputs.decode_segmentation(frame, labels, source=np.zeros((80, 100, 3), np.uint8))
        for lab in labels:
            assert _iou(result.masks[lab.label], truth[lab.label]) == 1.0, lab.label
    assert result.overlay.shape == (40, 50, 3)


def test_segmentation_cleanup_drops_specks_and_fills_pinholes():
    labels, truth, img = _colour_map()
    img[38, 2] = labels[0].rgb  # a one-pixel cyan speck far from the sky
    img[5, 25] = (0, 0, 0)  # a pinhole in the sky
    result = outputs.decode_segmentation(img, labels, min_area=4)
    assert _iou(result.masks["sky"], truth["sky"]) == 1.0
    raw = outputs.decode_segmentation(img, labels, min_area=1)
    assert raw.masks["sky"][38, 2] and not raw.masks["sky"][5, 25]


def test_segmentation_overlay_is_a_half_blend_of_the_source():
    labels, _, img = _colour_map()
    source = np.full((40, 50, 3), 200, np.uint8)
    result = outputs.decode_segmentation(img, labels, source=source)
    np.testing.assert_allclose(result.overlay[0, 0], 0.5 * 200 / 255 + 0.5 * np.array([0, 1, 1]), atol=1e-5)
    with pytest.raises(ValueError, match="needs labels"):
        outputs.decode_segmentation(img, [])


# ----------------------------------------------------------------------------- boxes
def test_boxes_drawn_then_parsed_back_exactly():
    boxes = [{"label": "cat", "box": [3, 4, 20, 30]}, {"label": "dog", "box": [30, 2, 60, 12]},
             {"label": "cat", "box": [40, 25, 62, 44]}]
    layout = conditions.box_map(boxes, (48, 64), units="pixel")
    result = outputs.decode_boxes(layout.image, layout.labels)
    parsed = [(b["label"], [b["x0"], b["y0"], b["x1"], b["y1"]], b["score"]) for b in result.boxes]
    assert parsed == [("cat", [3, 4, 20, 30], 1.0), ("cat", [40, 25, 62, 44], 1.0), ("dog", [30, 2, 60, 12], 1.0)]
    assert result.boxes[0]["box_fraction"] == [round(3 / 64, 4), round(4 / 48, 4), round(20 / 64, 4), round(30 / 48, 4)]
    json.dumps(result.boxes)
    cat = np.zeros((48, 64), bool)
    cat[4:30, 3:20] = cat[25:44, 40:62] = True
    assert np.array_equal(result.masks["cat"], cat)
    assert result.overlay.shape == (48, 64, 3)


def test_boxes_round_trip_from_fractions():
    layout = conditions.box_map([{"label": "moon", "box": [0.5, 0.125, 0.75, 0.375]}], (64, 64))
    b = outputs.decode_boxes(layout.image, layout.labels).boxes[0]
    assert (b["x0"], b["y0"], b["x1"], b["y1"]) == (32, 8, 48, 24)
    assert b["box_fraction"] == [0.5, 0.125, 0.75, 0.375]


# ----------------------------------------------------------------------------- cameras
def test_camera_poses_recovered_from_ray_maps_of_known_cameras():
    az, el, dist = [0.0, 30.0, 60.0, 90.0], [0.0, 10.0, 15.0, 20.0], 1.5
    rays = cameras.ray_frames(az, el, dist, 64)
    layout = conditions.multiview_layout([], az, el, dist)
    views = [ViewInfo(v.azimuth, v.elevation, v.distance, 2 * i, 2 * i + 1, False, True)
             for i, v in enumerate(layout.views)]
    recovered = outputs.cameras_from_ray_latents(rays, views, focal=cameras.DEFAULT_FOCAL)
    for cam, a, e in zip(recovered, az, el):
        assert abs(cam["azimuth"] - a) < 1e-3 and abs(cam["elevation"] - e) < 1e-3
        assert abs(cam["distance"] - dist) < 1e-4 and cam["look_at_error_deg"] < 1e-3
        assert cam["residual"] < 1e-5
    np.testing.assert_allclose(recovered[0]["rotation"], np.eye(3), atol=1e-6)
    np.testing.assert_allclose(recovered[0]["centre"], 0, atol=1e-6)
    estimated = outputs.cameras_from_ray_latents(rays, views, focal=None)
    assert abs(estimated[2]["focal"] - cameras.DEFAULT_FOCAL) < 1e-3


# ----------------------------------------------------------------------------- saving
def test_save_task_output_writes_the_natural_files(tmp_path):
    depth = torch.rand(1, 8, 8)
    out = outputs.TaskOutput(task="image2depth", prompt="[[depth2image]]", depth=depth,
                             depth_grey=(1 - depth)[..., None].expand(-1, -1, -1, 3).contiguous(),
                             depth_color=torch.rand(1, 8, 8, 3), masks={"a cat": torch.ones(1, 8, 8)},
                             boxes=[[{"label": "a cat", "x0": 0, "y0": 0, "x1": 8, "y1": 8, "score": 1.0}]])
    written = {p.name for p in outputs.save_task_output(out, tmp_path)}
    assert written == {"depth_0.png", "depth_color_0.png", "depth_0.npy", "mask_a_cat_0.png", "boxes.json"}
    assert np.array_equal(np.load(tmp_path / "depth_0.npy"), depth[0].numpy())
    assert json.loads((tmp_path / "boxes.json").read_text())[0][0]["label"] == "a cat"
