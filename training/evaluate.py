"""Evaluate a checkpoint on held-out scenes: one metric per task next to a trivial baseline.

    python -m training.evaluate --checkpoint mini            # models/UniDiff-Mini, writes docs/mini/
    python -m training.evaluate --checkpoint mini --jobs 2   # the same, tasks spread over two processes
    python -m training.evaluate --checkpoint path/to/ckpt --samples 8 --out /tmp/eval
    python -m training.evaluate --checkpoint mini --fp8      # transformer blocks in fp8 e4m3, as the Loader's fp8_e4m3

For every task the model runs through the pack's pipeline and decoders on `--samples` held-out seeds
(never drawn in training). Each metric (training/metrics.py) is also computed for
* a trivial baseline that ignores what the task is about (the ground truth of another scene, another
  identity in the caption's context, the input itself, the mean pose, a flat floor depth, the whole
  canvas as the box, ...), and
* the codec ceiling: the ground truth passed through the checkpoint's pixel codec (the best the
  model could score).
Writes metrics.json, metrics.md (the table) and one picture grid per task (given | model | truth).
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from unidiff_core.onediffusion import outputs

from .data import maps
from .data import HELDOUT_SEEDS, TASK_BUILDERS, make_sample
from .data.faces import render_portrait
from .data.figure import Figure, pose_map, sample_figure
from .data.samples import as_tensor
from .metrics import HIGHER, foreground, score

ROOT = Path(__file__).resolve().parent.parent
NAMED = {"mini": ROOT / "models" / "UniDiff-Mini"}
# Guidance fixed before any evaluation: classifier-free guidance where text is the main input, none
# where the output is read off an image. The negative prompt is "", the prompt Mini saw when dropped.
TEXT_TASKS = {"text2image": 2.5, "subject_driven": 2.5, "faceid": 2.5, "text2multiview": 2.5}
BASELINES = {
    "text2image": "another scene", "subject_driven": "another scene",
    "faceid": "another identity in the caption's context", "inpainting": "mean colour fill",
    "deblurring": "the blurred input", "image_editing": "the input unchanged", "image2depth": "flat floor depth",
    "image2canny": "another scene's edges", "image2hed": "another scene's edges", "image2pose": "the mean pose",
    "image2semanticmap": "all foreground = first label", "image2boundingbox": "whole canvas = first label",
    "image2multiview": "view 0 copied", "text2multiview": "another object's views",
    "camera_estimation": "the mean camera", "freeform_depth_semantic": "flat floor + first label",
    **{f"{k}2image": "another scene" for k in ("depth", "canny", "hed", "pose", "semanticmap", "boundingbox")},
}


def resolve_checkpoint(name: str) -> Path:
    path = NAMED.get(name, Path(name))
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {name!r} not found at {path}")
    return path


def seeds_for(task: str, count: int) -> list[int]:
    base = HELDOUT_SEEDS.start + (zlib.crc32(task.encode()) % 900) * 100
    return [base + i for i in range(count)]


# ------------------------------------------------------------------------------ baselines
def _floor_depth(size):
    return maps.depth_frame(np.broadcast_to(np.linspace(1.0, 0.85, size, dtype=np.float32)[:, None], (size, size)))


def _first_label_everywhere(photo, label, foreground_only=True):
    frame = np.zeros_like(photo)
    where = foreground(photo) if foreground_only else np.ones(photo.shape[:2], bool)
    frame[where] = np.array(label.rgb, np.float32) / 255.0
    return frame


_MEAN_POSE: dict = {}


def _mean_pose_map(size):
    if size not in _MEAN_POSE:
        figs = [sample_figure(s) for s in range(200)]  # training seeds: what a data-only predictor knows
        mean = tuple(map(tuple, np.mean([f.keypoints for f in figs], axis=0)))
        _MEAN_POSE[size] = pose_map(Figure(mean, "white", "black", ""), size)
    return _MEAN_POSE[size]


def baseline_frames(sample, other, size) -> dict:
    task, given = sample.task, sample.frame_values()
    if task in ("text2image", "subject_driven", "text2multiview", "image2canny", "image2hed") or \
            (task.endswith("2image") and task not in ("text2image",)):
        return dict(other.targets)
    if task == "faceid":  # what the caption alone gives: the right place, size and background, not the person
        return {0: render_portrait(other.truth["identity"], sample.truth["pose"], size)}
    if task == "inpainting":
        masked, mask = given[1].copy(), sample.truth["mask"] > 0.5
        masked[mask] = given[1][~mask].mean(0)
        return {0: masked}
    if task in ("deblurring", "image_editing"):
        return {0: given[1]}
    if task == "image2depth":
        return {1: _floor_depth(size)}
    if task == "image2pose":
        return {1: _mean_pose_map(size)}
    if task == "image2semanticmap":
        return {1: _first_label_everywhere(given[0], sample.request.labels[0])}
    if task == "image2boundingbox":
        return {1: _first_label_everywhere(given[0], sample.request.labels[0], foreground_only=False)}
    if task == "image2multiview":
        return {i: given[0] for i in sample.targets}
    if task == "camera_estimation":
        from unidiff_core.onediffusion import conditions

        return {3: conditions.camera_rays([(0.0, 0.0, 1.5), (0.0, 10.0, 1.5)], size)[1]}
    if task == "freeform_depth_semantic":
        return {1: _floor_depth(size), 2: _first_label_everywhere(given[0], sample.request.labels[0])}
    raise ValueError(task)


def ceiling_frames(sample, codec) -> dict:
    out = {}
    for i, value in sample.targets.items():
        if isinstance(value, torch.Tensor):
            out[i] = value
        else:
            z = codec.encode(as_tensor(value)[None] * 2 - 1)
            out[i] = np.ascontiguousarray(((codec.decode_pixels(z)[0].permute(1, 2, 0) / 2 + 0.5).clamp(0, 1)).numpy())
    return out


# ------------------------------------------------------------------------------ model
def model_frames(pipe, sample, steps: int, seed: int, sampler: str = "euler", step_cache: float = 0.0,
                 stats: list | None = None, guidance: float | None = None):
    """The model's frames for `sample`; `guidance` None is the evaluation's fixed one for the task (TEXT_TASKS)."""
    guidance = TEXT_TASKS.get(sample.task, 1.0) if guidance is None else guidance
    request = replace(sample.request, steps=steps, guidance=guidance, negative_prompt="")
    result = pipe.generate(**request.generate_kwargs(), seed=seed, sampler=sampler, step_cache_threshold=step_cache)
    out = outputs.decode_result(pipe, request, result)
    if stats is not None and result.step_cache:
        stats.append(result.step_cache)
    pred = {i: np.ascontiguousarray(img[0].numpy()) for i, img in zip(out.image_frames, out.images)}
    for i in sample.targets:
        if i not in pred:  # a generated ray frame
            pred[i] = result.latents[0, i]
    return pred


# ------------------------------------------------------------------------------ pictures
def _tile(value, size):
    if isinstance(value, torch.Tensor):  # a ray frame: its first three channels, scaled to 0..1
        rays = value[:3].permute(1, 2, 0).numpy()
        rays = (rays - rays.min()) / max(float(rays.max() - rays.min()), 1e-6)
        return np.kron(rays, np.ones((size // rays.shape[0], size // rays.shape[1], 1)))
    return np.asarray(value, np.float32)


def grid_row(sample, pred, size):
    given = [v for i, v in enumerate(sample.frame_values()) if i not in sample.targets]
    gap = np.ones((size, 4, 3), np.float32)
    parts = [_tile(v, size) for v in given] + [gap] + [_tile(pred[i], size) for i in sorted(sample.targets)] + [gap] \
        + [_tile(sample.targets[i], size) for i in sorted(sample.targets)]
    return np.concatenate(parts, axis=1)


def caption_of(sample) -> str:
    """The words of a sample's prompt without its task and frame tokens: the caption of frame 0 where each
    frame has its own (what the model was asked for)."""
    prompt = sample.prompt
    if "[[img0]]" in prompt:
        prompt = re.split(r"\[\[img\d+\]\]", prompt.split("[[img0]]", 1)[1])[0]
    return " ".join(re.sub(r"\[\[[^\]]*\]\]|<[^>]*>", " ", prompt).split())


def save_grid(rows, path: Path, scale: int = 2, captions=None):
    """Rows of pictures, each followed by its caption (when one is given) so a reader can judge the picture."""
    from PIL import Image, ImageDraw

    width = max(r.shape[1] for r in rows) * scale
    captions = captions or [""] * len(rows)
    chars = max(8, width // 6)  # PIL's default bitmap font is about 6 px wide
    blocks = []
    for row, text in zip(rows, captions):
        pixels = (np.clip(row, 0, 1) * 255).round().astype(np.uint8)
        picture = Image.fromarray(pixels).resize((row.shape[1] * scale, row.shape[0] * scale), Image.NEAREST)
        lines = textwrap.wrap(text, chars)
        block = Image.new("RGB", (width, picture.height + 4 + 11 * len(lines) + (2 if lines else 0)), "white")
        block.paste(picture, (0, 0))
        draw = ImageDraw.Draw(block)
        for i, line in enumerate(lines):
            draw.text((1, picture.height + 2 + 11 * i), line, fill="black")
        blocks.append(block)
    img = Image.new("RGB", (width, sum(b.height for b in blocks)), "white")
    y = 0
    for b in blocks:
        img.paste(b, (0, y))
        y += b.height
    img.save(path)


# ------------------------------------------------------------------------------ main
# 32 held-out samples per task: with 16, one task's mean moved by as much as the gap between Mini and its
# baseline (camera azimuth errors spread over 3-130 degrees, a standard error of ~10 at 16 samples).
DEFAULT_SAMPLES = 32


def load_pipeline(checkpoint, fp8: bool = False):
    from unidiff_core.onediffusion.pipeline import UniDiffPipeline

    torch.manual_seed(0)
    return UniDiffPipeline.from_pretrained(checkpoint, weight_dtype="fp8" if fp8 else None)


def evaluate_task(pipe, task: str, samples: int, steps: int, out: Path | None = None, grid_rows: int = 4,
                  sampler: str = "euler", step_cache: float = 0.0) -> dict:
    """One task on its own held-out seeds (what else is evaluated does not change it); writes its grid to out."""
    size = pipe.transformer.config.default_pixel_size[0]
    t0 = time.time()
    scores = {"model": [], "baseline": [], "ceiling": []}
    rows, captions, cache_stats = [], [], []
    for k, seed in enumerate(seeds_for(task, samples)):
        sample = make_sample(task, seed, size, views=4 if task in ("image2multiview", "text2multiview") else None)
        other = make_sample(task, seed + 50_000, size, views=4 if "multiview" in task else None)
        pred = model_frames(pipe, sample, steps, seed=k, sampler=sampler, step_cache=step_cache, stats=cache_stats)
        scores["model"].append(score(sample, pred))
        scores["baseline"].append(score(sample, baseline_frames(sample, other, size)))
        scores["ceiling"].append(score(sample, ceiling_frames(sample, pipe.vae)))
        if k < grid_rows:
            rows.append(grid_row(sample, pred, size))
            captions.append(caption_of(sample))
    metrics = {}
    for name in scores["model"][0]:
        metrics[name] = {who: round(float(np.mean([s[name] for s in scores[who]])), 4) for who in scores}
        metrics[name]["higher_is_better"] = HIGHER[name]
        metrics[name]["per_sample"] = {who: [round(float(x[name]), 4) for x in scores[who]] for who in scores}
    result = {"metrics": metrics, "baseline": BASELINES[task], "samples": samples,
              "guidance": TEXT_TASKS.get(task, 1.0), "seconds": round(time.time() - t0, 1)}
    if cache_stats:
        result["transformer_evals"] = sum(c["transformer_evals"] for c in cache_stats) / len(cache_stats)
        result["steps_run"] = sum(c["steps"] for c in cache_stats) / len(cache_stats)
    if out is not None and rows:
        Path(out).mkdir(parents=True, exist_ok=True)
        save_grid(rows, Path(out) / f"{task}.png", captions=captions)
    return result


def _log_task(log, task, result):
    head, m = next(iter(result["metrics"].items()))
    log(f"{task:24s} {head:14s} model {m['model']:8.4f}  baseline {m['baseline']:8.4f}  ceiling {m['ceiling']:8.4f}"
        f"  ({result['seconds']:.0f} s)")


def _pipeline_facts(pipe) -> dict:
    from unidiff_core.onediffusion.fp8 import fp8_bytes

    return {"size": pipe.transformer.config.default_pixel_size[0], "transformer_weight_bytes": fp8_bytes(pipe.transformer)}


def _report(facts, checkpoint, results: dict, samples, steps, sampler, step_cache, fp8, seconds, out) -> dict:
    # the folder's name, not its path: the record holds no path of the machine it ran on
    report = {"checkpoint": Path(checkpoint).name, "size": facts["size"],
              "steps": steps, "sampler": sampler, "step_cache": step_cache, "fp8": fp8,
              "transformer_weight_bytes": facts["transformer_weight_bytes"], "samples_per_task": samples,
              "heldout_seeds": [HELDOUT_SEEDS.start, HELDOUT_SEEDS.stop], "seconds": round(seconds, 1),
              "tasks": results}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        (Path(out) / "metrics.md").write_text(markdown_table(report) + "\n")
    return report


def evaluate(checkpoint, tasks=None, samples: int = DEFAULT_SAMPLES, steps: int = 20, out: Path | None = None,
             grid_rows: int = 4, log=print, sampler: str = "euler", step_cache: float = 0.0,
             fp8: bool = False) -> dict:
    """fp8=True stores the transformer blocks' weights in fp8 e4m3 the way the Loader's weight_format
    "fp8_e4m3" does (the same `from_pretrained(weight_dtype="fp8")`), computing in float32 as on a CPU."""
    pipe, t_start, results = load_pipeline(checkpoint, fp8), time.time(), {}
    for task in list(tasks or TASK_BUILDERS):
        results[task] = evaluate_task(pipe, task, samples, steps, out, grid_rows, sampler, step_cache)
        _log_task(log, task, results[task])
    return _report(_pipeline_facts(pipe), checkpoint, results, samples, steps, sampler, step_cache, fp8,
                   time.time() - t_start, out)


_WORKER_PIPE: dict = {}


def _task_in_worker(checkpoint, task, threads, fp8, args) -> tuple[dict, dict]:
    torch.set_num_threads(threads)
    if (checkpoint, fp8) not in _WORKER_PIPE:  # one load per worker process
        _WORKER_PIPE.clear()
        _WORKER_PIPE[(checkpoint, fp8)] = load_pipeline(checkpoint, fp8)
    pipe = _WORKER_PIPE[(checkpoint, fp8)]
    return evaluate_task(pipe, task, *args), _pipeline_facts(pipe)


def evaluate_in_processes(checkpoint, tasks=None, jobs: int = 2, threads: int = 1, samples: int = DEFAULT_SAMPLES,
                          steps: int = 20, out: Path | None = None, grid_rows: int = 4, log=print,
                          sampler: str = "euler", step_cache: float = 0.0, fp8: bool = False) -> dict:
    """evaluate()'s report, its tasks spread over `jobs` processes of `threads` threads each: on a CPU, one
    thread per process beats threads that split a 64x64 model's small products (the data and metrics are
    single-threaded too). Each task keeps its own seeds, so the report is the serial one's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    tasks, t_start = list(tasks or TASK_BUILDERS), time.time()
    args = (samples, steps, out, grid_rows, sampler, step_cache)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {task: pool.submit(_task_in_worker, checkpoint, task, threads, fp8, args) for task in tasks}
        results = {}
        for task in tasks:  # in the given order, so the report reads like a serial one
            results[task], facts = futures[task].result()
            _log_task(log, task, results[task])
    return _report(facts, checkpoint, results, samples, steps, sampler, step_cache, fp8, time.time() - t_start, out)


