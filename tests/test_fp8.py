"""fp8 (e4m3) weight storage: quantisation error bounds, layer swap, streaming loader, pipeline option."""

import copy

import pytest
import torch
import torch.nn as nn

from unidiff_core.onediffusion.fp8 import FP8_DTYPE, FP8Linear, fp8_bytes, load_transformer_fp8, quantize_fp8, quantize_weight
from unidiff_core.onediffusion.loading import load_transformer
from unidiff_core.onediffusion.tiny import random_transformer


def test_quantize_weight_error_bound():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 96, generator=g) * torch.logspace(-3, 1, 64)[:, None]  # rows of very different scale
    q, scale = quantize_weight(w)
    assert q.dtype == FP8_DTYPE and scale.shape == (64, 1)
    deq = q.float() * scale
    # e4m3: 3 mantissa bits -> relative rounding <= 2^-4; subnormal spacing 2^-9 (x row scale)
    bound = w.abs() * 2 ** -4 + scale * 2 ** -9
    assert bool(((deq - w).abs() <= bound + 1e-12).all())
    torch.testing.assert_close(deq.abs().amax(1), w.abs().amax(1), rtol=1e-6, atol=0)  # row max ~exact


def test_zero_row_and_per_tensor_scale():
    w = torch.zeros(3, 8)
    w[1] = torch.arange(8.0)
    q, scale = quantize_weight(w)
    assert torch.equal(q.float()[0], torch.zeros(8)) and scale[0, 0] == 1
    q, scale = quantize_weight(w, per_row=False)
    assert scale.shape == (1, 1)


def test_fp8_linear_matches_dequantized_matmul():
    lin = nn.Linear(32, 48)
    layer = FP8Linear.from_linear(lin, torch.float32)
    x = torch.randn(5, 32)
    expected = torch.nn.functional.linear(x, layer.weight.float() * layer.scale, lin.bias)
    torch.testing.assert_close(layer(x), expected)
    assert layer.weight.dtype == FP8_DTYPE


def test_quantize_model_swaps_block_linears_only():
    model = random_transformer(0)
    ref = copy.deepcopy(model).to(torch.bfloat16)
    q = quantize_fp8(copy.deepcopy(model).to(torch.bfloat16))
    block_linears = [n for n, m in q.named_modules() if isinstance(m, FP8Linear)]
    assert block_linears and all(n.startswith("layers.") for n in block_linears)
    assert isinstance(q.x_embedder, nn.Linear) and isinstance(q.final_layer.linear, nn.Linear)
    assert fp8_bytes(q) < fp8_bytes(ref)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 16, 8, 8, generator=g).bfloat16()
    states = torch.randn(2, 300, 32, generator=g).bfloat16()
    mask = torch.zeros(2, 300, dtype=torch.long)
    mask[:, :12] = 1
    t = torch.tensor([[600.0, 40.0], [600.0, 40.0]])
    with torch.no_grad():
        a = ref(x, t, context=ref.prepare_context(states, mask)).float()
        b = q(x, t, context=q.prepare_context(states, mask)).float()
    assert torch.isfinite(b).all()
    rel = float((a - b).norm() / a.norm())
    assert 0 < rel < 0.2, rel


def test_streaming_loader_equals_quantizing_a_loaded_model(tiny_checkpoint):
    path = tiny_checkpoint / "transformer"
    streamed = load_transformer_fp8(path, compute_dtype=torch.bfloat16)
    swapped = quantize_fp8(load_transformer(path, dtype=torch.float32), torch.bfloat16)
    a, b = streamed.state_dict(), swapped.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key].view(torch.uint8) if a[key].dtype == FP8_DTYPE else a[key],
                           b[key].view(torch.uint8) if b[key].dtype == FP8_DTYPE else b[key]), key


def test_pipeline_weight_dtype_fp8(tiny_checkpoint):
    from unidiff_core.onediffusion.pipeline import Frame, UniDiffPipeline

    pipe = UniDiffPipeline.from_pretrained(tiny_checkpoint, dtype="bf16", weight_dtype="fp8")
    assert any(isinstance(m, FP8Linear) for m in pipe.transformer.modules())
    result = pipe.generate("[[text2image]] a cat", [Frame()], height=64, width=64, steps=2, guidance=4.0)
    assert torch.isfinite(result.latents).all()
    with pytest.raises(ValueError):
        UniDiffPipeline.from_pretrained(tiny_checkpoint, weight_dtype="int4")
