"""`python -m unidiff_core run --task ...` and `python -m unidiff_core tasks` on the tiny golden checkpoint.

Every task runs from the CLI; the held-out kinds of reference cases (inpainting, editing,
segmentation, boxes, 3-reference face-ID, 3-view multi-view, canny) give identical latents through
--task and through a free-form --denoise-mask run; golden cases match within 1e-4 both ways.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from unidiff_core.onediffusion import conditions, tasks
from unidiff_core.cli import main

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
CKPT = str(GOLDEN / "tiny-onediffusion")
NEG = tasks.NEGATIVE_PROMPT
BASE = ["run", "--checkpoint", CKPT, "--threads", "1", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)

    def save(name, array):
        Image.fromarray(array).save(root / name)
        return str(root / name)

    photo = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    seg = np.zeros((48, 64), np.uint8)
    seg[:20] = 255
    boxes = [{"label": "car", "box": [0.125, 0.5, 0.625, 0.875]}, {"label": "tree", "box": [0.75, 0.0, 1.0, 0.5]}]
    (root / "boxes.json").write_text(json.dumps(boxes))
    paths = {
        "photo": save("photo.png", photo),
        "photo2": save("photo2.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
        "photo3": save("photo3.png", rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)),
        "square": save("square.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
        "mask": save("mask.png", mask),
        "seg": save("seg.png", seg),
        "boxes": str(root / "boxes.json"),
    }
    paths["masked"] = save("masked.png", np.array(conditions.inpaint_condition(photo, mask)))
    paths["canny"] = save("canny.png", np.array(conditions.canny_map(photo, 100, 200)))
    paths["box_map"] = save("box_map.png", np.array(conditions.box_map(boxes, (64, 64)).image))
    return paths


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = next(json.loads(line) for line in captured.out.splitlines() if line.startswith("{"))
    return summary, captured.out


def _latents(path):
    return load_file(str(path))["latents"]


# ----------------------------------------------------------------------------- tasks listing
def test_tasks_command_lists_every_task_with_inputs_and_defaults(capsys):
    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    for name, spec in tasks.TASKS.items():
        assert f"{name:<20} {spec.token}" in text
    assert "inputs:  image, mask, caption" in text and "defaults: size 1024x1024, steps 50, guidance 4.0" in text
    assert main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(tasks.TASKS)
    assert rows[0]["denoise_mask"] == [1] and rows[0]["default_size"] == [1024, 1024]


# ----------------------------------------------------------------------------- every task
def _task_cases(f):
    return {
        "text2image": (["--caption", "a cat"], "[[text2image]] a cat", [1], ["frame0_0.png"]),
        "inpainting": (["--image", f["photo"], "--mask", f["mask"], "--composite", "--caption", "a wall"],
                       "[[image_inpainting]] a wall", [1, 0], ["frame0_0.png", "composite_0.png"]),
        "deblurring": (["--image", f["photo"]], "[[deblurring]]", [1, 0], ["frame0_0.png"]),
        "image_editing": (["--image", f["photo"], "--caption", "make it snowy"], "[[image_editing]] make it snowy",
                          [1, 0], ["frame0_0.png"]),
        "faceid": (["--ref-image", f["photo"], "--ref-caption", "r1", "--ref-image", f["photo2"], "--ref-caption", "r2",
                    "--caption", "a man"], "[[faceid]] [[img0]] a man [[img1]] r1 [[img2]] r2", [1, 0, 0],
                   ["frame0_0.png"]),
        "subject_driven": (["--ref-image", f["photo"], "--ref-caption", "a toy dog", "--subject", "toy dog",
                            "--caption", "on a beach"],
                           "[[subject_driven]] <item: toy dog> [[img0]] on a beach [[img1]] a toy dog", [1, 0],
                           ["frame0_0.png"]),
        "depth2image": (["--image", f["photo"]], "[[depth2image]]", [1, 0], ["frame0_0.png"]),
        "image2depth": (["--image", f["photo"]], "[[depth2image]]", [0, 1],
                        ["frame1_0.png", "depth_0.png", "depth_color_0.png", "depth_0.npy"]),
        "canny2image": (["--photo", f["photo"], "--canny-low", "50", "--canny-high", "150", "--caption", "c"],
                        "[[canny2image]] c", [1, 0], ["frame0_0.png"]),
        "image2canny": (["--image", f["photo"]], "[[canny2image]]", [0, 1], ["frame1_0.png"]),
        "hed2image": (["--image", f["photo"]], "[[hed2img]]", [1, 0], ["frame0_0.png"]),
        "image2hed": (["--image", f["photo"]], "[[hed2img]]", [0, 1], ["frame1_0.png"]),
        "pose2image": (["--image", f["photo"]], "[[pose2image]]", [1, 0], ["frame0_0.png"]),
        "image2pose": (["--image", f["photo"]], "[[pose2image]]", [0, 1], ["frame1_0.png"]),
        "semanticmap2image": (["--seg-mask", f"sky={f['seg']}", "--caption", "a street"],
                              "[[semanticmap2image]] <#FF0000 red mask: sky> a street", [1, 0], ["frame0_0.png"]),
        "image2semanticmap": (["--image", f["photo"], "--labels", "sphere=cyan,cube"],
                              "[[semanticmap2image]] <#00FFFF cyan mask: sphere> <#FF0000 red mask: cube>", [0, 1],
                              ["frame1_0.png", "mask_sphere_0.png", "mask_cube_0.png", "overlay_0.png"]),
        "boundingbox2image": (["--boxes", f["boxes"], "--caption", "a road"],
                              "[[boundingbox2image]] <#FF0000 red boundingbox: car> <#00FF00 lime boundingbox: tree> "
                              "a road", [1, 0], ["frame0_0.png"]),
        "image2boundingbox": (["--image", f["photo"], "--labels", "car"],
                              "[[boundingbox2image]] <#FF0000 red boundingbox: car>", [0, 1],
                              ["frame1_0.png", "boxes.json", "mask_car_0.png", "overlay_0.png"]),
        "image2multiview": (["--image", f["square"], "--azimuths", "0,30,60", "--elevations", "0,10,20"],
                            "[[multiview]]", [0, 0, 1, 0, 1, 0],
                            ["frame2_0.png", "frame4_0.png", "view0_0.png", "view1_0.png", "view2_0.png"]),
        "text2multiview": (["--caption", "a toy", "--azimuths", "0,30"], "[[multiview]] a toy", [1, 0, 1, 0],
                           ["frame0_0.png", "frame2_0.png", "view0_0.png", "view1_0.png"]),
        "camera_estimation": (["--image", f["square"], "--image", f["photo2"]], "[[multiview]]", [0, 0, 0, 1],
                              ["cameras.json", "view0_0.png", "view1_0.png"]),
    }


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_every_task_runs_from_the_cli(name, files, tmp_path, capsys):
    args, prompt, mask, expected_files = _task_cases(files)[name]
    out = tmp_path / "out"
    summary, _ = _run(BASE + ["--task", name, "--height", "64", "--width", "64", "--steps", "1", "--out", str(out)]
                      + args, capsys)
    assert summary["task"] == name and summary["prompt"] == prompt and summary["denoise_mask"] == mask
    written = {p.name for p in out.iterdir()}
    assert set(expected_files) <= written, written
    if name == "image2depth":
        depth = np.load(out / "depth_0.npy")
        assert depth.dtype == np.float32 and depth.shape == (64, 64) and depth.min() == 0 and depth.max() == 1
    if name == "image2boundingbox":
        boxes = json.loads((out / "boxes.json").read_text())
        assert isinstance(boxes, list) and len(boxes) == 1
    if name == "camera_estimation":
        cams = json.loads((out / "cameras.json").read_text())[0]
        assert [c["view"] for c in cams] == [0, 1] and cams[1]["given"] is False
    if name == "inpainting":
        assert Image.open(out / "composite_0.png").size == (64, 48)


# ----------------------------------------------------------------------------- --task vs --denoise-mask
def _parity_cases(f):
    square3 = ["--height", "64", "--width", "64"]
    return {
        "inpainting": (["--task", "inpainting", "--image", f["photo"], "--mask", f["mask"], "--caption", "a wall"],
                       ["--prompt", "[[image_inpainting]] a wall", "--image", f["masked"], "--denoise-mask", "1,0",
                        "--negative-prompt", NEG]),
        "inpainting_premasked": (["--task", "inpainting", "--image", f["masked"]],
                                 ["--prompt", "[[image_inpainting]]", "--image", f["masked"], "--denoise-mask", "1,0",
                                  "--negative-prompt", NEG]),
        "editing": (["--task", "image_editing", "--image", f["photo"], "--caption", "make it snowy", "--cfg", "3.2"],
                    ["--prompt", "[[image_editing]] make it snowy", "--image", f["photo"], "--denoise-mask", "1,0",
                     "--negative-prompt", NEG, "--cfg", "3.2"]),
        "segmentation": (["--task", "image2semanticmap", "--image", f["photo"], "--labels", "sphere=cyan",
                          "--caption", "a sphere"],
                         ["--prompt", "[[semanticmap2image]] <#00FFFF cyan mask: sphere> a sphere", "--image",
                          f["photo"], "--denoise-mask", "0,1"]),
        "boxes": (["--task", "boundingbox2image", "--boxes", f["boxes"]] + square3,
                  ["--prompt", "[[boundingbox2image]] <#FF0000 red boundingbox: car> <#00FF00 lime boundingbox: tree>",
                   "--image", f["box_map"], "--denoise-mask", "1,0", "--negative-prompt", NEG] + square3),
        "faceid3": (["--task", "faceid", "--caption", "a man", "--ref-image", f["photo"], "--ref-caption", "one",
                     "--ref-image", f["photo2"], "--ref-caption", "two", "--ref-image", f["photo3"],
                     "--ref-caption", "three"] + square3,
                    ["--prompt", "[[faceid]] [[img0]] a man [[img1]] one [[img2]] two [[img3]] three",
                     "--image", f["photo"], "--image", f["photo2"], "--image", f["photo3"], "--denoise-mask", "1,0,0,0",
                     "--negative-prompt", NEG] + square3),
        "multiview3": (["--task", "image2multiview", "--image", f["square"], "--azimuths", "0,30,60",
                        "--elevations", "0,10,20", "--distance", "1.5", "--caption", "a toy"] + square3,
                       ["--prompt", "[[multiview]] a toy", "--image", f["square"], "--azimuths", "0,30,60",
                        "--elevations", "0,10,20", "--distance", "1.5", "--denoise-mask", "0,0,1,0,1,0",
                        "--negative-prompt", NEG] + square3),
        "canny": (["--task", "canny2image", "--photo", f["photo"], "--caption", "a room"],
                  ["--prompt", "[[canny2image]] a room", "--image", f["canny"], "--denoise-mask", "1,0",
                   "--negative-prompt", NEG]),
    }


@pytest.mark.parametrize("case", ["inpainting", "inpainting_premasked", "editing", "segmentation", "boxes",
                                  "faceid3", "multiview3", "canny"])
def test_task_and_denoise_mask_runs_give_identical_latents(case, files, tmp_path, capsys):
    with_task, free_form = _parity_cases(files)[case]
    common = ["--steps", "2", "--seed", "3"]
    a, b = tmp_path / "task.safetensors", tmp_path / "free.safetensors"
    task_summary, _ = _run(BASE + with_task + common + ["--out", str(tmp_path / "a"), "--save-latents", str(a)], capsys)
    free_summary, _ = _run(BASE + free_form + common + ["--out", str(tmp_path / "b"), "--save-latents", str(b)], capsys)
    assert (task_summary["height"], task_summary["width"]) == (free_summary["height"], free_summary["width"])
    assert torch.equal(_latents(a), _latents(b))


# ----------------------------------------------------------------------------- goldens through the CLI
def test_golden_image2depth_through_task_and_free_form(tmp_path, capsys):
    golden = load_file(str(GOLDEN / "image2depth_mask01" / "final_latents.safetensors"))["final_latents"]
    image = str(GOLDEN / "image2depth_mask01" / "input_0.png")
    size = ["--height", "64", "--width", "64", "--steps", "3", "--cfg", "4"]
    _run(BASE + ["--task", "image2depth", "--image", image, "--out", str(tmp_path / "a"),
                 "--save-latents", str(tmp_path / "a.safetensors")] + size, capsys)
    _run(BASE + ["--prompt", "[[depth2image]]", "--image", image, "--denoise-mask", "0,1", "--out", str(tmp_path / "b"),
                 "--save-latents", str(tmp_path / "b.safetensors")] + size, capsys)
    for name in ("a", "b"):
        assert (_latents(tmp_path / f"{name}.safetensors") - golden).abs().max() <= 1e-4


def test_golden_multiview_through_task(tmp_path, capsys):
    golden = load_file(str(GOLDEN / "multiview_mask0010" / "final_latents.safetensors"))["final_latents"]
    _run(BASE + ["--task", "image2multiview", "--image", str(GOLDEN / "multiview_mask0010" / "input_0.png"),
                 "--caption", "three views of the same object", "--azimuths", "0,30", "--elevations", "0,10",
                 "--height", "64", "--width", "64", "--steps", "3", "--out", str(tmp_path),
                 "--save-latents", str(tmp_path / "l.safetensors")], capsys)
    assert (_latents(tmp_path / "l.safetensors") - golden).abs().max() <= 1e-4


def test_run_without_task_keeps_its_defaults(tmp_path, capsys):
    """No --task: prompt as given, negative '', 50 steps, guidance 4 - the same latents as generate()."""
    from unidiff_core.onediffusion.pipeline import Frame, UniDiffPipeline

    summary, _ = _run(BASE + ["--prompt", "[[text2image]] x", "--height", "32", "--width", "32", "--out", str(tmp_path),
                              "--save-latents", str(tmp_path / "l.safetensors")], capsys)
    assert summary["steps"] == 50 and "task" not in summary
    pipe = UniDiffPipeline.from_pretrained(CKPT)
    expected = pipe.generate("[[text2image]] x", [Frame()], negative_prompt="", height=32, width=32, steps=50,
                             guidance=4.0, seed=0).latents
    assert torch.equal(_latents(tmp_path / "l.safetensors"), expected)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("argv, message", [
    (["--task", "image2depthmap"], "unknown task 'image2depthmap'"),
    (["--task", "image2depth"], "needs image"),
    (["--task", "image2depth", "--image", "{photo}", "--denoise-mask", "1,0"], "differs from task image2depth"),
    (["--task", "inpainting", "--image", "{photo}", "--mask", "{square}"], "does not match the image"),
    (["--task", "boundingbox2image", "--boxes", "[]"], "boxes is empty"),
    (["--task", "image2semanticmap", "--image", "{photo}",
      "--labels", ",".join(f"l{i}" for i in range(21))], "21 labels"),
    (["--task", "image2depth", "--image", "{photo}", "--azimuths", "0,30"], "task 'image2depth' does not take azimuths"),
    (["--prompt", "[[image_inpainting]]", "--image", "{photo}", "--mask", "{mask}"], "--mask need(s) --task NAME"),
])
def test_cli_task_errors_are_clear(argv, message, files, tmp_path, capsys):
    argv = [a.format(**files) for a in argv]
    code = main(BASE + argv + ["--steps", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
