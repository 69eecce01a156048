"""Two evaluation reports of the same held-out seeds side by side: which tasks each checkpoint beats its
trivial baseline on, and where the second differs from the first by more than noise.

    python -m training.compare docs/mini/metrics.json runs/eval_new/metrics.json

Both reports score the same seeds (training.evaluate draws them by task and index), so margins are paired
per sample: z is the mean paired margin over its standard error, positive when the first-named side is
better. A clear difference is |z| > CLEAR_Z.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

CLEAR_Z = 2.0


def paired_z(better: list[float], worse: list[float], higher_is_better: bool) -> float:
    """Mean over standard error of the per-sample margins of `better` over `worse` (positive = `better` wins)."""
    if len(better) != len(worse) or len(better) < 2:
        raise ValueError(f"paired margins need two equally long lists of at least 2 samples, got {len(better)} "
                         f"and {len(worse)}: compare reports of the same --samples")
    sign = 1 if higher_is_better else -1
    d = [sign * (b - w) for b, w in zip(better, worse)]
    mean = sum(d) / len(d)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))
    return mean / max(se, 1e-12)


def baseline_z(metric: dict) -> float:
    """z of a report's model over its trivial baseline, for one metric entry of training.evaluate."""
    s = metric["per_sample"]
    return paired_z(s["model"], s["baseline"], metric["higher_is_better"])


def compare(first: dict, second: dict) -> list[dict]:
    """One row per task both reports hold: headline metric, the two models, the baseline, z of each over the
    baseline and z of the second over the first."""
    rows = []
    for task, a in first["tasks"].items():
        if task not in second["tasks"]:
            continue
        name = next(iter(a["metrics"]))
        ma, mb = a["metrics"][name], second["tasks"][task]["metrics"][name]
        if ma["per_sample"]["baseline"] != mb["per_sample"]["baseline"]:
            raise ValueError(f"{task}: the two reports scored different samples (baselines differ); evaluate "
                             f"both with the same --samples and data")
        rows.append({"task": task, "metric": name, "higher_is_better": ma["higher_is_better"],
                     "first": ma["model"], "second": mb["model"], "baseline": ma["baseline"],
                     "z_first": baseline_z(ma), "z_second": baseline_z(mb),
                     "z_second_over_first": paired_z(mb["per_sample"]["model"], ma["per_sample"]["model"],
                                                     ma["higher_is_better"])})
    return rows


def markdown(rows: list[dict], first_name: str, second_name: str) -> str:
    def verdict(z):
        return "**win**" if z > CLEAR_Z else "loss" if z < -CLEAR_Z else "tie"

    lines = [f"| task | metric | {first_name} | {second_name} | baseline | {first_name} vs baseline | "
             f"{second_name} vs baseline | {second_name} vs {first_name} (z) |", "|---" * 8 + "|"]
    for r in rows:
        arrow = "↑" if r["higher_is_better"] else "↓"
        lines.append(f"| `{r['task']}` | {r['metric']} {arrow} | {r['first']:.3f} | {r['second']:.3f} | "
                     f"{r['baseline']:.3f} | {verdict(r['z_first'])} ({r['z_first']:.1f}) | "
                     f"{verdict(r['z_second'])} ({r['z_second']:.1f}) | {r['z_second_over_first']:+.1f} |")
    wins = [sum(r[k] > CLEAR_Z for r in rows) for k in ("z_first", "z_second")]
    better = sum(r["z_second_over_first"] > CLEAR_Z for r in rows)
    worse = sum(r["z_second_over_first"] < -CLEAR_Z for r in rows)
    lines.append("")
    lines.append(f"Clear wins over the baseline: {first_name} {wins[0]} of {len(rows)}, {second_name} {wins[1]} of "
                 f"{len(rows)}. {second_name} against {first_name}: clearly better on {better}, clearly worse on "
                 f"{worse}, the same within noise on {len(rows) - better - worse}.")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("first", help="metrics.json of training.evaluate (e.g. docs/mini/metrics.json)")
    p.add_argument("second", help="metrics.json of another checkpoint on the same seeds")
    p.add_argument("--names", nargs=2, default=["first", "second"], help="column names of the two checkpoints")
    a = p.parse_args(argv)
    reports = [json.loads(Path(f).read_text()) for f in (a.first, a.second)]
    print(markdown(compare(*reports), *a.names))


if __name__ == "__main__":
    main()
