"""Write a model card (README.md) for a published checkpoint from its training summary and evaluation.

    python -m training.card --checkpoint models/UniDiff-Mini --metrics docs/mini/metrics.json \
        --command "python -m training.train --recipe training/recipes/mini.json --out runs/mini --resume" \
        --machine "AMD EPYC (lscpu model name), 2 cores shared, 1 thread"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .evaluate import TEXT_TASKS, markdown_table


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20


def parameter_count(checkpoint: Path) -> dict:
    from safetensors import safe_open

    counts = {}
    for part, name in (("transformer", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors")):
        with safe_open(str(checkpoint / part / name), framework="pt") as f:
            total = 0
            for key in f.keys():
                n = 1
                for d in f.get_slice(key).get_shape():
                    n *= d
                total += n
        counts[part] = total
    return counts


def write_card(checkpoint: Path, metrics: dict, command: str, machine: str, notes: str = "") -> Path:
    summary = json.loads((checkpoint / "training.json").read_text())
    transformer = json.loads((checkpoint / "transformer" / "config.json").read_text())
    params = parameter_count(checkpoint)
    size = metrics["size"]
    guided = ", ".join(f"{g} for {t}" for t, g in TEXT_TASKS.items())
    processes = f"{summary['processes']} process" + ("es" if summary["processes"] > 1 else "")
    threads = f"{summary['threads']} thread" + ("s" if summary["threads"] > 1 else "") + " each"
    refiner = json.loads((checkpoint / "vae" / "config.json").read_text()).get("refiner")
    refiner_line = "" if not refiner else (
        f"\n  The decode is followed by a learned refiner ({refiner['layers']} convolution layers of width "
        f"{refiner['width']}, fitted to the codec on generated frames; `training.parts.train_refiner`), which puts "
        "back the edges that 16 numbers per patch blur.")
    text = f"""---
license: apache-2.0
tags: [onediffusion, unidiff, multi-task, diffusion, synthetic]
---

# UniDiff-Mini

A small multi-task diffusion model in the exact OneDiffusion layout, trained by this pack's own recipe on
its procedural task data. It runs every task of the pack at {size}×{size} on a CPU in seconds, through the
same loader, pipeline, CLI and ComfyUI nodes as the 2.8B OneDiffusion model. It was trained only on
coloured shapes on plain or gradient backgrounds, stick figures, cartoon faces and two-colour 3-D primitives, and knows
nothing of photographs. How well it does each task, against a trivial baseline, is in the table below.

* Transformer: NextDiT, {transformer['depth']} layers, width {transformer['hidden_size']},
  {transformer['num_heads']} heads ({transformer['num_kv_heads']} KV), patch {transformer['patch_size']},
  {params['transformer'] / 1e6:.2f} M parameters.
* Text encoder: T5 encoder, {params['text_encoder'] / 1e6:.2f} M parameters, trained jointly; SentencePiece
  tokenizer trained on the generated prompts (byte fallback).
* "VAE": a fixed linear pixel codec (8×8 space-to-depth projected on 16 principal components of generated
  patches; `vae/config.json` declares `LinearPatchCodec`). No learned encoder.{refiner_line}
* Declared defaults (`model_index.json`): {size}×{size}, negative prompt "" (the prompt it saw when dropped).
* Size on disk: {folder_mib(checkpoint):.1f} MiB. Licence: Apache-2.0 (weights and code).

## Use

```
python -m unidiff_core run --checkpoint mini --task image2depth --image scene.png --steps 20 --cfg 1 --out out/
python -m unidiff_core run --checkpoint mini --task text2image --caption "a red circle at the left on a white background" --steps 20 --cfg 2.5 --out out/
```
In ComfyUI the Loader lists it as `UniDiff-Mini` (read in place from the pack's `models/` folder).

## Training

```
{command}
```
* Recipe `training/recipes/mini.json` (seed {summary['seed']}): {summary['steps']} optimizer steps,
  {summary['samples_seen']} samples, {summary['train_minutes']} minutes of training, {processes},
  {threads}, precision `{summary['mixed_precision']}`, matrix products `{summary.get('matmul_dtype', 'float32')}`.
* Machine: {machine}.
* Data: training seeds {summary['train_seeds'][0]}..{summary['train_seeds'][1]} of `training.data`
  (disjoint from the evaluation's held-out seeds {metrics['heldout_seeds'][0]}..{metrics['heldout_seeds'][1]}).
  The codec is fitted on 400 and the tokenizer on 3000 samples drawn from the top of the training range.
* Loss curves: `docs/mini/losses.png` (per-task moving means of the flow-matching loss).

## Evaluation

`python -m training.evaluate --checkpoint mini` ({metrics['samples_per_task']} held-out samples per task,
{metrics['steps']} Euler steps, guidance {guided} and 1.0
elsewhere, negative prompt ""), through the pack's decoders. The trivial baseline ignores what the task is
about (see its column); the codec ceiling is the ground truth passed through the pixel codec, the best any
model with this codec can do. ↑ = higher is better.

{markdown_table(metrics)}

{notes}
"""
    path = checkpoint / "README.md"
    path.write_text(text)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--notes", default="", help="a Markdown file with notes to append")
    a = p.parse_args(argv)
    notes = Path(a.notes).read_text() if a.notes else ""
    print(write_card(Path(a.checkpoint), json.loads(Path(a.metrics).read_text()), a.command, a.machine, notes))


if __name__ == "__main__":
    main()
