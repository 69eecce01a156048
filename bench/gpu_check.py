"""One-shot GPU check: the real-size NextDiT (random weights, bf16) denoising 1024² text-to-image.

    bash bench/gpu_check.sh                 # on a machine with a CUDA GPU, from the repository root
    python -m bench.gpu_check --small --device cpu   # a seconds-long dry run of the same code path
    COMFYUI_PATH=<ComfyUI folder> python -m bench.gpu_check --variants partial --partial-gib 0,4

Prints, per variant (bf16; bf16 with a fused soft-capped attention through flex_attention when
available; fp8 e4m3 weights), the median step time, the achieved TFLOP/s (analytic FLOPs of this
engine's forward, bench/flops.py) against a measured bf16 matmul peak, and the peak GPU memory;
then the memory of a T5-XL-size encoder and of SD3-size VAE decodes (whole and tiled), and the
1024² memory estimate of bench/memory.py next to the measurement. JSON goes to $OUT/gpu_check.json
(or --json). Needs only torch (diffusers/transformers parts are skipped when absent).

The `partial` variant (needs ComfyUI on COMFYUI_PATH) builds the transformer the way the Loader does
inside ComfyUI (comfy.ops layers, ComfyUI's attention, a ModelPatcher), keeps its weights on the CPU and
has the ModelPatcher load only `--partial-gib` GiB of them onto the GPU, as it does on a card too small
for the model (--lowvram, --reserve-vram): the rest is cast onto the GPU layer by layer. It reports the
peak GPU memory and step time for each budget.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.flops import ForwardShape, parameter_count, unidiff_forward_flops  # noqa: E402
from unidiff_core.onediffusion import model as model_module  # noqa: E402
from unidiff_core.onediffusion.config import REAL_CONFIG, NextDiTConfig  # noqa: E402
from unidiff_core.onediffusion.model import NextDiT  # noqa: E402
from unidiff_core.common.samplers import FlowSchedule, sample_euler  # noqa: E402
from unidiff_core.onediffusion.denoiser import MultiFrameDenoiser  # noqa: E402

GIB = 2 ** 30


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mem_stats(device) -> dict:
    if device.type != "cuda":
        return {}
    return {"allocated_gib": torch.cuda.memory_allocated(device) / GIB,
            "peak_allocated_gib": torch.cuda.max_memory_allocated(device) / GIB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / GIB}


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def matmul_peak(device, dtype, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    del a, b
    return 2 * n ** 3 / statistics.median(times)


def build_model(cfg: NextDiTConfig, device, dtype, seed: int = 0, operations=None, attention=None) -> NextDiT:
    """Random weights straight on the device (dense: gates and FFN outputs non-zero)."""
    with torch.device("meta"):
        model = NextDiT(cfg, operations, attention)
    model = model.to(dtype).to_empty(device=device)  # allocate once, directly in dtype
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.normal_(0, p.shape[-1] ** -0.5, generator=g)
            elif name.endswith("weight") and ("norm" in name or "y_embedder.0" in name):
                p.normal_(1.0, 0.1, generator=g)
            else:
                p.normal_(0, 0.3, generator=g)
    return model.eval().requires_grad_(False)


def schedule(steps: int, tokens: int):
    try:
        from unidiff_core.onediffusion.schedule import make_schedule

        ts, sig, _ = make_schedule(steps, tokens)
        return ts, sig
    except Exception:  # noqa: BLE001 - diffusers absent: same formula, computed here (timing only)
        mu = 0.5 + (1.15 - 0.5) / (4096 - 256) * (tokens - 256)
        raw = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
        sig = math.exp(mu) / (math.exp(mu) + (1 / raw - 1))
        sig = sig.float()
        return sig * 1000, torch.cat([sig, torch.zeros(1)])


def flex_softcap_attention():
    """A fused soft-capped attention (flex_attention + score_mod), or None where unavailable."""
    try:
        from torch.nn.attention.flex_attention import flex_attention
    except ImportError:
        return None
    compiled = torch.compile(flex_attention, dynamic=False)

    def softcap(score, b, h, q_idx, kv_idx):
        return model_module.SOFTCAP * torch.tanh(score / model_module.SOFTCAP)

    def attention(q, k, v, cap=model_module.SOFTCAP, **_):
        return compiled(q, k, v, score_mod=softcap)

    return attention


def denoise(model, cfg, device, res: int, steps: int, guidance: float, caption: tuple[int, int]) -> dict:
    g = torch.Generator(device="cpu").manual_seed(1)
    h = w = res // 8
    batch = 2 if guidance > 1 else 1
    states = torch.randn(batch, 300, cfg.caption_channels, generator=g)
    mask = torch.zeros(batch, 300, dtype=torch.long)
    for i, length in enumerate(caption[-batch:]):
        mask[i, :length] = 1
    latents = torch.randn(1, 1, 16, h, w, generator=g).to(device, model.dtype)
    tokens = (h // 2) * (w // 2)
    timesteps, sigmas = schedule(steps, tokens)
    reset_peak(device)
    stamps = []

    def callback(i, n, lat, x0):
        sync(device)
        stamps.append(time.perf_counter())

    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        context = model.prepare_context(states.to(device, model.dtype), mask.to(device))
        denoiser = MultiFrameDenoiser(model, context, latents, torch.ones(1, dtype=torch.bool, device=device),
                                      timesteps[-1].to(device), guidance)
        sample_euler(denoiser, latents, FlowSchedule(timesteps.to(device), sigmas.to(device)), callback=callback)
    step_s = [b - a for a, b in zip(stamps, stamps[1:])]
    shape = ForwardShape(batch=batch, frames=1, latent_h=h, latent_w=w, caption_tokens=max(caption[-batch:]))
    flops = unidiff_forward_flops(cfg, shape)["total"]
    step = statistics.median(step_s) if step_s else float("nan")
    return {"first_step_s": stamps[0] - t0, "step_s": step_s, "step_median_s": step, "tflop_per_step": flops / 1e12,
            "tflops": flops / step / 1e12, **mem_stats(device)}


def t5_memory(device, dtype, small: bool) -> dict:
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=32128, d_model=2048 if not small else 64, d_kv=64 if not small else 16,
                   d_ff=5120 if not small else 128, num_layers=24 if not small else 2, num_heads=32 if not small else 4,
                   feed_forward_proj="gated-gelu")
    reset_peak(device)
    with torch.device("meta"):
        t5 = T5EncoderModel(cfg)
    t5 = t5.to_empty(device=device).to(dtype).eval()
    with torch.no_grad():
        for p in t5.parameters():
            p.normal_(0, 0.02)
    weights = sum(p.numel() * p.element_size() for p in t5.parameters())
    ids = torch.randint(0, 32000, (2, 300), device=device)
    with torch.no_grad():
        t5(ids, attention_mask=torch.ones_like(ids))
    out = {"params": sum(p.numel() for p in t5.parameters()), "weights_gib": weights / GIB, **mem_stats(device)}
    del t5
    return out


def vae_memory(device, res: int, dtype, tile: int | None) -> dict:
    import diffusers
    from diffusers import AutoencoderKL

    from bench.models import SD3_VAE

    diffusers.utils.logging.set_verbosity_error()

    reset_peak(device)
    vae = AutoencoderKL(**SD3_VAE).to(device, dtype).eval()
    if tile:
        vae.tile_sample_min_size, vae.tile_latent_min_size = tile, tile // 8
        vae.enable_tiling()
    z = torch.randn(1, 16, res // 8, res // 8, device=device, dtype=dtype)
    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        vae.decode(z)
    sync(device)
    out = {"res": res, "dtype": str(dtype), "tile": tile, "seconds": time.perf_counter() - t0, **mem_stats(device)}
    del vae
    return out


def comfy_host(device):
    """ComfyUI (from COMFYUI_PATH) and the pack's nodes/host.py, loaded by path: the pack's `nodes`
    package would clash with ComfyUI's top-level `nodes` module."""
    import importlib.util

    path = os.environ.get("COMFYUI_PATH")
    if not path or not os.path.isdir(os.path.join(path, "comfy")):
        raise RuntimeError("the partial variant needs ComfyUI: set COMFYUI_PATH to a ComfyUI folder")
    if path not in sys.path:
        sys.path.append(path)
    from comfy.cli_args import args

    args.cpu = device.type == "cpu"  # outside main.py no CLI is parsed
    spec = importlib.util.spec_from_file_location("unidiff_host", ROOT / "nodes" / "host.py")
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)
    if not host.available() or host._comfy("comfy.model_patcher") is None:
        raise RuntimeError(f"ComfyUI at {path} does not import (its requirements: einops, psutil, ...)")
    return host


