"""The task table and build_request: every task end to end on the tiny golden checkpoint, and the
golden reference cases reproduced through the task API (final latents within 1e-4)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from unidiff_core.onediffusion import outputs, tasks
from unidiff_core.onediffusion.pipeline import UniDiffPipeline
from unidiff_core.onediffusion.requests import FrameInput, TaskInputs

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
SUMMARY = json.loads((GOLDEN / "summary.json").read_text())
NEG = tasks.NEGATIVE_PROMPT
TOL = 1e-4


def make_request(task, caption="", **inputs):
    """build_request with the TaskInputs fields as keywords."""
    return tasks.build_request(task, TaskInputs(caption=caption, **inputs))


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)  # the goldens were made with one thread
    return UniDiffPipeline.from_pretrained(GOLDEN / "tiny-onediffusion")


def _photo(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _golden_image(case, i=0):
    return Image.open(GOLDEN / case / f"input_{i}.png")


def _golden_latents(case):
    return load_file(str(GOLDEN / case / "final_latents.safetensors"))["final_latents"]


def _layout(request):
    return [("gen " if not f.given else "given ") + w for f, w in zip(request.frames, request.whats)]


# ----------------------------------------------------------------------------- the table
REQUIRED_TASKS = {
    "text2image": "[[text2image]]", "inpainting": "[[image_inpainting]]", "deblurring": "[[deblurring]]",
    "image_editing": "[[image_editing]]", "faceid": "[[faceid]]", "subject_driven": "[[subject_driven]]",
    "depth2image": "[[depth2image]]", "image2depth": "[[depth2image]]", "canny2image": "[[canny2image]]",
    "image2canny": "[[canny2image]]", "hed2image": "[[hed2img]]", "image2hed": "[[hed2img]]",
    "pose2image": "[[pose2image]]", "image2pose": "[[pose2image]]", "semanticmap2image": "[[semanticmap2image]]",
    "image2semanticmap": "[[semanticmap2image]]", "boundingbox2image": "[[boundingbox2image]]",
    "image2boundingbox": "[[boundingbox2image]]", "image2multiview": "[[multiview]]",
    "text2multiview": "[[multiview]]", "camera_estimation": "[[multiview]]",
}


def test_table_covers_every_task_with_its_token():
    assert {name: spec.token for name, spec in tasks.TASKS.items()} == REQUIRED_TASKS


def test_condition_tasks_have_mirrored_layouts():
    for key in ("depth", "canny", "hed", "pose", "semanticmap", "boundingbox"):
        forward, backward = tasks.TASKS[f"{key}2image"], tasks.TASKS[f"image2{key}"]
        assert forward.denoise_mask == [1, 0] and backward.denoise_mask == [0, 1]
        assert forward.frames[1].what == backward.frames[1].what
        assert backward.default_negative == "" and forward.default_negative == NEG


def test_get_task_unknown_name_lists_valid_tasks():
    with pytest.raises(ValueError, match=r"unknown task 'depth2img'.*did you mean.*"
                                         r"valid tasks: text2image, inpainting"):
        tasks.get_task("depth2img")
    assert tasks.get_task("segmentation").name == "image2semanticmap"
    assert tasks.get_task(" Image2Depth ").name == "image2depth"


def test_docs_table_is_in_sync_with_the_code():
    docs = (Path(__file__).parent.parent / "docs" / "tasks.md").read_text()
    assert tasks.tasks_markdown() in docs


# ----------------------------------------------------------------------------- golden parity
def _run_golden(pipe, case, request):
    kwargs = SUMMARY[case]["kwargs"]
    assert request.prompt == kwargs["prompt"]
    assert request.negative_prompt == kwargs.get("negative_prompt", "")
    assert request.denoise_mask == kwargs.get("denoise_mask", [1])
    result = pipe.generate(**request.generate_kwargs(), seed=SUMMARY[case]["seed"])
    assert (result.latents - _golden_latents(case)).abs().max().item() <= TOL
    return result


def test_golden_text2image(pipe):
    _run_golden(pipe, "t2i", make_request("text2image", "a photo of a small cat sitting on a wooden table",
                                                 height=64, width=64, steps=3))
    _run_golden(pipe, "t2i_nocfg", make_request("text2image", "a red cube", height=64, width=48, steps=3,
                                                       guidance=1.0, negative_prompt=""))


def test_golden_image2depth(pipe):
    request = make_request("image2depth", image=_golden_image("image2depth_mask01"), height=64, width=64,
                                  steps=3)
    result = _run_golden(pipe, "image2depth_mask01", request)
    out = outputs.decode_result(pipe, request, result)
    assert out.depth.shape == (1, 64, 64) and 0 <= out.depth.min() and out.depth.max() <= 1
    assert out.depth.min() == 0 and out.depth.max() == 1
    assert out.depth_color.shape == (1, 64, 64, 3) and out.primary is out.depth_color


def test_golden_depth2image(pipe):
    _run_golden(pipe, "cond2image_mask10", make_request(
        "depth2image", "a red cube and a blue sphere on a white floor", image=_golden_image("cond2image_mask10"),
        height=64, width=64, steps=3))


def test_golden_faceid_two_references(pipe):
    refs = [(_golden_image("faceid_mask100", 0), "a woman with long dark hair"),
            (_golden_image("faceid_mask100", 1), "a woman wearing a floral dress")]
    _run_golden(pipe, "faceid_mask100", make_request("faceid", "a woman smiling at the camera", references=refs,
                                                            height=64, width=64, steps=3))


def test_golden_multiview(pipe):
    request = make_request("image2multiview", "three views of the same object",
                                  images=[_golden_image("multiview_mask0010")], azimuths=[0, 30], elevations=[0, 10],
                                  distances=1.5, height=64, width=64, steps=3)
    result = _run_golden(pipe, "multiview_mask0010", request)
    out = outputs.decode_result(pipe, request, result)
    assert out.generated_views == [1] and len(out.views) == 2 and out.cameras is None


def test_golden_semantic_map_autosize(pipe):
    request = make_request("semanticmap2image", "a sphere", image=_golden_image("cond2image_autosize"),
                                  labels=[("sphere", "cyan")], steps=2)
    assert (request.height, request.width) == (None, None)
    result = _run_golden(pipe, "cond2image_autosize", request)
    assert (result.height, result.width) == (416, 608)


EXTRA = Path(__file__).parent / "fixtures" / "extra"


def _extra_case(name):
    summary = json.loads((EXTRA / "summary.json").read_text())[name]
    images = [Image.open(p) for p in sorted((EXTRA / name).glob("input_*.png"))]
    golden = load_file(str(EXTRA / name / "final_latents.safetensors"))["final_latents"]
    return summary, images, golden


@pytest.mark.parametrize("name", ["t2i_seed7_steps6", "faceid_3refs_seed3", "multiview_3views_seed5",
                                  "poseestimation_seed2", "text2multiview_seed4", "depth2image_bucket_seed9"])
def test_extra_reference_cases_through_the_task_api(pipe, name):
    case, images, golden = _extra_case(name)
    kw = case["kwargs"]
    size = dict(height=kw["height"], width=kw["width"]) if "height" in kw else {}
    common = dict(steps=kw["num_inference_steps"], guidance=kw["guidance_scale"], **size)
    if name.startswith("t2i"):
        request = make_request("text2image", "a cartoon dog sitting on a beach", **common)
    elif name.startswith("faceid"):
        request = make_request("faceid", "a man in a suit", references=list(
            zip(images, ["a man", "a man smiling", "a man outdoors"])), **common)
    elif name.startswith("multiview"):
        request = make_request("image2multiview", "a toy car", images=images, azimuths=[0, 40, 80],
                                      elevations=[0, 10, 20], **common)
    elif name.startswith("poseestimation"):
        request = make_request("camera_estimation", "a toy car", images=images, **common)
    elif name.startswith("text2multiview"):
        request = make_request("text2multiview", "a red chair", azimuths=[0, 30], elevations=[0, 15], **common)
    else:
        request = make_request("depth2image", "a lamp on a desk", image=images[0], **common)
    assert request.prompt == kw["prompt"] and request.negative_prompt == kw["negative_prompt"]
    assert request.denoise_mask == kw.get("denoise_mask", [1])
    result, out = tasks.run_task(pipe, request, seed=case["seed"])
    assert (result.latents - golden).abs().max().item() <= TOL
    if name.startswith("poseestimation"):
        assert [c["given"] for c in out.cameras[0]] == [True, False]


# ----------------------------------------------------------------------------- every task end to end
def _mask(h=48, w=64):
    m = np.zeros((h, w), np.float32)
    m[10:30, 20:40] = 1
    return m


def _cases():
    photo = _photo()
    seg = np.zeros((48, 64), np.float32)
    seg[:20] = 1
    return {
        "text2image": (dict(caption="a cat"), "[[text2image]] a cat", ["gen image"]),
        "inpainting": (dict(image=photo, mask=_mask(), composite=True, caption="a wall"),
                       "[[image_inpainting]] a wall", ["gen image", "given masked_image"]),
        "deblurring": (dict(image=photo), "[[deblurring]]", ["gen image", "given blurred_image"]),
        "image_editing": (dict(image=photo, caption="make it snowy"), "[[image_editing]] make it snowy",
                          ["gen image", "given source_image"]),
        "faceid": (dict(references=[(photo, "r1"), (_photo(seed=1), "r2"), (_photo(seed=2), "r3")],
                        caption="a man"), "[[faceid]] [[img0]] a man [[img1]] r1 [[img2]] r2 [[img3]] r3",
                   ["gen image"] + ["given reference"] * 3),
        "subject_driven": (dict(references=[(photo, "a toy dog on grey")], subject="toy dog", caption="on a beach"),
                           "[[subject_driven]] <item: toy dog> [[img0]] on a beach [[img1]] a toy dog on grey",
                           ["gen image", "given reference"]),
        "depth2image": (dict(image=photo, caption="c"), "[[depth2image]] c", ["gen image", "given depth"]),
        "image2depth": (dict(image=photo), "[[depth2image]]", ["given image", "gen depth"]),
        "canny2image": (dict(photo=photo, canny_low=50, canny_high=100, caption="c"), "[[canny2image]] c",
                        ["gen image", "given canny"]),
        "image2canny": (dict(image=photo), "[[canny2image]]", ["given image", "gen canny"]),
        "hed2image": (dict(image=photo), "[[hed2img]]", ["gen image", "given hed"]),
        "image2hed": (dict(image=photo, caption="c"), "[[hed2img]] c", ["given image", "gen hed"]),
        "pose2image": (dict(image=photo), "[[pose2image]]", ["gen image", "given pose"]),
        "image2pose": (dict(image=photo), "[[pose2image]]", ["given image", "gen pose"]),
        "semanticmap2image": (dict(masks=[("sky", seg), ("road", 1 - seg)], caption="a street"),
                              "[[semanticmap2image]] <#FF0000 red mask: sky> <#00FF00 lime mask: road> a street",
                              ["gen image", "given semantic_map"]),
        "image2semanticmap": (dict(image=photo, labels=["sphere=cyan", "cube"], caption="a scene"),
                              "[[semanticmap2image]] <#00FFFF cyan mask: sphere> <#FF0000 red mask: cube> a scene",
                              ["given image", "gen semantic_map"]),
        "boundingbox2image": (dict(boxes=[{"label": "car", "box": [0.1, 0.5, 0.6, 0.9]}], caption="a road"),
                              "[[boundingbox2image]] <#FF0000 red boundingbox: car> a road",
                              ["gen image", "given box_map"]),
        "image2boundingbox": (dict(image=photo, labels=["car"]), "[[boundingbox2image]] <#FF0000 red boundingbox: car>",
                              ["given image", "gen box_map"]),
        "image2multiview": (dict(images=[photo], azimuths=[0, 20, 40], caption="a toy"), "[[multiview]] a toy",
                            ["given image", "given ray", "gen image", "given ray", "gen image", "given ray"]),
        "text2multiview": (dict(caption="a toy", azimuths=[0, 30], elevations=[0, 10]), "[[multiview]] a toy",
                           ["gen image", "given ray", "gen image", "given ray"]),
        "camera_estimation": (dict(images=[photo, _photo(seed=3)]), "[[multiview]]",
                              ["given image", "given ray", "given image", "gen ray"]),
    }


@pytest.mark.parametrize("name", list(REQUIRED_TASKS))
def test_every_task_runs_end_to_end(pipe, name):
    inputs, prompt, layout = _cases()[name]
    spec = tasks.get_task(name)
    request = make_request(name, height=64, width=64, steps=1, **inputs)
    assert request.prompt == prompt
    assert _layout(request) == layout
    assert request.denoise_mask == [0 if item.startswith("given") else 1 for item in layout]
    assert request.negative_prompt == spec.default_negative and request.guidance == spec.default_guidance
    result, out = tasks.run_task(pipe, request, seed=0)
    assert result.latents.shape == (1, len(layout), 16, 8, 8)
    image_frames = [i for i, item in enumerate(layout) if item.startswith("gen") and not item.endswith("ray")]
    assert out.image_frames == image_frames and all(img.shape == (1, 64, 64, 3) for img in out.images)
    for field in spec.outputs:
        assert getattr(out, field) is not None and getattr(out, field) != {}, field
    if name == "image2semanticmap":
        assert set(out.masks) == {"sphere", "cube"} and out.masks["cube"].shape == (1, 64, 64)
        assert out.overlay.shape == (1, 64, 64, 3)
    if name == "image2boundingbox":
        assert isinstance(out.boxes, list) and len(out.boxes) == 1 and "car" in out.masks
    if name == "inpainting":
        assert out.composite.shape == (1, 48, 64, 3)
        original = np.asarray(inputs["image"], np.float32) / 255
        keep = inputs["mask"] == 0
        assert np.array_equal(out.composite[0].numpy()[keep], original[keep])
    if name in ("image2multiview", "text2multiview"):
        assert len(out.views) == len(layout) // 2
    if name == "camera_estimation":
        cams = out.cameras[0]
        assert [c["given"] for c in cams] == [True, False]
        assert abs(cams[0]["azimuth"]) < 1e-3 and {"azimuth", "elevation", "distance", "rotation"} <= set(cams[1])


def test_task_defaults_apply():
    request = make_request("image_editing", "make it red", image=_photo())
    assert (request.steps, request.guidance, request.negative_prompt) == (60, 3.2, NEG)
    assert (request.height, request.width) == (None, None)  # the pipeline picks the image's bucket
    t2i = make_request("text2image", "x")
    assert (t2i.height, t2i.width, t2i.steps) == (1024, 1024, 50)
    mv = make_request("image2multiview", images=[_photo()])
    assert mv.denoise_mask == [0, 0, 1, 0, 1, 0, 1, 0] and (mv.height, mv.width) == (512, 512)
    assert [v.azimuth for v in mv.views] == [0, 20, 40, 60] and all(v.distance == 1.5 for v in mv.views)
    tmv = make_request("text2multiview", "a toy")
    assert [v.elevation for v in tmv.views] == [0, 10, 15, 20]


def test_full_prompt_override_keeps_layout_and_reads_colour_tokens():
    prompt = "[[semanticmap2image]] <#00ffff Cyan mask: dragon> a dragon"
    request = make_request("image2semanticmap", image=_photo(), prompt=prompt)
    assert request.prompt == prompt and request.denoise_mask == [0, 1]
    assert [(c.label, c.hex) for c in request.labels] == [("dragon", "#00FFFF")]


def test_build_request_errors_are_clear():
    photo = _photo()
    with pytest.raises(ValueError, match="unknown task"):
        make_request("image2depthmap", image=photo)
    with pytest.raises(ValueError, match="task 'image2depth' needs image"):
        make_request("image2depth")
    with pytest.raises(ValueError, match="needs labels"):
        make_request("image2semanticmap", image=photo)
    with pytest.raises(ValueError, match="boxes is empty"):
        make_request("boundingbox2image", boxes=[])
    with pytest.raises(ValueError, match="21 labels"):
        make_request("image2boundingbox", image=photo, labels=[f"l{i}" for i in range(21)])
    with pytest.raises(ValueError, match="does not match the image"):
        make_request("inpainting", image=photo, mask=np.ones((10, 10)))
    with pytest.raises(ValueError, match="4 reference images"):
        make_request("faceid", references=[photo] * 4)
    with pytest.raises(ValueError, match="square size"):
        make_request("text2multiview", "x", height=64, width=128)
    with pytest.raises(ValueError, match="at least 2 images"):
        make_request("camera_estimation", images=[photo])
    with pytest.raises(ValueError, match="needs subject"):
        make_request("subject_driven", references=[photo])
    with pytest.raises(ValueError, match="give either image"):
        make_request("canny2image", image=photo, photo=photo)
    with pytest.raises(ValueError, match=r"task 'image2depth' does not take labels \(got 'list'\); "
                                         r"its inputs are: image"):
        make_request("image2depth", image=photo, labels=["x"])
    with pytest.raises(ValueError, match="height=64, width=None"):
        make_request("image2depth", image=photo, height=64)


# ----------------------------------------------------------------------------- free-form
def test_freeform_zero_shot_combination(pipe):
    photo = _photo()
    request = tasks.freeform_request(
        "[[depth2image]] [[semanticmap2image]] <#00FFFF cyan mask: sky> a street",
        [{"kind": "image", "image": photo}, {"kind": "image", "what": "depth"},
         FrameInput(what="semantic_map")], height=64, width=64, steps=1)
    assert request.denoise_mask == [0, 1, 1] and request.task is None
    result, out = tasks.run_task(pipe, request, seed=0)
    assert out.image_frames == [1, 2]
    assert out.depth.shape == (1, 64, 64) and set(out.masks) == {"sky"}


def test_freeform_rays_match_the_multiview_task(pipe):
    photo = _photo(64, 64)
    free = tasks.freeform_request("[[multiview]] a toy", [{"image": photo}, {"kind": "ray", "camera": (0, 0, 1.5)},
                                                          {}, {"kind": "ray", "camera": (30, 10, 1.5)}],
                                  negative_prompt=NEG, height=64, width=64, steps=2)
    task = make_request("image2multiview", "a toy", images=[photo], azimuths=[0, 30], elevations=[0, 10],
                               height=64, width=64, steps=2)
    assert free.denoise_mask == task.denoise_mask == [0, 0, 1, 0]
    a = pipe.generate(**free.generate_kwargs(), seed=0).latents
    b = pipe.generate(**task.generate_kwargs(), seed=0).latents
    assert torch.equal(a, b)


def test_freeform_errors():
    with pytest.raises(ValueError, match="every frame is given"):
        tasks.freeform_request("x", [{"image": _photo()}])
    with pytest.raises(ValueError, match="kind 'video'"):
        tasks.freeform_request("x", [{"kind": "video"}])
    with pytest.raises(ValueError, match="ray frames need a square size"):
        tasks.freeform_request("x", [{}, {"kind": "ray", "camera": (0, 0)}], height=64, width=32)
