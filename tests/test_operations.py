"""Host operations in the core: NextDiT builds every layer from the `operations` namespace it is given and
calls plain attention through the `attention` function it is given (no ComfyUI here: a fake namespace)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from unidiff_core.onediffusion import model as model_module
from unidiff_core.onediffusion.loading import load_transformer


class Recorder:
    def __init__(self):
        self.layers = []  # every layer the namespace built
        self.called = set()  # ids of the layers whose forward ran
        self.attention_calls = 0


def fake_operations(rec: Recorder, cast: bool = False):
    """Subclasses of the default layers that register themselves and their calls; with cast=True they
    also cast their weights to the input's dtype per call (what a host's manual-cast layers do)."""

    def track(base):
        class Layer(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                rec.layers.append(self)

            def forward(self, x):
                rec.called.add(id(self))
                if not cast:
                    return super().forward(x)
                weight = self.weight.to(x.dtype)
                if isinstance(self, nn.Linear):
                    return F.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))
                if isinstance(self, nn.LayerNorm):
                    return F.layer_norm(x, self.normalized_shape, weight, self.bias.to(x.dtype), self.eps)
                return self.forward_with(x, weight)

        Layer.__name__ = "Fake" + base.__name__
        return Layer

    class Ops:
        Linear = track(nn.Linear)
        LayerNorm = track(nn.LayerNorm)
        RMSNorm = track(model_module.RMSNorm)

    def attention(q, k, v, mask=None):
        rec.attention_calls += 1
        return model_module.sdpa(q, k, v, mask)

    return Ops, attention


@pytest.fixture(scope="module")
def oracle(golden_dir):
    return load_file(golden_dir / "forward_tiny.safetensors")


def run(m, oracle, dtype=torch.float32):
    with torch.no_grad():
        return m(oracle["samples5"].to(dtype), oracle["timesteps5"], oracle["encoder_hidden_states"].to(dtype),
                 oracle["encoder_attention_mask"])


def test_every_layer_and_attention_come_from_the_injected_namespace(tiny_checkpoint, oracle):
    torch.set_num_threads(1)
    rec = Recorder()
    ops, attention = fake_operations(rec)
    injected = load_transformer(tiny_checkpoint / "transformer", operations=ops, attention=attention)
    default = load_transformer(tiny_checkpoint / "transformer")

    weighted = [m for m in injected.modules() if next(m.parameters(recurse=False), None) is not None
                and not isinstance(m, model_module.Attention)]  # the attention gate is a bare parameter
    assert weighted and all(any(m is layer for layer in rec.layers) for m in weighted)
    assert {type(m).__name__ for m in weighted} == {"FakeLinear", "FakeLayerNorm", "FakeRMSNorm"}

    out = run(injected, oracle)
    depth = injected.config.depth
    assert rec.attention_calls == 2 * depth  # fp32: self-attention and caption cross-attention per block
    assert rec.called == {id(layer) for layer in rec.layers}  # every injected layer ran
    assert torch.equal(out, run(default, oracle))  # same layers, same numbers
    assert (out - oracle["output5"]).abs().max() < 1e-4


def test_half_precision_self_attention_keeps_the_softcap(tiny_checkpoint, oracle):
    """The injected attention serves the caption cross-attention in bf16; self-attention stays soft-capped."""
    rec = Recorder()
    ops, attention = fake_operations(rec)
    m = load_transformer(tiny_checkpoint / "transformer", dtype=torch.bfloat16, operations=ops, attention=attention)
    default = load_transformer(tiny_checkpoint / "transformer", dtype=torch.bfloat16)
    out = run(m, oracle, torch.bfloat16)
    assert rec.attention_calls == m.config.depth
    assert torch.equal(out, run(default, oracle, torch.bfloat16))


def test_compute_dtype_with_weights_stored_in_another_dtype(tiny_checkpoint, oracle):
    """fp32 weights, bf16 compute through casting layers (a host's manual cast) = the bf16 model."""
    rec = Recorder()
    ops, attention = fake_operations(rec, cast=True)
    stored = load_transformer(tiny_checkpoint / "transformer", operations=ops, attention=attention)
    stored.compute_dtype = torch.bfloat16
    assert stored.dtype == torch.bfloat16 and stored.x_embedder.weight.dtype == torch.float32
    out = run(stored, oracle, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    assert relative_error(out, oracle["output5"]) <= BF16_RTOL


BF16_RTOL = 1.6e-2  # torch.testing's relative tolerance for bfloat16


def relative_error(out, reference) -> float:
    """||out - reference|| / ||reference|| over the whole tensor (elementwise ratios blow up near zero)."""
    reference = reference.float()
    return float((out.float() - reference).norm() / reference.norm())
