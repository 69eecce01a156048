"""bf16 matrix products for training (training/matmul_precision.py): the same layers and weights, products
rounded like bf16, attention and norms on the fp32 path, and a recipe that trains and exports with it."""

from pathlib import Path

import pytest
import torch

from training.matmul_precision import Bf16MatmulLinear, Bf16MatmulOperations, operations_for
from training.train import load_recipe, train
from unidiff_core.onediffusion import model as model_module
from unidiff_core.onediffusion.config import NextDiTConfig
from unidiff_core.onediffusion.loading import load_transformer
from unidiff_core.onediffusion.model import NextDiT

RECIPE = Path(__file__).resolve().parent.parent / "training" / "recipes" / "tiny.json"

CFG = NextDiTConfig(input_size=(1, 4, 4), patch_size=(1, 1, 1), in_channels=16, hidden_size=48, depth=2,
                    num_heads=2, num_kv_heads=1, multiple_of=16, caption_channels=32, qk_norm=True,
                    model_max_length=300, rotary_max_length=32)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 2, 16, 4, 4, generator=g)
    t = torch.tensor([[0.3, 1.0], [0.7, 1.0]])
    y = torch.randn(2, 5, 32, generator=g)
    return x, t, y, torch.ones(2, 5, dtype=torch.long)


def _relative(a, b):
    return float((a - b).detach().norm() / b.detach().norm())


def test_linear_rounds_its_operands_to_bf16_and_keeps_float32_weights_and_outputs():
    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 32)
    bf16 = Bf16MatmulLinear(64, 32)
    bf16.load_state_dict(plain.state_dict())
    x = torch.randn(10, 64, requires_grad=True)
    out = bf16(x)
    expected = torch.nn.functional.linear(x.bfloat16(), plain.weight.bfloat16(), plain.bias.bfloat16()).float()
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    assert 0 < _relative(out, plain(x)) < 1e-2  # rounded, and only as much as bf16 rounds
    out.sum().backward()
    assert bf16.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32


def test_model_with_bf16_products_has_the_same_weights_and_stays_on_the_float32_attention_path(monkeypatch):
    torch.manual_seed(0)
    reference = NextDiT(CFG).eval()
    fast = NextDiT(CFG, operations=Bf16MatmulOperations).eval()
    assert fast.state_dict().keys() == reference.state_dict().keys()
    fast.load_state_dict(reference.state_dict())
    assert fast.dtype == torch.float32

    def no_softcap(*_):
        raise AssertionError("the bf16 branch (soft-capped attention) ran")

    monkeypatch.setattr(model_module, "softcapped_attention", no_softcap)
    x, t, y, mask = _inputs()
    with torch.no_grad():
        want = reference(x, t, encoder_hidden_states=y, encoder_attention_mask=mask)
        got = fast(x, t, encoder_hidden_states=y, encoder_attention_mask=mask)
    assert got.dtype == torch.float32
    assert 0 < _relative(got, want) < 2e-2


def test_an_unknown_matmul_dtype_is_refused_with_the_value():
    assert operations_for("float32") is model_module.OPERATIONS
    assert operations_for("bf16") is Bf16MatmulOperations
    with pytest.raises(ValueError, match="'fp16'.*float32, bf16"):
        operations_for("fp16")


def test_a_recipe_with_bf16_products_trains_and_exports_plain_weights(tmp_path):
    recipe = load_recipe(RECIPE, steps=12)
    recipe["matmul_dtype"] = "bf16"
    summary = train(recipe, tmp_path, progress=False)
    assert summary["steps"] == 12 and summary["matmul_dtype"] == "bf16"
    loaded = load_transformer(tmp_path / "checkpoint" / "transformer")  # the loader's ordinary float32 layers
    assert type(loaded.x_embedder) is torch.nn.Linear
    assert all(torch.isfinite(p).all() for p in loaded.parameters())


def test_the_training_step_benchmark_times_every_variant_on_the_same_batches():
    from bench.train_step import render, run

    report = run(RECIPE, ["float32", "bf16"], steps=2, warmup=1, threads=1, log=lambda *_: None)
    rows = report["variants"]
    assert set(rows) == {"float32", "bf16"} and rows["float32"]["speedup"] == 1.0
    assert all(r["median_s"] > 0 for r in rows.values())
    # the same initial weights and batches: after two small steps the losses still agree closely
    assert rows["bf16"]["loss_last_third"] == pytest.approx(rows["float32"]["loss_last_third"], rel=0.05)
    assert "| `bf16` |" in render(report)
