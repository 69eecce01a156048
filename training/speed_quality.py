"""Honest quality figures for the speed features, measured on UniDiff-Mini (held-out scenes).

    python -m training.speed_quality            # prints a Markdown table, writes docs/mini/speed_quality.json

For a few tasks with a clear margin over their baseline, the headline metric of each sampler at several
step counts, and of the first-block step cache at two thresholds (transformer evaluations per run next to
the metric), all on the same held-out seeds as `training.evaluate`.
"""

from __future__ import annotations

import json

import torch

from unidiff_core.common.samplers import model_evaluations

from .evaluate import ROOT, evaluate, resolve_checkpoint

TASKS = ["image2depth", "semanticmap2image", "boundingbox2image", "image2hed"]
CONFIGS = [("euler", 20, 0.0), ("euler", 10, 0.0), ("euler", 5, 0.0), ("heun", 10, 0.0), ("heun", 5, 0.0),
           ("dpmpp_2m", 10, 0.0), ("dpmpp_2m", 5, 0.0), ("euler", 20, 0.05), ("euler", 20, 0.15)]


def main(samples: int = 8):
    torch.set_num_threads(1)
    mini = resolve_checkpoint("mini")
    rows = []
    for sampler, steps, cache in CONFIGS:
        report = evaluate(mini, TASKS, samples=samples, steps=steps, sampler=sampler, step_cache=cache,
                          log=lambda *_: None)
        row = {"sampler": sampler, "steps": steps, "step_cache": cache, "tasks": {}}
        for task, r in report["tasks"].items():
            name, m = next(iter(r["metrics"].items()))
            evals = r.get("transformer_evals", model_evaluations(sampler, steps))
            row["tasks"][task] = {"metric": name, "model": m["model"], "baseline": m["baseline"], "evals": evals}
        rows.append(row)
    head = "| sampler | steps | step cache | " + " | ".join(
        f"{t} ({rows[0]['tasks'][t]['metric']}) / evals" for t in TASKS) + " |"
    lines = [head, "|" + "---|" * (3 + len(TASKS))]
    for row in rows:
        cells = [f"{row['tasks'][t]['model']:.3f} / {row['tasks'][t]['evals']:.1f}" for t in TASKS]
        lines.append(f"| {row['sampler']} | {row['steps']} | {row['step_cache'] or 'off'} | " + " | ".join(cells) + " |")
    lines.append("| trivial baseline | | | " + " | ".join(f"{rows[0]['tasks'][t]['baseline']:.3f}" for t in TASKS) + " |")
    (ROOT / "docs" / "mini" / "speed_quality.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
