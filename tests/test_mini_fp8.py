"""fp8 e4m3 transformer weights on UniDiff-Mini: `training.evaluate(..., fp8=True)` loads them the way the
Loader's weight_format "fp8_e4m3" does, stores far fewer bytes, and keeps Mini's held-out metrics close to
its float32 ones on the same seeds.

Measured on the first release of Mini (8 held-out seeds, 20 Euler steps, per-sample |fp8 - fp32| of the
headline metric): image2depth abs_rel at most 0.0021 (fp32 margin over the baseline on seeds 1-2: 0.112,
so 1.9 % of it), image2hed edge_f1 at most 0.0032 (margin 0.566: 0.6 %). The bound below, 10 % of the
margin, is five times the worst measured ratio and still far from "as good as the baseline".
On the second release (same seeds): abs_rel at most 0.0008 (margin 0.158: 0.5 %), edge_f1 at most 0.0030
(margin 0.861: 0.3 %).
Transformer weights: 4,084,128 bytes with fp8 vs 14,192,544 in float32 (ratio 0.288).
"""

from __future__ import annotations

import pytest
import torch

from training.evaluate import evaluate, resolve_checkpoint

TASKS = {"image2depth": "abs_rel", "image2hed": "edge_f1"}  # read off an image: no guidance, exact targets
SAMPLES = 2
SHARE_OF_MARGIN = 0.10  # measured worst 0.019 (see the docstring)
MAX_BYTE_RATIO = 0.35  # measured 0.288: the block Linears (most of Mini) go from 4 bytes to 1


@pytest.fixture(scope="module")
def reports():
    torch.set_num_threads(1)
    mini = resolve_checkpoint("mini")
    return {fp8: evaluate(mini, list(TASKS), samples=SAMPLES, fp8=fp8, log=lambda *_: None) for fp8 in (False, True)}


def test_fp8_stores_the_transformer_in_fewer_bytes(reports):
    assert reports[True]["fp8"] and not reports[False]["fp8"]
    fp32, fp8 = reports[False]["transformer_weight_bytes"], reports[True]["transformer_weight_bytes"]
    assert fp8 <= MAX_BYTE_RATIO * fp32, (fp8, fp32)


@pytest.mark.parametrize("task", list(TASKS))
def test_fp8_keeps_the_metric_close_to_float32(reports, task):
    name = TASKS[task]
    ref, fp8 = (reports[f]["tasks"][task]["metrics"][name] for f in (False, True))
    margin = abs(ref["model"] - ref["baseline"])
    for a, b in zip(ref["per_sample"]["model"], fp8["per_sample"]["model"]):
        assert abs(b - a) <= SHARE_OF_MARGIN * margin, (task, name, a, b, margin)