def partial_load(cfg, device, args, caption) -> dict:
    """Peak GPU memory with the ModelPatcher forced to load only part of the transformer."""
    host = comfy_host(device)
    dtype = torch.bfloat16
    ops = host.operations(model_module.OPERATIONS, dtype, dtype)
    cpu = torch.device("cpu")
    model = build_model(cfg, cpu, dtype, operations=ops, attention=host.attention())
    part = host.ManagedPart("transformer", model, device, cpu)
    if not part.streams:
        raise RuntimeError("the transformer built from comfy.ops does not stream")
    out = {"weights_gib": part.patcher.model_size() / GIB}
    for budget in [float(b) for b in args.partial_gib.split(",")]:
        reset_peak(device)
        # What load_models_gpu does on a card without room for the whole model (lowvram_model_memory);
        # 0 = every layer streamed.
        part.patcher.load(device, lowvram_model_memory=max(1, int(budget * GIB)))
        model.compute_device = device
        row = denoise(model, cfg, device, args.res, args.steps, args.guidance, caption)
        row["weights_on_gpu_gib"] = part.patcher.model.model_loaded_weight_memory / GIB
        row["streamed_layers"] = sum(1 for m in model.modules() if getattr(m, "comfy_cast_weights", False))
        out[f"budget_{budget:g}gib"] = row
        part.patcher.unpatch_model(cpu)
        model.compute_device = None
    del model, part
    return out


