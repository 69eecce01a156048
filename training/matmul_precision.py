"""Training layers whose matrix products run in bf16 while everything else stays float32.

On a CPU with AMX a bf16 product of Mini's sizes runs 7-8x faster than float32, but bf16 autocast buys
almost nothing there: autocast also sends attention down the model's bf16 branch (the reference's soft-capped
attention, computed explicitly) and CPU attention is slower in bf16 than in float32. These layers
cast only the operands of each Linear, so norms, rotary, attention and the loss keep float32 activations
and the fp32 branch the sampler runs at inference. The weights stay float32 parameters of plain
`nn.Linear` layers (the same state dict), and the optimizer updates them in float32.

Used through the model's injectable `operations` namespace (recipe key `"matmul_dtype": "bf16"`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unidiff_core.onediffusion.model import OPERATIONS

MATMUL_DTYPES = {"float32": None, "bf16": torch.bfloat16}


class Bf16MatmulLinear(nn.Linear):
    """nn.Linear computing x @ W^T (+ b) with bf16 operands and returning the input's dtype."""

    def forward(self, x):
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        return F.linear(x.to(torch.bfloat16), self.weight.to(torch.bfloat16), bias).to(x.dtype)


class Bf16MatmulOperations:
    """The model's layer namespace with bf16 matrix products (LayerNorm and RMSNorm unchanged)."""

    Linear = Bf16MatmulLinear
    LayerNorm = OPERATIONS.LayerNorm
    RMSNorm = OPERATIONS.RMSNorm


def operations_for(matmul_dtype: str):
    """The `operations` namespace of a recipe's `matmul_dtype` ("float32", the default, or "bf16")."""
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"recipe matmul_dtype {matmul_dtype!r} is not one of {', '.join(MATMUL_DTYPES)}")
    return OPERATIONS if MATMUL_DTYPES[matmul_dtype] is None else Bf16MatmulOperations
