"""Condition builders on synthetic inputs with known answers (unidiff_core.onediffusion.conditions, palette)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from unidiff_core.onediffusion import builders, cameras, conditions, palette


def _photo(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- palette
def test_palette_has_the_20_colours_of_the_prompt_guide_in_order():
    assert len(palette.PALETTE) == 20
    assert palette.PALETTE[0] == ("#FF0000", "red")
    assert palette.PALETTE[5] == ("#00FFFF", "cyan")
    assert palette.PALETTE[-1] == ("#DA70D6", "orchid")
    assert len({h for h, _ in palette.PALETTE}) == 20


def test_assign_colors_palette_order_and_pins():
    labels = palette.assign_colors(["a", "b", "c"], [None, "red", None])
    assert [(x.label, x.hex, x.name) for x in labels] == [("a", "#00FF00", "lime"), ("b", "#FF0000", "red"),
                                                          ("c", "#0000FF", "blue")]
    assert labels[0].token("mask") == "<#00FF00 lime mask: a>"
    assert labels[1].token("boundingbox") == "<#FF0000 red boundingbox: b>"
    assert palette.resolve_color("#00ffff") == ("#00FFFF", "cyan")
    assert palette.resolve_color(5) == ("#00FFFF", "cyan")


def test_assign_colors_errors():
    with pytest.raises(ValueError, match="21 labels.*at most 20"):
        palette.assign_colors([f"l{i}" for i in range(21)])
    with pytest.raises(ValueError, match="not in the model's 20-colour palette"):
        palette.assign_colors(["a"], ["chartreuse"])
    with pytest.raises(ValueError, match="repeat a colour"):
        palette.assign_colors(["a", "b"], ["red", "#ff0000"])


def test_parse_color_tokens_reads_reference_style_prompts():
    prompt = ("[[semanticmap2image]] <#00ffff Cyan mask: dragon> <#ff0000 yellow mask: bird> "
              "<#800080 purple mask: woman> A woman")
    parsed = palette.parse_color_tokens(prompt)
    assert [(c.label, c.hex, kind) for c, kind in parsed] == [
        ("dragon", "#00FFFF", "mask"), ("bird", "#FF0000", "mask"), ("woman", "#800080", "mask")]


# ----------------------------------------------------------------------------- inpainting
def test_inpaint_condition_paints_masked_region_black_and_keeps_the_rest():
    photo = _photo()
    mask = np.zeros((48, 64), np.float32)
    mask[10:20, 5:30] = 1.0
    cond = np.array(conditions.inpaint_condition(photo, mask))
    assert (cond[10:20, 5:30] == 0).all()
    keep = mask == 0
    assert (cond[keep] == photo[keep]).all()
    grey = np.array(conditions.inpaint_condition(photo, torch.from_numpy(mask)[None], fill="grey"))
    assert (grey[10:20, 5:30] == 128).all()


def test_inpaint_condition_wrong_mask_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"mask: size 32x32 \(WxH\) does not match the image 64x48"):
        conditions.inpaint_condition(_photo(), np.ones((32, 32)))


def test_composite_keeps_unmasked_pixels_exact_with_feathered_edge():
    photo = _photo(64, 64)
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    generated = np.full((64, 64, 3), 0.5, np.float32)
    out = conditions.composite_inpaint(generated, photo, mask, feather=4)
    original = photo.astype(np.float32) / 255
    assert np.array_equal(out[mask == 0], original[mask == 0])
    assert np.allclose(out[32, 32], 0.5)  # deep inside: the generated pixel
    alpha = conditions.feather_alpha(mask, 4)
    assert alpha[mask == 0].max() == 0 and alpha[32, 32] == 1 and 0 < alpha[16, 32] < 1


def test_composite_pastes_a_cropped_generation_back_at_original_size():
    photo = _photo(48, 96)  # wide original; a square generation covers the centre crop
    mask = np.ones((48, 96), np.float32)
    generated = np.zeros((32, 32, 3), np.float32)
    out = conditions.composite_inpaint(generated, photo, mask, feather=0)
    assert out.shape == (48, 96, 3)
    top, left, ch, cw = conditions.crop_box(48, 96, 32, 32)
    assert (top, left, ch, cw) == (0, 24, 48, 48)
    assert (out[:, 24:72] == 0).all()
    assert np.array_equal(out[:, :24], photo[:, :24].astype(np.float32) / 255)


# ----------------------------------------------------------------------------- boxes
def test_box_map_fractions_and_pixels_render_filled_palette_rectangles():
    boxes = [{"label": "cat", "box": [0.25, 0.5, 0.5, 1.0]}, {"label": "dog", "box": [0, 0, 0.125, 0.25]}]
    layout = conditions.box_map(boxes, (32, 64))
    img = np.array(layout.image)
    assert [b["box"] for b in layout.boxes] == [[16, 16, 32, 32], [0, 0, 8, 8]]
    assert (img[16:32, 16:32] == (255, 0, 0)).all()
    assert (img[0:8, 0:8] == (0, 255, 0)).all()
    assert img.sum() == 255 * 16 * 16 + 255 * 8 * 8
    assert [lab.token("boundingbox") for lab in layout.labels] == ["<#FF0000 red boundingbox: cat>",
                                                                    "<#00FF00 lime boundingbox: dog>"]
    pixels = conditions.box_map(json.dumps([{"label": "cat", "box": [16, 16, 32, 32], "color": "cyan"}]), (32, 64))
    assert pixels.boxes[0]["box"] == [16, 16, 32, 32] and pixels.labels[0].hex == "#00FFFF"


def test_box_map_same_label_shares_a_colour():
    layout = conditions.box_map([{"label": "bird", "box": [0, 0, 4, 4]}, {"label": "bird", "box": [8, 8, 12, 12]}],
                                (16, 16), units="pixel")
    assert len(layout.labels) == 1
    img = np.array(layout.image)
    assert (img[9, 9] == img[1, 1]).all()


def test_box_map_errors():
    with pytest.raises(ValueError, match="boxes is empty"):
        conditions.box_map([], (32, 32))
    with pytest.raises(ValueError, match="21 boxes given.*at most 20"):
        conditions.box_map([{"label": f"l{i}", "box": [0, 0, 1, 1]} for i in range(21)], (32, 32), units="pixel")
    with pytest.raises(ValueError, match="no label"):
        conditions.box_map([{"box": [0, 0, 1, 1]}], (32, 32))
    with pytest.raises(ValueError, match=r"reaches outside the image \(pixels of the 32x32 canvas\)"):
        conditions.box_map([{"label": "a", "box": [40, 40, 50, 50]}], (32, 32))
    with pytest.raises(ValueError, match=r"reaches outside the image \(fractions 0..1"):
        conditions.box_map([{"label": "a", "box": [0.5, 0.5, 1.5, 0.9]}], (32, 32), units="fraction")
    with pytest.raises(ValueError, match="corners not ordered"):  # an [x, y, w, h] box
        conditions.box_map([{"label": "a", "box": [10, 12, 4, 4]}], (32, 32), units="pixel")
    with pytest.raises(ValueError, match="not valid JSON"):
        conditions.box_map("[{", (32, 32))


# ----------------------------------------------------------------------------- semantic maps
def test_semantic_map_paints_each_label_in_its_colour():
    a = np.zeros((20, 30), np.float32)
    a[:10] = 1
    b = torch.zeros(20, 30)
    b[12:, 20:] = 1
    layout = conditions.semantic_map([("sky", a), ("car", b)], labels=["car=cyan"])
    img = np.array(layout.image)
    assert [(lab.label, lab.name) for lab in layout.labels] == [("sky", "red"), ("car", "cyan")]
    assert (img[:10] == (255, 0, 0)).all() and (img[12:, 20:] == (0, 255, 255)).all()
    assert (img[10:12] == 0).all()


def test_semantic_map_errors():
    with pytest.raises(ValueError, match="does not match"):
        conditions.semantic_map([("a", np.ones((8, 8))), ("b", np.ones((8, 9)))])
    with pytest.raises(ValueError, match="21 labels"):
        conditions.semantic_map([(f"l{i}", np.ones((4, 4))) for i in range(21)])
    with pytest.raises(ValueError, match="masks is empty"):
        conditions.semantic_map([])


# ----------------------------------------------------------------------------- references
def test_reference_prompt_and_list():
    refs = conditions.reference_list([(_photo(), " ref one "), (_photo(), "")])
    assert [c for _, c in refs] == ["ref one", ""]
    expected = "[[img0]] target [[img1]] ref one [[img2]] ref two"
    assert builders.reference_prompt("target", ["ref one", "ref two"]) == expected
    assert builders.reference_prompt("", ["r"]) == "[[img0]] [[img1]] r"
    with pytest.raises(ValueError, match="4 reference images given; this task takes 1 to 3"):
        conditions.reference_list([_photo()] * 4)


# ----------------------------------------------------------------------------- multi-view
def test_multiview_layout_masks():
    assert conditions.multiview_layout([_photo()], [0, 30, 60]).denoise_mask == [0, 0, 1, 0, 1, 0]
    assert conditions.multiview_layout([], [0, 30]).denoise_mask == [1, 0, 1, 0]
    pose = conditions.multiview_layout([_photo(), _photo()], [0, None])
    assert pose.denoise_mask == [0, 0, 0, 1]
    assert pose.views[1].elevation is None and pose.views[1].distance is None
    placed = conditions.multiview_layout([_photo()], [0, 30, 60], image_views=[2])
    assert placed.denoise_mask == [1, 0, 1, 0, 0, 0]


def test_multiview_frames_rays_match_the_camera_module():
    layout = conditions.multiview_layout([], [0, 30], [0, 10], 1.5)
    frames = conditions.multiview_frames(layout, size=64)
    expected = cameras.ray_frames([0, 30], [0, 10], 1.5, 64)
    assert [f.kind for f in frames] == ["image", "ray", "image", "ray"]
    assert torch.equal(frames[1].latent, expected[0]) and torch.equal(frames[3].latent, expected[1])
    assert torch.equal(conditions.camera_rays([(0, 0, 1.5), (30, 10, 1.5)], 64), expected)


def test_multiview_layout_errors():
    with pytest.raises(ValueError, match="no camera is known"):
        conditions.multiview_layout([_photo()], [None, None])
    with pytest.raises(ValueError, match="elevations: 3 value"):
        conditions.multiview_layout([], [0, 30], [0, 0, 0])
    with pytest.raises(ValueError, match="nothing to generate"):
        conditions.multiview_layout([_photo()], [0])


# ----------------------------------------------------------------------------- canny
def test_canny_map_is_white_edges_on_black_with_thresholds():
    photo = np.zeros((32, 32, 3), np.uint8)
    photo[:, 16:] = 255
    edges = np.array(conditions.canny_map(Image.fromarray(photo), 50, 150))
    assert edges.shape == (32, 32, 3)
    assert set(np.unique(edges)) <= {0, 255}
    cols = np.where(edges[..., 0].any(axis=0))[0]
    assert set(cols) <= {15, 16} and len(cols) > 0
    faint = (photo // 16).astype(np.uint8)  # a 15-level step: below high=150, found with low thresholds
    assert not np.array(conditions.canny_map(faint, 50, 150)).any()
    assert np.array(conditions.canny_map(faint, 5, 10)).any()
    with pytest.raises(ValueError, match="need 0 <= low < high"):
        conditions.canny_map(photo, 200, 100)
