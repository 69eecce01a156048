"""training.compare: paired margins of two evaluation reports on the same seeds."""

from __future__ import annotations

import json

import pytest

from training.compare import CLEAR_Z, compare, main, paired_z


def report(model, baseline, higher=True, task="image2depth", name="abs_rel"):
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"tasks": {task: {"metrics": {name: {
        "model": mean(model), "baseline": mean(baseline), "ceiling": 0.0, "higher_is_better": higher,
        "per_sample": {"model": model, "baseline": baseline, "ceiling": [0.0] * len(model)}}}}}}


def test_paired_z_by_hand():
    # margins 1, 2, 3: mean 2, sample sd 1, standard error 1/sqrt(3)
    assert paired_z([2.0, 3.0, 4.0], [1.0, 1.0, 1.0], True) == pytest.approx(2 * 3 ** 0.5)
    # lower is better: the same numbers are a loss of the first list
    assert paired_z([2.0, 3.0, 4.0], [1.0, 1.0, 1.0], False) == pytest.approx(-2 * 3 ** 0.5)


def test_paired_z_refuses_unpaired_lists():
    with pytest.raises(ValueError, match="same --samples"):
        paired_z([1.0, 2.0, 3.0], [1.0, 2.0], True)


def test_compare_rows_and_verdicts(capsys, tmp_path):
    baseline = [0.30, 0.25, 0.28, 0.22]
    first = report([0.10, 0.12, 0.09, 0.11], baseline, higher=False)  # far below the baseline error
    second = report([0.31, 0.24, 0.29, 0.23], baseline, higher=False)  # the baseline's level: a tie at best
    (row,) = compare(first, second)
    assert row["z_first"] > CLEAR_Z
    assert abs(row["z_second"]) < CLEAR_Z
    assert row["z_second_over_first"] < -CLEAR_Z
    files = []
    for i, r in enumerate((first, second)):
        files.append(tmp_path / f"r{i}.json")
        files[-1].write_text(json.dumps(r))
    main([str(files[0]), str(files[1]), "--names", "old", "new"])
    out = capsys.readouterr().out
    assert "| `image2depth` | abs_rel ↓ |" in out
    assert "old 1 of 1, new 0 of 1" in out
    assert "clearly worse on 1" in out


def test_compare_refuses_reports_of_different_samples():
    first = report([0.1, 0.2, 0.1], [0.3, 0.3, 0.3])
    second = report([0.1, 0.2, 0.1], [0.3, 0.3, 0.4])
    with pytest.raises(ValueError, match="different samples"):
        compare(first, second)
