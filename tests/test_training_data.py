"""The procedural task data: deterministic, disjoint seed ranges, the task table's prompts and layouts,
and ground truth that the pack's own decoders read back exactly."""

import numpy as np
import pytest
import torch

from training.data import HELDOUT_SEEDS, TASK_BUILDERS, TRAIN_SEEDS, make_sample
from training.data.figure import JOINTS, keypoints_from_map, pose_map, sample_figure
from training.data.objects3d import render_view, sample_object
from training.data.samples import as_tensor
from unidiff_core.onediffusion import outputs
from unidiff_core.onediffusion.tasks import TASKS

SIZE = 64
SEED = HELDOUT_SEEDS.start + 17


def _values_equal(a, b):
    return all(torch.equal(as_tensor(x), as_tensor(y)) for x, y in zip(a, b))


def test_seed_ranges_are_disjoint():
    assert TRAIN_SEEDS.stop <= HELDOUT_SEEDS.start


@pytest.mark.parametrize("task", list(TASK_BUILDERS))
def test_same_seed_same_sample_other_seed_other_sample(task):
    a, b, c = make_sample(task, SEED, SIZE), make_sample(task, SEED, SIZE), make_sample(task, SEED + 1, SIZE)
    assert a.prompt == b.prompt and a.request.denoise_mask == b.request.denoise_mask
    assert _values_equal(a.frame_values(), b.frame_values())
    assert a.prompt != c.prompt or not _values_equal(a.frame_values(), c.frame_values())


