"""Honest quality figures for the speed features, measured on UniDiff-Mini (held-out scenes).

    python -m training.speed_quality            # prints a Markdown table, writes docs/mini/speed_quality.json
    python -m training.speed_quality --only euler-20 euler-20-fp8 --samples 2   # some rows; no JSON unless --out

For a few tasks with a clear margin over their baseline, the headline metric of each sampler at several
step counts, of the first-block step cache at two thresholds (transformer evaluations per run next to
the metric), and of fp8 e4m3 transformer weights (the Loader's weight_format "fp8_e4m3", computing in
float32 as on a CPU; the transformer's weight bytes next to the metric), all on the same held-out seeds
as `training.evaluate`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from unidiff_core.common.samplers import model_evaluations

from .evaluate import ROOT, evaluate, resolve_checkpoint

TASKS = ["image2depth", "semanticmap2image", "boundingbox2image", "image2hed"]
# (sampler, steps, step-cache threshold, fp8 weights)
CONFIGS = [("euler", 20, 0.0, False), ("euler", 10, 0.0, False), ("euler", 5, 0.0, False),
           ("heun", 10, 0.0, False), ("heun", 5, 0.0, False), ("dpmpp_2m", 10, 0.0, False),
           ("dpmpp_2m", 5, 0.0, False), ("euler", 20, 0.05, False), ("euler", 20, 0.15, False),
           ("euler", 20, 0.0, True), ("euler", 20, 0.05, True)]
MB = 1e6


def config_name(sampler: str, steps: int, cache: float, fp8: bool) -> str:
    """e.g. euler-20, euler-20-cache0.05-fp8: what --only takes."""
    return f"{sampler}-{steps}" + (f"-cache{cache:g}" if cache else "") + ("-fp8" if fp8 else "")


NAMES = [config_name(*c) for c in CONFIGS]


def measure(configs, samples: int) -> list[dict]:
    mini = resolve_checkpoint("mini")
    rows = []
    for sampler, steps, cache, fp8 in configs:
        report = evaluate(mini, TASKS, samples=samples, steps=steps, sampler=sampler, step_cache=cache, fp8=fp8,
                          log=lambda *_: None)
        row = {"sampler": sampler, "steps": steps, "step_cache": cache, "fp8": fp8,
               "transformer_weight_bytes": report["transformer_weight_bytes"], "samples": samples, "tasks": {}}
        for task, r in report["tasks"].items():
            name, m = next(iter(r["metrics"].items()))
            evals = r.get("transformer_evals", model_evaluations(sampler, steps))
            row["tasks"][task] = {"metric": name, "model": m["model"], "baseline": m["baseline"], "evals": evals}
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = "| sampler | steps | step cache | transformer weights | " + " | ".join(
        f"`{t}` {rows[0]['tasks'][t]['metric']} (evals)" for t in TASKS) + " |"
    lines = [head, "|" + "---|" * (4 + len(TASKS))]
    for row in rows:
        weights = f"{'fp8' if row['fp8'] else 'fp32'} {row['transformer_weight_bytes'] / MB:.1f} MB"
        cells = [f"{row['tasks'][t]['model']:.3f} ({row['tasks'][t]['evals']:.1f})" for t in TASKS]
        lines.append(f"| {row['sampler']} | {row['steps']} | {row['step_cache'] or 'off'} | {weights} | "
                     + " | ".join(cells) + " |")
    lines.append("| trivial baseline | | | | " + " | ".join(f"{rows[0]['tasks'][t]['baseline']:.3f}" for t in TASKS) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=NAMES, metavar="CONFIG",
                   help=f"run only these rows (one of: {', '.join(NAMES)})")
    p.add_argument("--samples", type=int, default=8, help="held-out samples per task")
    p.add_argument("--out", help="JSON file (default docs/mini/speed_quality.json, only when every row runs)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    configs = [c for c in CONFIGS if a.only is None or config_name(*c) in a.only]
    rows = measure(configs, a.samples)
    # a partial run never overwrites the record of the full table
    out = Path(a.out) if a.out else (ROOT / "docs" / "mini" / "speed_quality.json" if a.only is None else None)
    if out is not None:
        out.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
