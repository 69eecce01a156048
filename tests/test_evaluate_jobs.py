"""`training.evaluate --jobs N`: the tasks spread over processes give the serial report, grids included."""

from __future__ import annotations

import json

import pytest

from training.evaluate import evaluate, evaluate_in_processes, main, resolve_checkpoint

TASKS = ["image2depth", "deblurring", "text2image"]


def _without_times(report):
    return {task: {k: v for k, v in r.items() if k != "seconds"} for task, r in report["tasks"].items()}


def test_tasks_spread_over_two_processes_score_what_one_process_scores(tmp_path):
    mini = resolve_checkpoint("mini")
    serial = evaluate(mini, TASKS, samples=2, steps=3, log=lambda *_: None)
    # the second worker starts on deblurring, which ran second in the serial pass: order does not matter
    spread = evaluate_in_processes(mini, TASKS, jobs=2, samples=2, steps=3, out=tmp_path, log=lambda *_: None)
    assert list(spread["tasks"]) == TASKS
    assert _without_times(spread) == _without_times(serial)
    assert {k: v for k, v in spread.items() if k not in ("tasks", "seconds")} == \
        {k: v for k, v in serial.items() if k not in ("tasks", "seconds")}
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert _without_times(written) == _without_times(serial)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(f"{t}.png" for t in TASKS)
    assert "| `image2depth` | abs_rel ↓ |" in (tmp_path / "metrics.md").read_text()


def test_jobs_below_one_is_refused_with_the_value(capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", "mini", "--jobs", "0", "--tasks", "image2depth"])
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err
