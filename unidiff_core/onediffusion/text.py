"""T5 prompt encoding: 300 tokens, padded to max length, float32 states plus the attention mask."""

from __future__ import annotations

from collections import OrderedDict

import torch

MAX_TOKENS = 300


class TextEncoder:
    """Tokenizer + T5 encoder with a small cache, so re-running a prompt does not re-encode it."""

    def __init__(self, tokenizer, encoder, cache_size: int = 16):
        self.tokenizer = tokenizer
        self.encoder = encoder
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._cache_size = cache_size

    @property
    def width(self) -> int:
        return self.encoder.config.d_model

    def tokenize(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(prompt, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                                add_special_tokens=True, return_tensors="pt")
        return tokens.input_ids, tokens.attention_mask

    @torch.no_grad()
    def encode_one(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 300, d_model) float32 states on the CPU and the (1, 300) int64 mask."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        cached = self._cache.get(prompt)
        if cached is not None:
            self._cache.move_to_end(prompt)
            return cached
        ids, mask = self.tokenize(prompt)
        device = next(self.encoder.parameters()).device
        states = self.encoder(ids.to(device), attention_mask=mask.to(device))[0].float().cpu()
        self._cache[prompt] = (states, mask)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return states, mask

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch of prompts -> (B, 300, d_model) float32 states and (B, 300) mask."""
        pairs = [self.encode_one(p) for p in prompts]
        return torch.cat([s for s, _ in pairs]), torch.cat([m for _, m in pairs])

    def to(self, device):
        self.encoder.to(device)
        return self
