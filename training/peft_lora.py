"""LoRA training through Hugging Face `peft`: adapters added to the transformer, read back into the core's format.

`add_lora` injects peft LoRA layers in place (module names stay the transformer's, so `layers.0.attention.wq`
stays that name and gains `lora_A` / `lora_B`) and freezes everything else; `lora_weights` reads the trained
A and B matrices by those names, which `unidiff_core.onediffusion.lora.save_lora` writes in the pack's file
format (the one rule for the format is there).
"""

from __future__ import annotations

import torch

from unidiff_core.onediffusion.lora import TARGET_MODULES, target_modules

ADAPTER = "default"


def add_lora(transformer: torch.nn.Module, rank: int, alpha: float, targets=TARGET_MODULES) -> list[str]:
    """Inject rank-`rank` adapters into the targeted linears (default: attention and feed-forward of every block);
    returns the adapted module names. Adapter weights are float32 whatever the frozen weights' dtype."""
    from peft import LoraConfig, inject_adapter_in_model

    names = target_modules(transformer, targets)
    if not names:
        raise ValueError(f"no linear layer of the transformer is named {', '.join(targets)}")
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=names, lora_dropout=0.0, bias="none")
    inject_adapter_in_model(config, transformer, adapter_name=ADAPTER)
    for name, p in transformer.named_parameters():
        is_lora = ".lora_A." in name or ".lora_B." in name
        p.requires_grad_(is_lora)
        if is_lora:
            p.data = p.data.float()
    return names


def lora_weights(transformer: torch.nn.Module) -> dict:
    """{module name: (A (rank, in), B (out, rank))} of the injected adapters."""
    from peft.tuners.lora import LoraLayer

    return {name: (m.lora_A[ADAPTER].weight.detach(), m.lora_B[ADAPTER].weight.detach())
            for name, m in transformer.named_modules() if isinstance(m, LoraLayer)}

