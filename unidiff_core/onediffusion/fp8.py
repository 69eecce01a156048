"""Optional fp8 (e4m3) weight storage for the transformer blocks, upcast layer by layer in forward.

Every `nn.Linear` inside the transformer blocks (attention, caption K/V, SwiGLU FFN, adaLN
modulation: 99.6 % of the real model's parameters) stores its weight as `torch.float8_e4m3fn` with
one float32 scale per output row (row max / 448). The forward pass dequantises the weight of one
layer at a time to the activation dtype and runs an ordinary matmul, so the saving is in weight
memory (about half of bf16), not in compute; the transient copy is one layer's weight. The small
embedders and the final layer stay in the compute dtype.

    model = quantize_fp8(model)                                   # an already loaded model
    model = load_transformer_fp8(path, compute_dtype=torch.bfloat16)  # streaming: never a full bf16 copy

fp8 weights are an approximation: `bench` reports the error against bf16 (docs/performance.md).
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite e4m3fn value


def quantize_weight(weight: torch.Tensor, per_row: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) weight -> (fp8 weight, float32 scale of shape (out, 1) or (1, 1)); weight ~ fp8 * scale."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1, keepdim=True) if per_row else w.abs().amax().reshape(1, 1)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (w / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


class FP8Linear(nn.Module):
    """A Linear layer whose weight is stored in fp8 e4m3 with a per-row float32 scale."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, compute_dtype=torch.bfloat16,
                 device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=FP8_DTYPE, device=device))
        self.register_buffer("scale", torch.ones(out_features, 1, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=compute_dtype, device=device),
                                 requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute_dtype=None, per_row: bool = True) -> "FP8Linear":
        compute_dtype = compute_dtype or linear.weight.dtype
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, compute_dtype,
                    device=linear.weight.device)
        q, scale = quantize_weight(linear.weight, per_row)
        layer.weight = q
        layer.scale = scale
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().to(compute_dtype), requires_grad=False)
        return layer

    def dequantized_weight(self, dtype=None) -> torch.Tensor:
        return (self.weight.float() * self.scale).to(dtype or self.compute_dtype)

    def forward(self, x):
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, fp8_e4m3"


def _linear_names(model: nn.Module) -> list[str]:
    """Names of the Linear modules that get fp8 weights: everything inside the transformer blocks."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.startswith("layers.")]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def quantize_fp8(model: nn.Module, compute_dtype=None, per_row: bool = True) -> nn.Module:
    """Replace the block Linear layers of a NextDiT by FP8Linear in place; the rest goes to compute_dtype."""
    compute_dtype = compute_dtype or model.dtype
    if compute_dtype == torch.float32 and model.dtype != torch.float32:
        raise ValueError("compute_dtype float32 needs a float32 model")
    for name in _linear_names(model):
        _set_module(model, name, FP8Linear.from_linear(model.get_submodule(name), compute_dtype, per_row))
    for p in model.parameters():  # embedders, norms, gates, final layer
        if p.dtype != compute_dtype and p.is_floating_point():
            p.data = p.data.to(compute_dtype)
    return model


def fp8_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers (fp8 weights count one byte per element)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def load_transformer_fp8(path: str | os.PathLike, compute_dtype=torch.bfloat16, device="cpu", per_row: bool = True,
                         config=None, operations=None, attention=None):
    """Load a NextDiT checkpoint straight into fp8 block weights, one tensor at a time.

    Peak memory is the fp8 model plus one float32 copy of the largest tensor, never a bf16/fp32
    copy of the whole model.
    """
    from safetensors import safe_open

    from .loading import open_transformer

    files, model = open_transformer(path, config, operations, attention)
    fp8_names = set(_linear_names(model))
    with torch.device("meta"):
        for name in fp8_names:
            lin = model.get_submodule(name)
            _set_module(model, name, FP8Linear(lin.in_features, lin.out_features, lin.bias is not None, compute_dtype))
    state = {}
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in f.keys():
                module, _, leaf = key.rpartition(".")
                tensor = f.get_tensor(key)
                if module in fp8_names and leaf == "weight":
                    q, scale = quantize_weight(tensor, per_row)
                    state[key] = q.to(device)
                    state[f"{module}.scale"] = scale.to(device)
                else:
                    state[key] = tensor.to(device=device, dtype=compute_dtype)
                del tensor
    model.load_state_dict(state, strict=True, assign=True)
    for layer in model.modules():  # assign=True keeps the loaded bias as a plain tensor; fix requires_grad
        if isinstance(layer, FP8Linear):
            layer.compute_dtype = compute_dtype
    return model.eval().requires_grad_(False)
