"""UniDiff-Mini, the small trained model shipped in models/: loads everywhere a checkpoint does, and beats
a trivial baseline on held-out scenes.

The evaluation here is `training.evaluate` on the first SAMPLES held-out seeds of each task (deterministic:
fp32, one thread, fixed seeds). MEASURED holds the values these seeds gave with the committed weights
(docs/mini/metrics.json, "per_sample"); each test asserts Mini's margin over the baseline is at least half
the measured margin. MEASURED lists only clear wins of the committed record (32 samples): a paired margin of
more than two standard errors (CLEAR_Z). Every other task is in NOT_BEATEN (models/UniDiff-Mini/README.md
says why) and is not asserted.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from training.compare import CLEAR_Z, baseline_z
from training.evaluate import evaluate, resolve_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 8
STEPS = 20
MINI = resolve_checkpoint("mini")

# task -> (headline metric, Mini, baseline) measured on the first SAMPLES seeds (docs/mini/metrics.json,
# "per_sample"; the same values as `python -m training.evaluate --checkpoint mini --samples 8`)
MEASURED: dict[str, tuple[str, float, float]] = {
    "text2image": ("attr_acc", 0.4583, 0.0417),
    "inpainting": ("psnr_masked", 27.9185, 20.4017),
    "deblurring": ("psnr", 25.6235, 23.7244),
    "image_editing": ("edit_success", 0.125, 0.0),
    "subject_driven": ("subject_found", 0.875, 0.25),
    "faceid": ("id_match", 0.45, 0.3),
    "depth2image": ("layout_iou", 0.8236, 0.1282),
    "canny2image": ("layout_iou", 0.6962, 0.1317),
    "hed2image": ("layout_iou", 0.7867, 0.2242),
    "pose2image": ("layout_iou", 0.684, 0.1826),
    "semanticmap2image": ("layout_iou", 0.8555, 0.1176),
    "boundingbox2image": ("layout_iou", 0.5607, 0.1776),
    "image2depth": ("abs_rel", 0.0553, 0.2177),
    "image2canny": ("edge_f1", 0.8664, 0.1249),
    "image2hed": ("edge_f1", 0.9853, 0.1612),
    "image2pose": ("pck10", 0.7232, 0.2946),
    "image2boundingbox": ("box_miou", 0.6005, 0.0752),
    "text2multiview": ("view_psnr", 15.9832, 9.096),
    "camera_estimation": ("azimuth_err", 25.2501, 43.6228),
    "freeform_depth_semantic": ("abs_rel", 0.0611, 0.2402),
}
# Not asserted (same seeds); models/UniDiff-Mini/README.md says why. image2semanticmap leads on these 8 seeds but
# ties over the 32 of the record (z 1.3); image2multiview loses to the copy of view 0 (z -2.4).
NOT_BEATEN: dict[str, tuple[str, float, float]] = {
    "image2semanticmap": ("miou", 0.5268, 0.3625),
    "image2multiview": ("view_psnr", 17.6014, 18.2782),
}


RECORD = ROOT / "docs" / "mini" / "metrics.json"


def test_asserted_tasks_are_the_clear_wins_of_the_record():
    import json

    record = json.loads(RECORD.read_text())["tasks"]
    assert set(MEASURED) | set(NOT_BEATEN) == set(record)
    for task, (name, model, baseline) in MEASURED.items():
        metric = record[task]["metrics"][name]
        assert baseline_z(metric) > CLEAR_Z, (task, baseline_z(metric))
        first = [sum(metric["per_sample"][who][:SAMPLES]) / SAMPLES for who in ("model", "baseline")]
        assert first == pytest.approx([model, baseline], abs=1e-4), task  # MEASURED is the record's first seeds


@pytest.fixture(scope="module")
def report():
    torch.set_num_threads(1)
    return evaluate(MINI, tasks=list(MEASURED), samples=SAMPLES, steps=STEPS, log=lambda *_: None)


@pytest.mark.parametrize("task", list(MEASURED))
def test_mini_beats_the_trivial_baseline(report, task):
    name, model, baseline = MEASURED[task]
    m = report["tasks"][task]["metrics"][name]
    sign = 1 if m["higher_is_better"] else -1
    margin = sign * (model - baseline) / 2
    assert sign * (m["model"] - m["baseline"]) >= margin, (task, name, m["model"], m["baseline"])


def test_mini_is_small_and_in_the_onediffusion_layout():
    parts = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    assert all((MINI / p).is_dir() for p in parts)
    total = sum(f.stat().st_size for f in MINI.rglob("*") if f.is_file())
    assert total <= 30 * 2 ** 20
    assert max(f.stat().st_size for f in MINI.rglob("*") if f.is_file()) <= 30 * 2 ** 20


def test_cli_main_job_runs_mini_at_its_native_size(tmp_path):
    from PIL import Image

    from unidiff_core.cli import main

    code = main(["run", "--checkpoint", "mini", "--task", "text2image", "--caption",
                 "a large red circle at the left and a blue square at the right on a white background",
                 "--steps", "20", "--cfg", "2.5", "--out", str(tmp_path)])
    assert code == 0
    png = sorted(tmp_path.glob("*.png"))[0]
    assert Image.open(png).size == (64, 64)


def test_the_loader_node_lists_and_loads_mini_in_place():
    sys.path.insert(0, str(ROOT / "example_workflows"))
    from make_workflows import load_pack

    load_pack("comfyui_unidiff")
    host = importlib.import_module("comfyui_unidiff.nodes.host")
    loader = importlib.import_module("comfyui_unidiff.nodes.loader")
    if host.folder_paths() is None:
        assert "UniDiff-Mini" in host.list_checkpoints()
    model = loader.load_model("UniDiff-Mini", dtype="fp32")
    assert model.pipeline.transformer.config.default_pixel_size == (64, 64)


def test_the_sampler_node_runs_mini_at_its_declared_size_when_size_is_auto():
    sys.path.insert(0, str(ROOT / "example_workflows"))
    from make_workflows import load_pack

    load_pack("comfyui_unidiff")
    loader = importlib.import_module("comfyui_unidiff.nodes.loader")
    sampler = importlib.import_module("comfyui_unidiff.nodes.sampler")
    text = importlib.import_module("comfyui_unidiff.nodes.text")
    model = loader.load_model("UniDiff-Mini", dtype="fp32")
    spec = text.encode_text("text2image", "a red circle at the left on a white background", "", False)
    result = sampler.run_sampler(model, spec, 0, 2, 1.0, 0, 0, 1)  # width = height = 0: automatic size
    assert result.latents.shape[-2:] == (8, 8)  # 64x64 pixels, not the task's 1024x1024 default