def markdown_table(report: dict) -> str:
    lines = ["| task | metric | Mini | trivial baseline | codec ceiling | baseline is |", "|---|---|---|---|---|---|"]
    for task, r in report["tasks"].items():
        for name, m in r["metrics"].items():
            arrow = "↑" if m["higher_is_better"] else "↓"
            lines.append(f"| `{task}` | {name} {arrow} | {m['model']:.3f} | {m['baseline']:.3f} | {m['ceiling']:.3f} | "
                         f"{r['baseline']} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="mini", help="'mini' or a checkpoint folder")
    p.add_argument("--tasks", nargs="*", help="tasks to evaluate (default: every task with a data generator)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="held-out samples per task")
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--sampler", default="euler", help="euler | heun | dpmpp_2m")
    p.add_argument("--step-cache", type=float, default=0.0, help="first-block step cache threshold (0 = off)")
    p.add_argument("--fp8", action="store_true", help="transformer block weights in fp8 e4m3 (the Loader's fp8_e4m3)")
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    p.add_argument("--jobs", type=int, default=1,
                   help="processes the tasks are spread over (e.g. 2 on two cores: the same report in half the time)")
    p.add_argument("--out", help="folder for metrics.json, metrics.md and the grids (default docs/mini for mini without --fp8)")
    a = p.parse_args(argv)
    if a.jobs < 1:
        p.error(f"--jobs must be at least 1, got {a.jobs}")
    torch.set_num_threads(a.threads)
    # docs/mini holds the record of the default run; an fp8 run writes only where --out says
    out = Path(a.out) if a.out else (ROOT / "docs" / "mini" if a.checkpoint == "mini" and not a.fp8 else None)
    options = dict(samples=a.samples, steps=a.steps, sampler=a.sampler, step_cache=a.step_cache, fp8=a.fp8)
    checkpoint = resolve_checkpoint(a.checkpoint)
    if a.jobs > 1:
        report = evaluate_in_processes(checkpoint, a.tasks, a.jobs, a.threads, out=out, **options)
    else:
        report = evaluate(checkpoint, a.tasks, out=out, **options)
    print(markdown_table(report))


if __name__ == "__main__":
    main()
