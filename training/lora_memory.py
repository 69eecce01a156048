"""Memory of a LoRA run on the real 2.8B OneDiffusion, computed: python -m training.lora_memory [--rank 16 ...]

What the trainer holds on the device for `--init OneDiffusion --lora-rank R --mixed-precision bf16`:

* parameters: of the real NextDiT config (`config.REAL_CONFIG`) built on the meta device (no memory, exact);
  the frozen transformer, T5-XL encoder and SD3 VAE in bf16 / bf16 / fp32 (the trainer's --lora bf16 path);
* the LoRA's own state, all float32: weights, gradients, AdamW's two moments and the EMA copy (20 bytes
  a parameter);
* activations kept for the backward pass, per sample, MEASURED on one block of the real width: the bytes
  autograd saves (torch.autograd.graph.saved_tensors_hooks, weights excluded) for a forward under bf16
  autocast with the LoRA in place, at three token counts, fitted exactly by a + b N + c N^2 (c: the
  soft-capped self-attention keeps its float32 N x N logits; b: everything per token) and extrapolated
  to the tokens of a 1024² frame. With gradient checkpointing (`--gradient-checkpointing`) only each
  block's input is kept, plus one block's activations while it is recomputed.

Not counted: the CUDA context and allocator slack, transient buffers of the backward pass, the embedders
and the final layer (a few MB). Printed as a table; --json for the numbers.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from unidiff_core.onediffusion.config import REAL_CONFIG, SD3_VAE_PARAMS, T5_XL_ENCODER_PARAMS, NextDiTConfig
from unidiff_core.onediffusion.loading import build_on_meta
from unidiff_core.onediffusion.lora import target_modules
from unidiff_core.onediffusion.model import TransformerBlock

GIB = 2 ** 30
LORA_STATE_BYTES = 4 * 5  # float32 weight, gradient, Adam m, Adam v, EMA
MEASURE_TOKENS = (32, 64, 128)


def real_config() -> NextDiTConfig:
    return NextDiTConfig(**REAL_CONFIG)


def parameter_counts(rank: int, cfg: NextDiTConfig | None = None) -> dict:
    """Parameters of the transformer (meta device), of its default LoRA targets and of a rank-`rank` LoRA."""
    model = build_on_meta(cfg or real_config())
    modules = dict(model.named_modules())
    targets = target_modules(model)
    lora = sum(rank * (modules[n].in_features + modules[n].out_features) for n in targets)
    return {"transformer": sum(p.numel() for p in model.parameters()), "target_layers": len(targets),
            "target_weights": sum(modules[n].weight.numel() for n in targets), "lora": lora}


def tokens_per_frame(cfg: NextDiTConfig, resolution: int) -> int:
    return (resolution // 8 // cfg.patch_size[1]) * (resolution // 8 // cfg.patch_size[2])


def _saved_bytes(block, cfg, tokens: int, caption_tokens: int, device) -> int:
    """Bytes autograd keeps for one sample's forward through `block` (weights excluded, each storage once)."""
    torch.manual_seed(0)
    weights = {p.untyped_storage().data_ptr() for p in block.parameters()}
    seen, total = set(), [0]

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights and ptr not in seen:
            seen.add(ptr)
            total[0] += t.untyped_storage().nbytes()
        return t

    d, hd = cfg.hidden_size, cfg.head_dim
    device = torch.device(device)
    x = torch.randn(1, 1, tokens, d, dtype=torch.bfloat16, device=device, requires_grad=True)
    c = torch.randn(1, 1, cfg.cond_width, dtype=torch.bfloat16, device=device)
    states = torch.randn(1, caption_tokens, cfg.caption_channels, dtype=torch.bfloat16, device=device)
    angles = torch.rand(tokens, hd // 2, device=device)
    mask = torch.ones(1, 1, 1, caption_tokens, dtype=torch.bool, device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast(device.type, torch.bfloat16):
        k, v = block.attention.caption_kv(block.attention_y_norm(states))
        block(x, c, (angles.cos(), angles.sin()), k, v, mask)
    return total[0]


def measure_block(rank: int, caption_tokens: int, cfg: NextDiTConfig | None = None, tokens=MEASURE_TOKENS,
                  device="cpu") -> dict:
    """One real-width block with a rank-`rank` LoRA in bf16 under `device`'s autocast: saved bytes at `tokens`,
    and the exact quadratic fit (every saved tensor's size is affine or quadratic in the token count)."""
    from .peft_lora import add_lora

    cfg = cfg or real_config()
    torch.manual_seed(0)
    block = TransformerBlock(cfg).to(device=device, dtype=torch.bfloat16)
    wrapper = torch.nn.Module()
    wrapper.layers = torch.nn.ModuleList([block])  # target_modules looks inside "layers.*"
    add_lora(wrapper, rank, float(rank))
    measured = [_saved_bytes(block, cfg, n, caption_tokens, device) for n in tokens]
    a, b, c = np.linalg.solve(np.array([[1, n, n * n] for n in tokens], dtype=float), np.array(measured, float))
    return {"device": str(device), "tokens": list(tokens), "saved_bytes": measured, "constant": a, "per_token": b,
            "per_token_pair": c}


def cuda_autocast_fit(cpu_fit: dict, cfg: NextDiTConfig | None = None) -> dict:
    """The CPU fit moved to CUDA autocast, whose op lists differ in one place that matters here: CUDA autocast
    runs softmax in float32, CPU autocast in bf16, so the soft-capped attention keeps 4 more bytes per head and
    token pair (its softmax output; the logits, their tanh and the bf16 probabilities are bf16 on both).
    `measure_block(..., device="cuda")` measures it directly where a GPU is at hand."""
    cfg = cfg or real_config()
    return dict(cpu_fit, device="cuda (from the cpu measurement)",
                per_token_pair=cpu_fit["per_token_pair"] + 4 * cfg.num_heads)


def activation_bytes(fit: dict, tokens: int) -> float:
    return fit["constant"] + fit["per_token"] * tokens + fit["per_token_pair"] * tokens ** 2


def memory_table(rank: int = 16, resolution: int = 1024, batch: int = 1, caption_tokens: int = 128,
                 fit: dict | None = None) -> dict:
    cfg = real_config()
    counts = parameter_counts(rank, cfg)
    fit = fit or measure_block(rank, caption_tokens, cfg)
    n = tokens_per_frame(cfg, resolution)
    block = activation_bytes(fit, n)
    block_input = n * cfg.hidden_size * 2  # bf16 residual stream
    fixed = {
        "transformer weights (bf16, frozen)": counts["transformer"] * 2,
        "T5-XL encoder (bf16, frozen)": T5_XL_ENCODER_PARAMS * 2,
        "SD3 VAE (fp32, encodes the frames)": SD3_VAE_PARAMS * 4,
        f"LoRA rank {rank}: weights, grads, Adam, EMA (fp32)": counts["lora"] * LORA_STATE_BYTES,
    }
    activations = {"no checkpointing": batch * cfg.depth * block,
                   "gradient checkpointing": batch * (cfg.depth * block_input + block)}
    return {"rank": rank, "resolution": resolution, "batch": batch, "caption_tokens": caption_tokens,
            "tokens_per_frame": n, "parameters": counts, "fixed_bytes": fixed, "activation_bytes": activations,
            "block_fit": fit, "total_bytes": {k: sum(fixed.values()) + v for k, v in activations.items()}}


def format_table(t: dict) -> str:
    p = t["parameters"]
    fit = t["block_fit"]
    lines = [f"Real OneDiffusion NextDiT: {p['transformer'] / 1e9:.3f} B parameters; LoRA on {p['target_layers']} "
             f"attention/feed-forward linears ({p['target_weights'] / 1e9:.3f} B weights) at rank {t['rank']}: "
             f"{p['lora'] / 1e6:.2f} M parameters",
             f"{t['resolution']}² frame = {t['tokens_per_frame']} tokens; batch {t['batch']} (one generated frame "
             f"each, text2image); {t['caption_tokens']} caption tokens", "",
             "| what | GiB |", "|---|---|"]
    lines += [f"| {name} | {value / GIB:.2f} |" for name, value in t["fixed_bytes"].items()]
    for name, value in t["activation_bytes"].items():
        lines.append(f"| activations, {name} | {value / GIB:.2f} |")
    for name, value in t["total_bytes"].items():
        lines.append(f"| **total, {name}** | **{value / GIB:.1f}** |")
    lines += ["", f"One block, saved bytes measured on {fit['measured_on']} at {fit['tokens']} tokens: "
              f"{fit['saved_bytes']} -> {fit['per_token'] / 1024:.1f} KiB per token + {fit['per_token_pair']:.0f} B "
              f"per token pair (the soft-capped self-attention's N x N tensors, all heads; used: {fit['device']})"]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--batch", type=int, nargs="*", default=[1, 4])
    p.add_argument("--caption-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where one block is measured (on the CPU the fit is moved to CUDA autocast, see cuda_autocast_fit)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    fit = measure_block(a.rank, a.caption_tokens, device=a.device)
    fit["measured_on"] = fit["device"]
    if fit["device"] == "cpu":
        fit = cuda_autocast_fit(fit)
    tables = [memory_table(a.rank, a.resolution, b, a.caption_tokens, fit) for b in a.batch]
    if a.json:
        print(json.dumps(tables, indent=2, default=float))
    else:
        print("\n\n".join(format_table(t) for t in tables))


if __name__ == "__main__":
    main()
