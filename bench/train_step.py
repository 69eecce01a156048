"""Seconds per training step of a recipe with float32 against bf16 matrix products, side by side.

    python -m bench.train_step                                   # mini.json, 30 timed steps, one thread
    python -m bench.train_step --steps 10 --variants float32 bf16 bf16-autocast --json out.json

Each variant is its own copy of the recipe's model (the same initial weights), trained on the same
micro-batches as the trainer draws them (training.train.micro_batch): the variants take turns on every step,
in an order that alternates, so that a shared machine's drift falls on all of them alike. Data generation
is done once per step and not timed. Variants: `float32`, `bf16` (the recipe's `"matmul_dtype": "bf16"`:
bf16 products, everything else float32) and `bf16-autocast` (`"mixed_precision": "bf16"`: torch.autocast,
which also takes the model's bf16 attention branch). Prints seconds per step (median and mean), the ratio to
the first variant and the mean loss of the last steps (the variants see the same data, so their losses should
stay close), and the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch

from training import parts
from training.train import Batcher, build_models, flow_loss, frame_tokens, load_recipe, micro_batch
from unidiff_core.onediffusion.pixel_codec import load_codec
from unidiff_core.onediffusion.schedule import DEFAULT_SCHEDULER_CONFIG

from .machine import describe

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "models" / "UniDiff-Mini"
VARIANTS = {"float32": {}, "bf16": {"matmul_dtype": "bf16"}, "bf16-autocast": {"mixed_precision": "bf16"}}


def make_variant(recipe: dict, name: str, tokenizer) -> dict:
    settings = dict(recipe, **VARIANTS[name])
    transformer, text = build_models(settings, tokenizer)
    groups = [{"params": list(transformer.parameters()), "lr": recipe["lr"]},
              {"params": list(text.parameters()), "lr": recipe["text_lr"]}]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=recipe["weight_decay"])
    autocast = settings["mixed_precision"] == "bf16"
    return {"transformer": transformer.train(), "text": text.train(), "opt": opt, "autocast": autocast,
            "seconds": [], "losses": []}


def train_step(v: dict, batches, lr_scale: float) -> float:
    """One optimizer step of the trainer's loop (micro-batches, clipping, AdamW), without EMA and DDP."""
    for g in v["opt"].param_groups:
        g.setdefault("base_lr", g["lr"])
        g["lr"] = g["base_lr"] * lr_scale
    total = 0.0
    for b in batches:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if v["autocast"] else contextlib.nullcontext()
        with context:
            states = v["text"](input_ids=b.tokens.input_ids, attention_mask=b.tokens.attention_mask)[0]
            loss = flow_loss(v["transformer"], states, b.tokens.attention_mask, b.x0, b.generate, b.sigma,
                             b.timesteps, b.noise)
        (loss / len(batches)).backward()
        total += float(loss.detach()) / len(batches)
    params = [p for g in v["opt"].param_groups for p in g["params"]]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    v["opt"].step()
    v["opt"].zero_grad(set_to_none=True)
    return total


def run(recipe_path: Path, variants: list[str], steps: int, warmup: int, threads: int, log=print) -> dict:
    torch.set_num_threads(threads)
    recipe = load_recipe(recipe_path)
    # The shipped Mini's codec and tokenizer: what a rebuild of mini.json fits, without the minutes of fitting.
    codec, tokenizer = load_codec(MINI / "vae"), parts.load_tokenizer(MINI / "tokenizer")
    batcher = Batcher(recipe, codec, DEFAULT_SCHEDULER_CONFIG)
    models = {name: make_variant(recipe, name, tokenizer) for name in variants}
    tokens = frame_tokens(recipe, next(iter(models.values()))["transformer"].config)
    for step in range(warmup + steps):
        batches = [micro_batch(recipe, batcher, tokenizer, step, m, 0, 1, tokens) for m in range(recipe["micro_batches"])]
        lr_scale = min(1.0, (step + 1) / recipe["warmup_steps"])
        order = variants if step % 2 == 0 else variants[::-1]
        for name in order:
            start = time.perf_counter()
            loss = train_step(models[name], batches, lr_scale)
            if step >= warmup:
                models[name]["seconds"].append(time.perf_counter() - start)
                models[name]["losses"].append(loss)
        if step >= warmup and (step - warmup + 1) % 10 == 0:
            log(f"step {step - warmup + 1}/{steps}: " + ", ".join(
                f"{n} {statistics.median(models[n]['seconds']):.3f} s" for n in variants))
    first = statistics.median(models[variants[0]]["seconds"])
    tail = max(1, steps // 3)
    rows = {name: {"median_s": round(statistics.median(m["seconds"]), 4),
                   "mean_s": round(statistics.mean(m["seconds"]), 4),
                   "speedup": round(first / statistics.median(m["seconds"]), 3),
                   "loss_last_third": round(statistics.mean(m["losses"][-tail:]), 5)}
            for name, m in models.items()}
    return {"recipe": recipe["name"], "threads": threads, "timed_steps": steps, "warmup_steps": warmup,
            "machine": describe(), "variants": rows}


def render(report: dict) -> str:
    lines = [f"{report['recipe']}, {report['threads']} thread(s), {report['timed_steps']} timed steps; "
             f"{report['machine']['cpu']} ({' '.join(report['machine']['cpu_flags'])})", "",
             "| variant | s/step (median) | s/step (mean) | speed-up | loss, last third of the steps |",
             "|---|---|---|---|---|"]
    for name, r in report["variants"].items():
        lines.append(f"| `{name}` | {r['median_s']:.3f} | {r['mean_s']:.3f} | {r['speedup']:.2f}× | "
                     f"{r['loss_last_third']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default=str(ROOT / "training" / "recipes" / "mini.json"))
    p.add_argument("--variants", nargs="+", default=["float32", "bf16"], choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the report here")
    a = p.parse_args(argv)
    report = run(Path(a.recipe), a.variants, a.steps, a.warmup, a.threads)
    print(render(report))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