@pytest.mark.parametrize("task", [t for t in TASK_BUILDERS if t in TASKS])
def test_prompt_and_layout_come_from_the_task_table(task):
    spec = TASKS[task]
    sample = make_sample(task, SEED, SIZE, views=4 if spec.multiview and task != "camera_estimation" else
                         1 if task == "faceid" else None)
    assert sample.prompt.startswith(spec.token)
    assert sample.request.denoise_mask == spec.denoise_mask
    # every generated frame has a target, no given frame has one
    assert sorted(sample.targets) == [i for i, m in enumerate(spec.denoise_mask) if m]
    for value, slot in zip(sample.frame_values(), spec.frames):
        t = as_tensor(value)
        assert t.shape == ((3, SIZE, SIZE) if slot.kind == "image" else (16, SIZE // 8, SIZE // 8))


def test_depth_ground_truth_decodes_to_the_scene_order():
    s = make_sample("image2depth", SEED, SIZE)
    decoded = outputs.decode_depth(s.targets[1]).depth
    depth = s.truth["depth"]
    # min-max normalised by the decoder, so compare orders: nearer in the scene = nearer decoded
    near, far = np.unravel_index(depth.argmin(), depth.shape), np.unravel_index(depth.argmax(), depth.shape)
    assert decoded[near] == 0.0 and decoded[far] == 1.0
    lo, hi = depth.min(), depth.max()
    assert np.allclose(decoded, (depth - lo) / (hi - lo), atol=1 / 255 + 1e-6)


def test_box_map_ground_truth_decodes_to_the_boxes():
    for seed in range(SEED, SEED + 5):
        s = make_sample("image2boundingbox", seed, SIZE)
        found = outputs.decode_boxes(s.targets[1], s.request.labels, min_area=1).boxes
        truth = s.truth["boxes"]
        # nearer boxes may cover farther ones; every unhidden truth box is found exactly
        boxes = {(b["label"], b["x0"], b["y0"], b["x1"], b["y1"]) for b in found}
        covered = [t for t in truth if (t["label"], *t["box"]) in boxes]
        assert covered, (truth, found)


def test_semantic_map_ground_truth_decodes_to_the_masks():
    s = make_sample("image2semanticmap", SEED, SIZE)
    decoded = outputs.decode_segmentation(s.targets[1], s.request.labels, min_area=1).masks
    for label, mask in s.truth["masks"]:
        assert np.array_equal(decoded[label], mask > 0.5), label


def test_a_label_shift_moves_each_labels_colour_and_keeps_the_photo():
    """label_shift=1 (the trainer's label pairs): the same photo and masks; each label takes the colour of the
    label before it in the prompt (the first the last's), in the prompt and in the target map alike."""
    seed = next(s for s in range(SEED, SEED + 50) if len(make_sample("image2semanticmap", s, SIZE).request.labels) >= 2)
    a, b = make_sample("image2semanticmap", seed, SIZE), make_sample("image2semanticmap", seed, SIZE, label_shift=1)
    assert np.array_equal(a.frame_values()[0], b.frame_values()[0]) and a.request.prompt != b.request.prompt
    colour_a = {lab.label: lab.hex for lab in a.request.labels}
    names = list(colour_a)
    colour_b = {lab.label: lab.hex for lab in b.request.labels}
    assert colour_b == {n: colour_a[names[i - 1]] for i, n in enumerate(names)}
    decoded = outputs.decode_segmentation(b.targets[1], b.request.labels, min_area=1).masks
    for label, mask in a.truth["masks"]:
        assert np.array_equal(decoded[label], mask > 0.5), label
    with pytest.raises(ValueError, match="label_shift=1 for task 'image2depth'"):
        make_sample("image2depth", seed, SIZE, label_shift=1)


def test_camera_estimation_target_rays_give_back_the_camera():
    s = make_sample("camera_estimation", SEED, SIZE)
    rays = torch.stack([s.frame_values()[1], s.targets[3]])
    cams = outputs.cameras_from_ray_latents(rays, s.request.views, focal=s.request.focal)
    assert cams[1]["azimuth"] == pytest.approx(s.truth["azimuths"][1], abs=0.5)
    assert cams[1]["elevation"] == pytest.approx(s.truth["elevations"][1], abs=0.5)


def test_multiview_views_differ_with_the_camera_and_match_at_the_same_camera():
    obj = sample_object(SEED)
    a, b, c = render_view(obj, 30, 10, size=SIZE), render_view(obj, 30, 10, size=SIZE), render_view(obj, 100, 10, size=SIZE)
    assert np.array_equal(a, b) and np.abs(a - c).mean() > 0.01


def test_pose_keypoints_read_back_from_the_map():
    fig = sample_figure(SEED)
    found = keypoints_from_map(pose_map(fig, 128))
    assert len(found) == len(JOINTS)
    errors = [np.hypot(f[0] - k[0], f[1] - k[1]) for f, k in zip(found, fig.keypoints) if f is not None]
    assert len(errors) >= len(JOINTS) - 2 and np.median(errors) < 0.02


def test_editing_pairs_change_only_the_edited_region():
    kinds = set()
    for seed in range(SEED, SEED + 12):
        s = make_sample("image_editing", seed, SIZE)
        before, after, region = s.frame_values()[1], s.targets[0], s.truth["region"]
        kinds.add(s.truth["edit"])
        assert region.any()
        assert np.abs(before - after)[~region].max() < 0.02
    assert kinds == {"recolour", "remove", "move", "add"}


def test_faceid_references_show_one_identity_in_other_contexts():
    from training.data.faces import pose_caption, render_portrait
    from unidiff_core.onediffusion.requests import TaskInputs
    from unidiff_core.onediffusion.tasks import build_request

    counts = set()
    for seed in range(SEED, SEED + 12):
        s = make_sample("faceid", seed, SIZE)
        refs = s.frame_values()[1:]
        counts.add(len(refs))
        # the layout inference builds for these references: one generated frame, one given frame per reference
        inference = build_request("faceid", TaskInputs(height=SIZE, width=SIZE, caption=pose_caption(s.truth["pose"]),
                                                       references=[(r, pose_caption(p)) for r, p in
                                                                   zip(refs, s.truth["poses"][1:])]))
        assert s.request.denoise_mask == inference.denoise_mask == [1] + [0] * len(refs)
        assert s.prompt == inference.prompt
        for ref, pose in zip(refs, s.truth["poses"][1:]):
            assert np.array_equal(ref, render_portrait(s.truth["identity"], pose, SIZE))
            assert np.abs(ref - s.targets[0]).mean() > 0.01  # another context, not a copy
        # the captions name the context only: outside the background names no attribute value appears
        words = s.prompt
        for pose in s.truth["poses"]:
            words = words.replace(f"on a {pose.background} background", "")
        assert not any(v in words for v in s.truth["identity"].values()), s.prompt
    assert counts == {1, 2, 3}
    assert len(make_sample("faceid", SEED, SIZE, views=2).frame_values()) == 3


def test_unknown_task_is_an_error_naming_it():
    with pytest.raises(ValueError, match="no data generator for task 'nope'"):
        make_sample("nope", 0)