def run_part(results: dict, name: str, fn):
    try:
        results[name] = fn()
    except Exception as e:  # noqa: BLE001 - one failing part must not lose the others
        results[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
    print(f"[gpu_check] {name}: {json.dumps(results[name], default=str)[:600]}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check")
    p.add_argument("--device", default="cuda")
    p.add_argument("--res", type=int, default=1024)
    p.add_argument("--steps", type=int, default=5, help="denoising steps per variant (the first is warm-up)")
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--depth", type=int, default=16, help="transformer blocks (16 = the real model)")
    p.add_argument("--variants", default="bf16,bf16-flex,fp8,partial")
    p.add_argument("--partial-gib", default="0,4", help="GPU weight budgets of the partial variant, GiB")
    p.add_argument("--small", action="store_true", help="dry run with a narrow model (checks the script, not the GPU)")
    p.add_argument("--json", help="output JSON (default $OUT/gpu_check.json when OUT is set)")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (use --device cpu --small for a dry run)")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg_dict = dict(REAL_CONFIG, depth=args.depth)
    if args.small:
        cfg_dict.update(hidden_size=192, num_heads=4, num_kv_heads=2, caption_channels=64, depth=min(args.depth, 2))
    cfg = NextDiTConfig(**cfg_dict)
    dtype = torch.bfloat16
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "config": cfg.to_dict(), "res": args.res, "steps": args.steps,
               "guidance": args.guidance, "params": parameter_count(cfg)}
    print(f"[gpu_check] {results['device']}, torch {torch.__version__}, NextDiT {results['params']['total'] / 1e9:.2f} B "
          f"params, {args.res}² text-to-image, CFG {args.guidance}, {args.steps} steps per variant", flush=True)
    run_part(results, "matmul_peak_bf16_tflops",
             lambda: matmul_peak(device, dtype, 8192 if not args.small else 512) / 1e12)
    variants = args.variants.split(",")
    reset_peak(device)
    model = build_model(cfg, device, dtype)
    sync(device)
    results["weights_bf16_gib"] = sum(t.numel() * t.element_size() for t in model.parameters()) / GIB
    caption = (40, 120)
    original_attention = model_module.softcapped_attention
    if "bf16" in variants:
        run_part(results, "bf16", lambda: denoise(model, cfg, device, args.res, args.steps, args.guidance, caption))
    if "bf16-flex" in variants:
        flex = flex_softcap_attention()
        if flex is None:
            results["bf16-flex"] = {"error": "flex_attention unavailable"}
        else:
            def flex_run():
                q, k, v = (torch.randn(2, 32 if not args.small else 4, 1024, cfg.head_dim, device=device, dtype=dtype)
                           for _ in range(3))
                diff = float((flex(q, k, v).float() - original_attention(q, k, v).float()).abs().max())
                model_module.softcapped_attention = flex
                try:
                    out = denoise(model, cfg, device, args.res, args.steps, args.guidance, caption)
                finally:
                    model_module.softcapped_attention = original_attention
                out["max_abs_diff_vs_explicit_attention"] = diff
                return out
            run_part(results, "bf16-flex", flex_run)
    if "fp8" in variants:
        def fp8_run():
            from unidiff_core.onediffusion.fp8 import fp8_bytes, quantize_fp8

            quantize_fp8(model, torch.bfloat16)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            out = denoise(model, cfg, device, args.res, args.steps, args.guidance, caption)
            out["weights_gib"] = fp8_bytes(model) / GIB
            return out
        run_part(results, "fp8", fp8_run)
    del model
    reset_peak(device)
    if "partial" in variants:
        run_part(results, "partial", lambda: partial_load(cfg, device, args, caption))
    run_part(results, "t5_xl_encoder_bf16", lambda: t5_memory(device, dtype, args.small))
    vae_res = args.res if not args.small else 128
    run_part(results, "vae_decode_fp32", lambda: vae_memory(device, vae_res, torch.float32, None))
    run_part(results, "vae_decode_fp32_tiled512", lambda: vae_memory(device, vae_res, torch.float32, 512 if not args.small else 64))
    run_part(results, "vae_decode_bf16", lambda: vae_memory(device, vae_res, torch.bfloat16, None))
    try:
        from bench.memory import gpu_estimate_table

        results["estimate"] = gpu_estimate_table(args.res)
    except Exception as e:  # noqa: BLE001
        results["estimate"] = {"error": str(e)}

    print()
    print(f"{'variant':<12}{'step ms':>9}{'TFLOP/step':>11}{'TFLOP/s':>9}{'% bf16 peak':>12}{'peak GiB':>10}{'weights GiB':>12}")
    peak = results.get("matmul_peak_bf16_tflops")
    for name in ("bf16", "bf16-flex", "fp8"):
        r = results.get(name)
        if not r:
            continue
        if "error" in r:
            print(f"{name:<12} error: {r['error'][:100]}")
            continue
        frac = f"{r['tflops'] / peak:.0%}" if isinstance(peak, float) else "?"
        weights = r.get("weights_gib", results["weights_bf16_gib"])
        print(f"{name:<12}{r['step_median_s'] * 1e3:>9.1f}{r['tflop_per_step']:>11.1f}{r['tflops']:>9.1f}{frac:>12}"
              f"{r.get('peak_allocated_gib', float('nan')):>10.2f}{weights:>12.2f}")
    partial = results.get("partial", {})
    if "error" in partial:
        print(f"{'partial':<12} error: {partial['error'][:100]}")
    for key, r in partial.items():
        if key.startswith("budget_"):
            print(f"{'partial':<12}{r['step_median_s'] * 1e3:>9.1f}{r['tflop_per_step']:>11.1f}{r['tflops']:>9.1f}"
                  f"{'':>12}{r.get('peak_allocated_gib', float('nan')):>10.2f}{r['weights_on_gpu_gib']:>12.2f}"
                  f"  ({key[7:]} budget, {r['streamed_layers']} layers streamed)")
    for name in ("t5_xl_encoder_bf16", "vae_decode_fp32", "vae_decode_fp32_tiled512", "vae_decode_bf16"):
        r = results.get(name, {})
        print(f"{name:<26} " + (f"peak {r.get('peak_allocated_gib', float('nan')):.2f} GiB" if "error" not in r
                                 else f"error: {r['error'][:100]}"))
    est = results.get("estimate", {})
    for r in est.get("rows", []):
        print(f"estimate {r['weights']:<22} total ~{r['total_gib']:.1f} GiB (T5 off the GPU ~{r['total_no_t5_gib']:.1f})")
    out = args.json or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if out:
        Path(out).write_text(json.dumps(results, indent=1, default=str))
        print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
