"""Teach UniDiff-Mini a colour word it never saw with a LoRA, measured before and after, in one command:

    python -m training.lora_demo --checkpoint mini --out runs/lora_demo --publish

1. writes a user folder (`training/data/folder.py` format: images/ + captions.txt) of generated text2image scenes
   in which shapes are teal, a colour outside the generator's palette (so outside Mini's training), captioned
   "a teal circle ...", plus `--replay-images` ordinary scenes (prior preservation; none by default);
2. scores Mini on held-out teal scenes: teal_acc = the share of teal objects found as teal blobs at their place
   (the evaluation's attribute detector with teal added to its colour table), plus the usual text2image
   attribute accuracy on ordinary held-out scenes (does the LoRA make Mini forget?);
3. trains a LoRA on the folder (`python -m training.train --init CKPT --data FOLDER --task text2image
   --lora-rank 8`, recipe training/recipes/lora.json: about 10 minutes on one CPU thread);
4. scores again with the LoRA merged; prints both, writes <docs>/lora_demo.json and lora_demo.png (rows:
   truth | before | after) and, with --publish, the LoRA as models/loras/UniDiff-Mini-teal.safetensors (the
   example workflow text2image_lora uses it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from unidiff_core.onediffusion.lora import load_lora, merge_loras
from unidiff_core.onediffusion.requests import TaskInputs
from unidiff_core.onediffusion.tasks import build_request

from .data import HELDOUT_SEEDS, make_sample
from .data.folder import FolderData
from .data.samples import TrainSample
from .data.scenes import BACKGROUNDS, COLORS, caption, render, rng_for, sample_scene
from .evaluate import ROOT, TEXT_TASKS, model_frames, resolve_checkpoint, save_grid, seeds_for
from .metrics import attribute_scores

WORD, RGB = "teal", (0, 128, 128)  # not in COLORS: Mini's prompts never held the word, its images never the colour
COLORS_WITH_WORD = {**COLORS, WORD: RGB}
RECIPE = Path(__file__).resolve().parent / "recipes" / "lora.json"
LORA_NAME = "UniDiff-Mini-teal"
HELDOUT_OFFSET = 95_000  # held-out seeds of their own, past the evaluation's (seeds_for stays below 90_100)


def stands_out(background: str) -> bool:
    """The word's colour is told apart from this background (the generator's rule for object colours)."""
    return float(np.linalg.norm(np.array(RGB, float) - np.array(BACKGROUNDS[background], float))) > 120


def word_scene(seed: int):
    """A generated scene whose shapes are recoloured to the word's colour (each with p 0.6, at least one), or
    None when the scene's background hides that colour."""
    scene = sample_scene(seed)
    if not stands_out(scene.background) or (scene.gradient and not stands_out(scene.gradient)):
        return None
    rng = rng_for(seed, WORD)
    picks = [i for i in range(len(scene.shapes)) if rng.random() < 0.6] or [int(rng.integers(len(scene.shapes)))]
    for i in picks:
        scene = scene.replace_shape(i, color=WORD)
    return scene


def word_scenes(start: int, count: int) -> list:
    out, seed = [], start
    while len(out) < count:
        scene = word_scene(seed)
        if scene is not None:
            out.append((seed, scene))
        seed += 1
    return out


