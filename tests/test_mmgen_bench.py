"""Smoke test of the MMGen benchmark code on the tiny checkpoint (no timing asserted)."""

import json

import torch

from bench import mmgen


def test_load_child_and_released_writer(tmp_path):
    ema, args = mmgen.random_ema("tiny")
    path = mmgen.write_released(tmp_path / "0600000.pt", ema, args, full=True)
    out = mmgen._load_child(str(path))
    assert out["model_bytes"] == sum(v.numel() * 4 for k, v in ema.items() if not k.startswith("projectors."))
    assert out["peak_rss_bytes"] >= out["baseline_rss_bytes"] > 0
    json.dumps(out)


def test_ours_on_the_bench_inputs_and_reference_skip(tmp_path, monkeypatch):
    from unidiff_core.mmgen.loading import load_model

    ema, args = mmgen.random_ema("tiny")
    model = load_model(mmgen.write_released(tmp_path / "t.pt", ema, args, full=False))
    latents, labels, meta = mmgen.bench_inputs(steps=3)
    steps, out = mmgen.run_ours(model, latents, labels, meta)
    assert len(steps) == 3 and out.shape == (1, 16, 32, 32) and torch.isfinite(out).all()
    assert torch.equal(out[:, 4:8], latents[:, 4:8])  # the held depth slot
    monkeypatch.delenv("UNIDIFF_MMGEN_REF_TOOLS", raising=False)
    python, tools, why = mmgen.locate(str(tmp_path / "nowhere"), None)
    assert python is None and "reference tools not found" in why
    text = mmgen.render({"machine": {"cpu": "x", "torch_threads": 1, "torch": "t"}, "reference": {"skipped": why}})
    assert "skipped" in text
