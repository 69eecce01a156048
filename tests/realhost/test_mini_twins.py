"""Real host: every UniDiff-Mini twin workflow runs as shipped on a real ComfyUI, and its pictures and task
metric are those of training.evaluate's computation for the same held-out sample (noise seed 0, 20 Euler
steps, the same guidance, inputs as the PNGs hold them).

Both sides run float32 on the CPU with the same weights, so the generated frames are expected to be the
same numbers; ComfyUI's Save Image then truncates them to 8 bits. Hence:
* pictures: the server's PNG equals the evaluator's frame truncated the same way, within one grey level
  (a level of slack for a last-bit float difference landing on a level boundary);
* metric: the evaluator's metric function on the server's PNGs equals it on the evaluator's frames
  truncated like Save Image does (1e-6: the same function on the same pixels), and is printed next to
  the evaluator's own value on its float frames (the number `python -m training.evaluate` reports),
  which differs from it by the 8-bit rounding only.
The weights are whatever models/UniDiff-Mini holds: nothing here depends on their quality.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "example_workflows"))
sys.path.insert(0, ROOT)

import mini_samples  # noqa: E402
from test_realhost import error_text, fetch_image, load_api, run  # noqa: E402

from training import evaluate, metrics  # noqa: E402

MINI = os.path.join(ROOT, "models", "UniDiff-Mini")
FRAME_SOURCES = {("UniDiffDecodeImages", 0), ("UniDiffDecodeMultiView", 0)}  # outputs that are the frames as drawn


@pytest.fixture(scope="module")
def pipe():
    from unidiff_core.onediffusion.pipeline import UniDiffPipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the server runs with OMP_NUM_THREADS=1 too
    yield UniDiffPipeline.from_pretrained(MINI)
    torch.set_num_threads(threads)


def save_image_pixels(frame) -> np.ndarray:
    """What ComfyUI's Save Image writes for a 0..1 frame: 255 * x, clipped, truncated to uint8."""
    return np.clip(255.0 * np.asarray(frame, np.float32), 0, 255).astype(np.uint8)


def picture_mismatches(host: np.ndarray, frame) -> int:
    """Pixels where the server's PNG is not the frame truncated like Save Image: each must be one level
    off with the frame within 1e-3 of a level boundary (255 x = 158.99998: a last-bit float32 difference
    decides the side). Returns how many there are."""
    want = save_image_pixels(frame)
    off = host.astype(int) - want.astype(int)
    where = off != 0
    x = 255.0 * np.asarray(frame, np.float64)[where]
    far = np.abs(x - np.round(x)) >= 1e-3
    assert np.abs(off).max(initial=0) <= 1 and not far.any(), \
        f"{int(where.sum())} pixels differ, {int(far.sum())} of them not at a level boundary " \
        f"(max {np.abs(off).max()} levels)"
    return int(where.sum())


def host_frames(comfy, prompt: dict, outputs: dict, sample) -> dict:
    """{frame index: (H, W, 3) uint8} of the generated image frames, read back from the server's output."""
    (node_id,) = [k for k, n in prompt.items() if n["class_type"] == "SaveImage"
                  and (prompt[n["inputs"]["images"][0]]["class_type"], n["inputs"]["images"][1]) in FRAME_SOURCES]
    source = prompt[prompt[node_id]["inputs"]["images"][0]]["class_type"]
    pictures = [np.asarray(fetch_image(comfy, image).convert("RGB")) for image in outputs[node_id]["images"]]
    if source == "UniDiffDecodeMultiView":  # every view in view order: view v is image frame 2v
        return {2 * v: p for v, p in enumerate(pictures)}
    generated = [i for i, f in enumerate(sample.request.frames) if not f.given and f.kind == "image"]
    assert len(pictures) == len(generated), (len(pictures), generated)
    return dict(zip(generated, pictures))


def host_cameras(prompt: dict, outputs: dict) -> list:
    (node_id,) = [k for k, n in prompt.items() if n["class_type"] == "PreviewAny"
                  and prompt[n["inputs"]["source"][0]]["class_type"] == "UniDiffDecodeCameras"]
    return json.loads(outputs[node_id]["text"][0])


@pytest.mark.parametrize("twin", sorted(mini_samples.TWINS))
def test_mini_twin_on_the_server_scores_what_the_evaluator_scores(comfy, pipe, twin):
    prompt = load_api(twin)
    entry = run(comfy, prompt, timeout=240)
    assert entry["status"]["status_str"] == "success", error_text(entry)
    sample = mini_samples.png_sample(twin)
    cli = evaluate.model_frames(pipe, sample, mini_samples.STEPS, seed=0)  # the evaluator's sample 0: seed 0

    if sample.task == "camera_estimation":  # generates rays only: read back as Decode Cameras' JSON
        host_m, evaluator_m = metrics.camera_errors(host_cameras(prompt, entry["outputs"]), sample.truth), \
            metrics.score(sample, cli)
        for name in evaluator_m:  # JSON keeps every digit of a float: the same rays give the same angles
            assert host_m[name] == pytest.approx(evaluator_m[name], abs=1e-6), (name, host_m, evaluator_m)
        print(f"{twin}: " + ", ".join(f"{k} server {host_m[k]:.4f} / evaluator {evaluator_m[k]:.4f}"
                                      for k in evaluator_m))
        return

    host = host_frames(comfy, prompt, entry["outputs"], sample)
    scored = sorted(i for i in sample.targets if i in host)
    assert scored, "no generated image frame to compare"
    boundary = {i: picture_mismatches(host[i], cli[i]) for i in scored}  # pixels on a level boundary

    from_png = {i: save_image_pixels(v).astype(np.float32) / 255.0 if i in host else v for i, v in cli.items()}
    on_host = {**cli, **{i: host[i].astype(np.float32) / 255.0 for i in scored}}
    host_m, png_m, evaluator_m = (metrics.score(sample, p) for p in (on_host, from_png, cli))
    # The same pixels give the same metric. A boundary pixel is one of 12288 values one level off: it moves
    # a PSNR or depth error by well under 1e-3 relative (one value's share of a mean); a metric thresholding
    # that very value could flip, and then fails here as a real difference.
    exact = not any(boundary.values())
    for name in evaluator_m:
        expected = pytest.approx(png_m[name], abs=1e-6, rel=0 if exact else 1e-3)
        assert host_m[name] == expected, (name, host_m, png_m, boundary)
    gap = max(abs(host_m[k] - png_m[k]) for k in evaluator_m)
    shown = ", ".join(f"{k} server {host_m[k]:.4f} / evaluator {evaluator_m[k]:.4f}" for k in evaluator_m)
    print(f"{twin}: {shown} (server - evaluator's PNG {gap:.1e}; {sum(boundary.values())} boundary pixels)")
