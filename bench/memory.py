"""Memory: peak RSS while loading, GPU memory estimate for 1024² text-to-image, tiled VAE decode.

`python -m bench.memory load FOLDER [--dtype fp32|bf16]` is the subprocess used to measure a load
in a fresh process (prints one JSON line).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from unidiff_core.onediffusion.config import SD3_VAE_PARAMS, T5_XL_ENCODER_PARAMS

GIB = 2 ** 30
ROOT = Path(__file__).resolve().parent.parent



# ---------------------------------------------------------------------------------------------- estimates
def transformer_activation_bytes(cfg, rows_per_item: int, batch: int, caption_tokens: int, act_bytes: int,
                                 max_logits: int = 2 ** 28, chunk: int = 1024) -> dict:
    """Peak transient bytes of one block of this engine's forward (no grad), by phase.

    Attention phase (the larger one): the residual x, the modulated input, q/k/v, rotated q/k (RoPE
    works in float32), K/V repeated to all heads, the output, and, for fp16/bf16 where the soft-capped
    attention is explicit, a float32 copy of K and two float32 logit buffers of one query chunk. fp32
    uses SDPA (flash kernel: no N x N buffer).
    """
    d, hd, heads = cfg.hidden_size, cfg.head_dim, cfg.num_heads
    m = batch * rows_per_item
    md = m * d
    softcap = act_bytes < 4
    q_chunk = min(rows_per_item, chunk, max(1, max_logits // max(1, rows_per_item * batch * heads)))
    logits = batch * heads * q_chunk * rows_per_item * 4 if softcap else 0
    attention = md * act_bytes * 8 + md * 4 * 2 + (md * 4 if softcap else 0) + 2 * logits
    ffn = md * act_bytes * 3 + m * cfg.ffn_hidden_size * act_bytes * 3
    context = cfg.depth * 2 * batch * heads * caption_tokens * hd * act_bytes  # caption K/V, all layers
    rope = rows_per_item * (hd // 2) * 4 * 2
    return {"attention": attention, "ffn": ffn, "context": context, "rope": rope,
            "peak": max(attention, ffn) + context + rope + 2 * md * act_bytes}  # + the next block's output


def vae_decode_bytes(res: int, act_bytes: int, tile: int | None = None) -> int:
    """Rough peak of the SD3 VAE decoder: ~4 tensors of 256 channels at full resolution (per tile)."""
    side = min(res, tile) if tile else res
    return 4 * 256 * side * side * act_bytes


def gpu_estimate(cfg, res: int = 1024, weights: str = "bf16", guidance: float = 4.0, caption_tokens: int = 300,
                 vae_bytes: int = 4, vae_tile: int | None = None) -> dict:
    from .flops import parameter_count

    params = parameter_count(cfg)
    if weights == "fp8":
        rows = cfg.depth * (2 * cfg.hidden_size + 2 * cfg.kv_heads * cfg.head_dim * 2 + 3 * cfg.ffn_hidden_size
                            + 4 * cfg.hidden_size)  # one float32 scale per output row of each fp8 layer
        weight_bytes = params["block_linear"] + rows * 4 + params["other"] * 2
        largest = max(cfg.ffn_hidden_size * cfg.hidden_size, 4 * cfg.hidden_size * cfg.cond_width)
        transient = largest * (4 + 2)  # one layer dequantised: float32 product + bf16 copy
    else:
        weight_bytes = params["total"] * 2
        transient = 0
    batch = 2 if guidance > 1 else 1
    tokens = (res // 16) ** 2
    act = transformer_activation_bytes(cfg, tokens, batch, caption_tokens, 2)
    t5 = T5_XL_ENCODER_PARAMS * 2
    vae_w = SD3_VAE_PARAMS * vae_bytes
    vae_act = vae_decode_bytes(res, vae_bytes, vae_tile)
    denoise = act["peak"] + transient
    resident = weight_bytes + vae_w
    t5_act = 256 * 2 ** 20  # encoding two 300-token prompts
    total = resident + t5 + max(t5_act, denoise, vae_act)
    total_no_t5 = resident + max(t5 + t5_act, denoise, vae_act)  # T5 on the GPU only while encoding
    return {"weights": weights, "res": res, "weights_gib": weight_bytes / GIB, "activations_gib": denoise / GIB,
            "activation_parts_gib": {k: v / GIB for k, v in act.items()}, "t5_gib": t5 / GIB,
            "vae_gib": (vae_w + vae_act) / GIB, "vae_decode_dtype_bytes": vae_bytes, "vae_tile": vae_tile,
            "total_gib": total / GIB, "total_no_t5_gib": total_no_t5 / GIB}


def gpu_estimate_table(res: int = 1024) -> dict:
    from unidiff_core.onediffusion.config import REAL_CONFIG, NextDiTConfig

    cfg = NextDiTConfig(**REAL_CONFIG)
    rows = [gpu_estimate(cfg, res, "bf16"), gpu_estimate(cfg, res, "fp8"),
            gpu_estimate(cfg, res, "bf16", vae_tile=512), gpu_estimate(cfg, res, "fp8", vae_tile=512)]
    for r in rows[2:]:
        r["weights"] += " + tiled VAE"
    return {"rows": rows, "assumptions": "real NextDiT (2.8 B), CFG batch 2, 300 caption tokens, bf16 activations, "
            "T5-XL encoder bf16, SD3 VAE decoding in fp32 (the pipeline default), 1 image", "measured": None}


def validate_activation_estimate(log=print, res: int = 256) -> dict:
    """Peak RSS of one bf16 forward of one real-width block on the CPU (fresh process) vs the formula."""
    proc = subprocess.run([sys.executable, "-m", "bench.memory", "activations", str(res)], capture_output=True,
                          text=True, cwd=str(ROOT), timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"activation measurement failed: {proc.stderr.strip()[-500:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"[memory] activation estimate check (real width, bf16, {res}²): measured "
        f"{out['measured_bytes'] / 2 ** 20:.0f} MiB, formula {out['predicted_bytes'] / 2 ** 20:.0f} MiB")
    return out


def _activations_child(res: int) -> dict:
    from unidiff_core.onediffusion import tiny

    from .machine import PeakRSS
    from .models import REAL_SLICE_CONFIG

    model = tiny.random_transformer(0, torch.bfloat16, **dict(REAL_SLICE_CONFIG, depth=1))
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    states = torch.randn(2, 300, cfg.caption_channels, generator=g)
    mask = torch.ones(2, 300, dtype=torch.long)
    x = torch.randn(2, 1, 16, res // 8, res // 8, generator=g).bfloat16()
    t = torch.tensor([500.0, 500.0])
    with torch.no_grad():
        ctx = model.prepare_context(states.bfloat16(), mask)
        with PeakRSS() as p:  # first forward in a fresh process: freed memory is not yet cached by malloc
            model(x, t, context=ctx)
    est = transformer_activation_bytes(cfg, (res // 16) ** 2, 2, 300, 2)
    predicted = est["peak"] - est["context"]  # the caption context already existed before the measurement
    measured = p.peak - p.before
    return {"res": res, "measured_bytes": measured, "predicted_bytes": predicted, "ratio": measured / predicted}


# ---------------------------------------------------------------------------------------------- load
def _load_child(folder: str, dtype: str) -> dict:
    from .machine import peak_rss_bytes, reset_peak_rss, rss_bytes

    import unidiff_core.onediffusion.loading as loading  # noqa: F401 (imported before the baseline is taken)

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    baseline = rss_bytes()
    reset_peak_rss()
    t0 = time.perf_counter()
    model = loading.load_transformer(Path(folder), dtype=torch_dtype)
    open_s = time.perf_counter() - t0
    total = 0.0
    for p in model.parameters():  # read every page of every weight once (as the first step does), no copies
        total += float(p.detach().reshape(-1)[::512].float().sum())
    load_s = time.perf_counter() - t0
    return {"baseline_rss_bytes": baseline, "peak_rss_bytes": peak_rss_bytes(), "rss_after_bytes": rss_bytes(),
            "open_s": open_s, "load_s": load_s}


def measure_load(which: str, folders: dict, dtype, log=print) -> dict:
    """Load a checkpoint in a fresh process and report its peak RSS against the file size."""
    from unidiff_core.onediffusion.config import REAL_CONFIG, NextDiTConfig

    from .models import model_config, write_checkpoint

    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    key = f"{which}-{name}"
    if key not in folders:
        if which == "real-slice" and dtype == torch.float32 and "real-slice" in folders:
            folders[key] = folders["real-slice"]
        else:
            cfg = NextDiTConfig(**dict(REAL_CONFIG, depth=5)) if which == "generated" else model_config(which)
            folders[key] = Path(tempfile.mkdtemp(prefix=f"unidiff-bench-{key}-"))
            t0 = time.perf_counter()
            write_checkpoint(cfg, folders[key], dtype=dtype)
            log(f"[memory] wrote a {which} {name} checkpoint in {time.perf_counter() - t0:.0f} s")
    folder = folders[key] / "transformer"
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    proc = subprocess.run([sys.executable, "-m", "bench.memory", "load", str(folder), "--dtype", name],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"load measurement failed: {proc.stderr.strip()[-500:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update({"checkpoint_bytes": size, "dtype": name, "peak_over_checkpoint": res["peak_rss_bytes"] / size,
                "delta_over_checkpoint": (res["peak_rss_bytes"] - res["baseline_rss_bytes"]) / size})
    return res


# ---------------------------------------------------------------------------------------------- tiled VAE
def measure_tiled_vae(res: int, log=print, tile: int = 512) -> dict:
    """Peak RSS of an SD3-size VAE decode at res² (fp32, CPU), whole vs tiled, each in a fresh process."""
    out = {"res": res, "tile": tile}
    images = {}
    with tempfile.TemporaryDirectory(prefix="unidiff-vae-") as tmp:
        for mode in ("plain", "tiled"):
            path = Path(tmp) / f"{mode}.pt"
            proc = subprocess.run([sys.executable, "-m", "bench.memory", "vae", str(res), "--tile",
                                   str(tile if mode == "tiled" else 0), "--save", str(path)],
                                  capture_output=True, text=True, cwd=str(ROOT), timeout=1800)
            if proc.returncode != 0:
                raise RuntimeError(f"VAE measurement failed: {proc.stderr.strip()[-500:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            out[f"{mode}_peak_rss_bytes"] = r["peak_rss_bytes"] - r["baseline_rss_bytes"]
            out[f"{mode}_s"] = r["seconds"]
            images[mode] = torch.load(path)
    out["max_abs_diff"] = float((images["plain"] - images["tiled"]).abs().max())
    out["mean_abs_diff"] = float((images["plain"] - images["tiled"]).abs().mean())
    log(f"[memory] VAE decode {res}²: peak {out['plain_peak_rss_bytes'] / GIB:.2f} GiB plain, "
        f"{out['tiled_peak_rss_bytes'] / GIB:.2f} GiB tiled ({tile} px tiles)")
    return out


def _vae_child(res: int, tile: int, save: str | None = None) -> dict:
    from unidiff_core.onediffusion.pipeline import UniDiffPipeline

    from .machine import peak_rss_bytes, reset_peak_rss, rss_bytes
    from .models import vae_for

    vae = vae_for("sd3")
    latents = torch.randn(1, 1, 16, res // 8, res // 8, generator=torch.Generator().manual_seed(0))
    pipe = UniDiffPipeline(None, vae, None)
    baseline = rss_bytes()
    reset_peak_rss()
    t0 = time.perf_counter()
    image = pipe.decode(latents, [0], tile_size=tile or None)[0]
    seconds = time.perf_counter() - t0
    if save:
        torch.save(image, save)
    return {"baseline_rss_bytes": baseline, "peak_rss_bytes": peak_rss_bytes(), "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory")
    sub = p.add_subparsers(dest="cmd", required=True)
    load = sub.add_parser("load")
    load.add_argument("folder")
    load.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    vae = sub.add_parser("vae")
    vae.add_argument("res", type=int)
    vae.add_argument("--tile", type=int, default=0)
    vae.add_argument("--save")
    act = sub.add_parser("activations")
    act.add_argument("res", type=int)
    est = sub.add_parser("estimate")
    est.add_argument("--res", type=int, default=1024)
    args = p.parse_args(argv)
    if args.cmd == "load":
        print(json.dumps(_load_child(args.folder, args.dtype)))
    elif args.cmd == "activations":
        print(json.dumps(_activations_child(args.res)))
    elif args.cmd == "vae":
        print(json.dumps(_vae_child(args.res, args.tile, args.save)))
    else:
        print(json.dumps(gpu_estimate_table(args.res), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