def write_folder(folder: Path, count: int, size: int, replay: int = 0) -> Path:
    """The training folder: images/<seed>.png and captions.txt (the documented user format): `count` word
    scenes, plus `replay` ordinary generated scenes (prior preservation: the LoRA keeps seeing what Mini
    already draws, so it learns the word without unlearning the rest)."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    word = word_scenes(0, count)  # training seeds: the bottom of TRAIN_SEEDS
    plain = [(seed, sample_scene(seed)) for seed in range(word[-1][0] + 1, word[-1][0] + 1 + replay)]
    for seed, scene in word + plain:
        name = f"{seed:06d}.png"
        pixels = (render(scene, size, COLORS_WITH_WORD).image * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / name)
        lines.append(f"{name}: {caption(scene)}")
    (folder / "captions.txt").write_text("\n".join(lines) + "\n")
    return folder


def word_sample(scene, size: int) -> TrainSample:
    """A held-out text2image sample of a word scene, built like the generator's (the pack's request builder)."""
    rendered = render(scene, size, COLORS_WITH_WORD)
    request = build_request("text2image", TaskInputs(height=size, width=size, caption=caption(scene)))
    return TrainSample("text2image", request, {0: rendered.image}, {"scene": scene, "rendered": rendered})


def score(pipe, samples, steps: int, colors: dict, only: str | None = None):
    """Mean attribute accuracy (of the `only` colour's objects, or all) and the generated images."""
    values, images = [], []
    for k, sample in enumerate(samples):
        image = model_frames(pipe, sample, steps, seed=k)[0]
        truth = sample.truth
        values.append(attribute_scores(image, truth["scene"], truth["rendered"], colors, only)["attr_acc"])
        images.append(image)
    return float(np.mean(values)), values, images


def measure(pipe, word_samples, plain_samples, steps):
    word, word_each, word_images = score(pipe, word_samples, steps, COLORS_WITH_WORD, only=WORD)
    plain, plain_each, _ = score(pipe, plain_samples, steps, COLORS)
    return {f"{WORD}_acc": round(word, 4), "text2image_attr_acc": round(plain, 4),
            "per_sample": {f"{WORD}_acc": word_each, "text2image_attr_acc": plain_each}}, word_images


def run(checkpoint: str, out: Path, steps: int | None = None, samples: int = 24, train_images: int = 400,
        replay_images: int = 0, eval_steps: int = 20, rank: int = 8, docs: Path | None = None,
        publish: Path | None = None, threads: int = 1, command: str = "", log=print) -> dict:
    from unidiff_core.onediffusion.pipeline import UniDiffPipeline

    from .train import load_recipe, train

    torch.set_num_threads(threads)
    ckpt = resolve_checkpoint(checkpoint)
    out = Path(out)
    pipe = UniDiffPipeline.from_pretrained(ckpt)
    size = pipe.transformer.config.default_pixel_size[0]
    held = word_scenes(HELDOUT_SEEDS.start + HELDOUT_OFFSET, samples)
    word_samples = [word_sample(scene, size) for _, scene in held]
    plain_samples = [make_sample("text2image", s, size) for s in seeds_for("text2image", samples)]

    t0 = time.time()
    before, before_images = measure(pipe, word_samples, plain_samples, eval_steps)
    log(f"before: {WORD}_acc {before[f'{WORD}_acc']:.3f}  text2image attr_acc {before['text2image_attr_acc']:.3f}"
        f"  ({time.time() - t0:.0f} s)")

    recipe = load_recipe(RECIPE, steps=steps, threads=threads, size=size)
    folder = write_folder(out / "data", train_images, size, replay_images)
    data = FolderData(folder, "text2image", size)
    summary = train(recipe, out, init=ckpt, lora={"rank": rank, "alpha": float(rank), "name": LORA_NAME}, data=data,
                    progress=False)
    log(f"trained the LoRA: {summary['steps']} steps in {summary['train_minutes']} min")

    lora_path = out / summary["lora"]["file"]
    merge_loras(pipe.transformer, [(load_lora(lora_path, pipe.transformer), 1.0)])
    t0 = time.time()
    after, after_images = measure(pipe, word_samples, plain_samples, eval_steps)
    log(f"after:  {WORD}_acc {after[f'{WORD}_acc']:.3f}  text2image attr_acc {after['text2image_attr_acc']:.3f}"
        f"  ({time.time() - t0:.0f} s)")

    report = {"checkpoint": ckpt.name, "word": WORD, "rgb": list(RGB), "lora": LORA_NAME + ".safetensors",
              "rank": rank, "train_images": len(data), "replay_images": replay_images, "eval_steps": eval_steps,
              "train": dict(summary, init=ckpt.name),  # the folder's name: no path of this machine in the record
              "guidance": TEXT_TASKS["text2image"], "heldout_samples": samples,
              "heldout_seeds": [held[0][0], held[-1][0]], "metric": f"{WORD}_acc: share of {WORD} objects found as "
              f"{WORD} blobs at their place (attribute detector, {WORD} added to its colour table); "
              "text2image_attr_acc: the evaluation's attribute accuracy on ordinary held-out scenes",
              "before": before, "after": after, "command": command}
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        (docs / "lora_demo.json").write_text(json.dumps(report, indent=2) + "\n")
        gap = np.ones((size, 4, 3), np.float32)
        rows = [np.concatenate([s.targets[0], gap, b, gap, a], axis=1)
                for s, b, a in list(zip(word_samples, before_images, after_images))[:6]]
        save_grid(rows, docs / "lora_demo.png")
    if publish is not None:
        publish.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lora_path, publish / f"{LORA_NAME}.safetensors")
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="mini", help="'mini' or a checkpoint folder")
    p.add_argument("--out", required=True, help="run folder (the generated data, training state, the LoRA)")
    p.add_argument("--steps", type=int, help="override the recipe's step count (e.g. 20 for a quick check)")
    p.add_argument("--samples", type=int, default=24, help="held-out samples per metric")
    p.add_argument("--train-images", type=int, default=400, help="images in the generated training folder")
    p.add_argument("--replay-images", type=int, default=0,
                   help="ordinary generated scenes mixed into the folder (prior preservation; docs/training.md has "
                        "what 400 did)")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--docs", default=str(ROOT / "docs" / "mini"), help="where lora_demo.json/png go")
    p.add_argument("--publish", nargs="?", const=str(ROOT / "models" / "loras"), default=None,
                   help="copy the LoRA into this folder (default models/loras, where the pack lists it)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)  # recorded with folder names only, no machine paths
    command = " ".join(["python -m training.lora_demo"] + [Path(g).name if "/" in g else g for g in given])
    report = run(a.checkpoint, Path(a.out), a.steps, a.samples, a.train_images, a.replay_images, rank=a.rank,
                 docs=Path(a.docs), publish=Path(a.publish) if a.publish else None, threads=a.threads, command=command)
    print(json.dumps({when: {k: v for k, v in report[when].items() if k != "per_sample"}
                      for when in ("before", "after")}, indent=2))


if __name__ == "__main__":
    main()
