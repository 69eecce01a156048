"""First-block step cache (opt-in): skip most of the transformer on steps where little changes.

Idea (first-block cache, as in ParaAttention's FBCache / TeaCache): neighbouring sampling steps
produce similar activations. Every step runs the first transformer block; when its residual
(output minus input) differs from the one of the last fully computed step by less than `threshold`
in relative L1 norm, the remaining blocks are skipped and their contribution is replaced by the
residual they added last time (output of the last block minus output of the first block). The
final layer always runs with the current conditioning.

The decision is made for the whole batch at once (both CFG halves and every frame together), the
first `warmup_steps` steps and the last step are always computed in full, and the comparison is
against the last *fully computed* step, so the drift of consecutive skips accumulates and forces a
recompute. The decision is one host sync per step (only when the cache is on).

The cache is a model-side hook: `with cache.attached(model): ...` makes the model's forward run its
blocks through `run` (a model exposes a `blocks_hook` attribute for it), so samplers and denoisers know
nothing of it. It counts the model evaluations itself; `total_steps` is how many the sampler will make
(`samplers.model_evaluations`). threshold 0 (the default of `UniDiffPipeline.generate`) means no cache:
results are bit-identical to the uncached path.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch


class FirstBlockCache:
    def __init__(self, threshold: float, total_steps: int, warmup_steps: int = 1, final_steps: int = 1):
        if threshold < 0:
            raise ValueError(f"step cache threshold {threshold} must be >= 0")
        self.threshold = float(threshold)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.final_steps = int(final_steps)
        self.step = 0
        self._first_residual = None  # block-0 residual of the last fully computed step
        self._rest_residual = None  # output(last block) - output(block 0) of that step
        self.full_steps = 0
        self.cached_steps = 0
        self.changes: list[float] = []  # relative L1 change measured at each step (nan when not compared)

    @contextmanager
    def attached(self, model):
        """Run the model's blocks through this cache inside the block (one sampling run)."""
        model.blocks_hook = self.run
        try:
            yield self
        finally:
            del model.blocks_hook  # back to the class default: no hook

    def reset(self) -> None:
        self._first_residual = self._rest_residual = None

    @property
    def may_skip(self) -> bool:
        return self.threshold > 0 and self.warmup_steps <= self.step < self.total_steps - self.final_steps

    def stats(self) -> dict:
        total = self.full_steps + self.cached_steps
        return {"threshold": self.threshold, "full_steps": self.full_steps, "cached_steps": self.cached_steps,
                "transformer_evals": self.full_steps, "steps": total,
                "eval_reduction": (total / self.full_steps) if self.full_steps else float("nan"),
                "changes": [round(c, 6) for c in self.changes]}

    def run(self, x: torch.Tensor, block: Callable[[int, torch.Tensor], torch.Tensor], depth: int) -> torch.Tensor:
        """Run blocks 0..depth-1 on x (block(i, x) -> x), skipping 1..depth-1 when allowed."""
        x0 = x
        x = block(0, x)
        first = x - x0
        prev = self._first_residual
        change = float("nan")
        if prev is not None and prev.shape == first.shape and self._rest_residual is not None:
            change = float((first - prev).abs().mean() / prev.abs().mean().clamp_min(1e-12))
        self.changes.append(change)
        skip = self.may_skip and change == change and change < self.threshold
        self.step += 1
        if skip:
            self.cached_steps += 1
            return x + self._rest_residual
        x1 = x
        for i in range(1, depth):
            x = block(i, x)
        self._first_residual = first
        self._rest_residual = x - x1
        self.full_steps += 1
        return x
