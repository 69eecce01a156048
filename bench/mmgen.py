"""`python -m bench.mmgen`: MMGen step time side by side with the reference, and peak RSS while loading.

Sections:
  reference  our sampler and the reference's (`exp_sample.build_model` + `euler_maruyama_sampler`, run in
             its own venv as a subprocess) on the same released-format checkpoint, start latents, seed and
             thread count, in the order ours, reference, ours; ratio = our median step / reference median
             step, and the max difference of the final latents (parity).
  load       peak RSS of a fresh process loading a released-format .pt ({model, ema, opt, args, steps}, the
             optimizer state included) for inference, against the bytes of the EMA weights (goal <= 1.3x).

The reference is found as in bench/reference.py: tools folder --ref-tools / $UNIDIFF_MMGEN_REF_TOOLS /
<repo>/../shared/tools/mmgen; venv --ref-venv / $UNIDIFF_MMGEN_REF_VENV / ~/.cache/unidiff-ref-mmgen/venv;
the reference code exported there already or $MMGEN_GIT set. Missing pieces skip the section with the reason.

    python -m bench.mmgen [--quick] [--models tiny SiT-S/2 SiT-B/2] [--load-model SiT-B/2] [--skip load]
    python -m bench.mmgen load FILE.pt      # the measuring child (one JSON line)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import machine

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "mmgen_ref_worker.py"
TINY_EMA = ROOT / "tests" / "fixtures" / "mmgen" / "tiny-mmgen" / "0600000.ema.safetensors"
GB = 2 ** 30


# ---------------------------------------------------------------------------------------------- checkpoints
def training_args(name: str, depth: int) -> dict:
    """The fields the released inference reads, as the release recipe sets them."""
    return {"model": name, "resolution": 256, "num_tasks": 4, "is_mmcat_diff": True, "use_decouple_task": True,
            "use_taskcond_emb": True, "use_decouple_latent": False, "num_classes": 1000, "cfg_prob": 0.1,
            "encoder_depth": min(8, depth), "fused_attn": True, "qk_norm": False, "path_type": "linear"}


def random_ema(name: str, seed: int = 0) -> tuple[dict, dict]:
    """Dense random weights (std 0.02, the fixed pos_embed kept) of a named SiT with the reference's projector
    width (its build_model assumes 2048 -> 768); the tiny test checkpoint for 'tiny'."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from unidiff_core.mmgen.config import named_config
    from unidiff_core.mmgen.model import MMGenSiT

    if name == "tiny":
        with safe_open(str(TINY_EMA), framework="pt") as f:
            args = json.loads(f.metadata()["mmgen_ref"])["args"]
        return load_file(TINY_EMA), args
    config = named_config(name, encoder_depth=min(8, named_config(name).depth))
    model = MMGenSiT(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key != "pos_embed":
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return {k: v.contiguous() for k, v in model.state_dict().items()}, training_args(name, config.depth)


def write_released(path: Path, ema: dict, args: dict, full: bool) -> Path:
    """{model, ema, opt, args (argparse.Namespace, the legacy form), steps}. full: `model` and the two AdamW
    moments are separate tensors, as in the release (4x the EMA bytes); else they share the EMA storage."""
    if full:
        model = {k: v.clone() for k, v in ema.items()}
        trainable = [k for k in ema if k != "pos_embed"]
        opt = {"state": {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(ema[k]),
                             "exp_avg_sq": torch.zeros_like(ema[k])} for i, k in enumerate(trainable)},
               "param_groups": [{"lr": 1e-4, "params": list(range(len(trainable)))}]}
    else:
        model, opt = ema, {"state": {}, "param_groups": []}
    torch.save({"model": model, "ema": ema, "opt": opt, "args": argparse.Namespace(**args), "steps": 600000}, path)
    return path


# ---------------------------------------------------------------------------------------------- reference
def locate(tools: str | None, venv: str | None) -> tuple[Path | None, Path | None, str]:
    tools_dir = Path(tools or os.environ.get("UNIDIFF_MMGEN_REF_TOOLS") or ROOT.parent / "shared" / "tools" / "mmgen")
    if not (tools_dir / "mmgen_ref_run.py").exists():
        return None, None, f"reference tools not found ({tools_dir}/mmgen_ref_run.py)"
    workdir = Path(os.path.expanduser(os.environ.get("MMGEN_REF_WORKDIR", "~/.cache/unidiff-ref-mmgen")))
    python = Path(venv or os.environ.get("UNIDIFF_MMGEN_REF_VENV") or workdir / "venv") / "bin" / "python"
    if not python.exists():
        return None, None, f"reference venv not found ({python}); create it with {tools_dir}/setup_venv.sh"
    if not (workdir / "MMGen" / "exp_sample.py").exists() and not os.environ.get("MMGEN_GIT"):
        return None, None, "reference code not exported and MMGEN_GIT is not set (see the tools README)"
    return python, tools_dir, ""


def bench_inputs(steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Depth-conditioned generation with guidance (task token and both CFG halves exercised), batch 1."""
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 16, 32, 32, generator=g)
    labels = torch.tensor([88])
    meta = {"steps": steps, "seed": seed + 1, "condition": 1, "t_blend": 0.005, "cfg": 1.8}
    return latents, labels, meta


def run_ours(model, latents, labels, meta) -> tuple[list, torch.Tensor]:
    from unidiff_core.mmgen.sampler import MMGenDenoiser, sample_euler_maruyama, sde_schedule

    stamps = []
    handle = model.register_forward_pre_hook(lambda module, inputs: stamps.append(machine.stamp()))
    try:
        denoiser = MMGenDenoiser(model, labels, meta["condition"] + 1, meta["cfg"])
        schedule = sde_schedule(meta["steps"], 16, meta["condition"], meta["t_blend"])
        out = sample_euler_maruyama(denoiser, latents.clone(), schedule,
                                    generator=torch.Generator().manual_seed(meta["seed"]))
        stamps.append(machine.stamp())
    finally:
        handle.remove()
    return machine.intervals(stamps), out.to(torch.float32)


def run_reference(python, tools, checkpoint, latents, labels, meta, threads, timeout=1800) -> dict:
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory(prefix="unidiff-mmgen-ref-") as tmp:
        inputs, out = Path(tmp) / "inputs.safetensors", Path(tmp) / "out.safetensors"
        save_file({"latents": latents.contiguous(), "labels": labels}, str(inputs), metadata={"bench": json.dumps(meta)})
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        cmd = [str(python), str(WORKER), "--tools", str(tools), "--checkpoint", str(checkpoint), "--inputs",
               str(inputs), "--out", str(out), "--threads", str(threads)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError("reference run failed: " + " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:]))
        result = json.loads(Path(str(out) + ".json").read_text())
        result["latents"] = load_file(str(out))["latents"]
        result["steps"] = machine.intervals([tuple(x) for x in result.pop("stamps")])
        result["wall_s"] = wall
        return result


def bench_reference(args, log) -> dict:
    from unidiff_core.mmgen.loading import load_model

    python, tools, why = locate(args.ref_tools, args.ref_venv)
    if python is None:
        log(f"[reference] skipped: {why}")
        return {"skipped": why}
    out = {"python": str(python), "tools": str(tools), "cases": []}
    for name in args.models:
        with tempfile.TemporaryDirectory(prefix="unidiff-mmgen-bench-") as tmp:
            ema, targs = random_ema(name)
            ckpt = write_released(Path(tmp) / "0600000.pt", ema, targs, full=False)
            del ema
            model = load_model(ckpt)
            latents, labels, meta = bench_inputs(args.steps)
            ours_a, lat_ours = run_ours(model, latents, labels, meta)
            ours_samples, ref_samples = ours_a[1:], []  # the first step: warm-up
            try:
                for attempt in range(1 + args.retries):
                    ref = run_reference(python, tools, ckpt, latents, labels, meta, torch.get_num_threads())
                    ref_samples += ref["steps"][1:]
                    ours_b, _ = run_ours(model, latents, labels, meta)
                    ours_samples += ours_b[1:]
                    if not (machine.robust_time(ref_samples)["contended"]
                            or machine.robust_time(ours_samples)["contended"]):
                        break
            except Exception as e:  # noqa: BLE001 - report and go on
                log(f"[reference] {name} failed: {e}")
                out["cases"].append({"model": name, "error": str(e)})
                continue
            ours, theirs = machine.robust_time(ours_samples), machine.robust_time(ref_samples)
            contended = ours["contended"] or theirs["contended"]
            ratio = ours["min_s"] / theirs["min_s"] if contended else ours["median_s"] / theirs["median_s"]
            case = {"model": name, "params": sum(p.numel() for p in model.parameters()), "steps": meta["steps"],
                    "cfg": meta["cfg"], "task": "depth2x", "ours_timing": ours, "ref_timing": theirs,
                    "ours_median_s": ours["median_s"], "ref_median_s": theirs["median_s"], "ratio": ratio,
                    "ratio_basis": "best-of (contended)" if contended else "median of clean steps",
                    "ratio_median": ours["median_s"] / theirs["median_s"], "ratio_min": ours["min_s"] / theirs["min_s"],
                    "contended": contended, "attempts": attempt + 1,
                    "max_abs_diff_final_latents": float((lat_ours - ref["latents"]).abs().max()),
                    "ref_load_s": ref["load_s"], "ref_wall_s": ref["wall_s"],
                    "reference_commit": ref.get("reference_commit")}
            out["cases"].append(case)
            log(f"[reference] {name}: ours {case['ours_median_s'] * 1e3:.1f} ms/step, reference "
                f"{case['ref_median_s'] * 1e3:.1f} ms/step, ratio {ratio:.2f} (best-of {case['ratio_min']:.2f})"
                f"{' (contended)' if contended else ''}, max latent diff {case['max_abs_diff_final_latents']:.1e}")
            del model
    return out


# ---------------------------------------------------------------------------------------------- load RSS
def _load_child(path: str) -> dict:
    """In a fresh process: RSS after imports, then the peak while loading the .pt for inference."""
    from unidiff_core.mmgen.loading import load_model

    # torch imports code for meta-device initialisers on first use (~70 MB RSS, whatever the model size):
    # part of the imports, not of the weights.
    with torch.device("meta"):
        torch.nn.Embedding(2, 2), torch.nn.Linear(2, 2)
    baseline = machine.rss_bytes()
    machine.reset_peak_rss()
    t0 = time.perf_counter()
    model = load_model(path)
    seconds = time.perf_counter() - t0
    peak = machine.peak_rss_bytes()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"baseline_rss_bytes": baseline, "peak_rss_bytes": peak, "rss_after_bytes": machine.rss_bytes(),
            "model_bytes": weights, "seconds": seconds}


def bench_load(args, log) -> dict:
    name = args.load_model
    with tempfile.TemporaryDirectory(prefix="unidiff-mmgen-load-") as tmp:
        ema, targs = random_ema(name)
        ema_bytes = sum(v.numel() * v.element_size() for v in ema.values())
        t0 = time.perf_counter()
        path = write_released(Path(tmp) / "0600000.pt", ema, targs, full=True)
        write_s = time.perf_counter() - t0
        del ema
        proc = subprocess.run([sys.executable, "-m", "bench.mmgen", "load", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError("load child failed: " + proc.stderr.strip()[-400:])
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        file_bytes = path.stat().st_size
    load = child["peak_rss_bytes"] - child["baseline_rss_bytes"]
    out = {"model": name, "file_bytes": file_bytes, "ema_bytes": ema_bytes, "write_s": write_s, **child,
           "load_rss_bytes": load, "load_ratio": load / ema_bytes, "peak_ratio": child["peak_rss_bytes"] / ema_bytes,
           "goal": "peak RSS while loading <= 1.3 x EMA bytes"}
    log(f"[load] {name}: file {file_bytes / GB:.2f} GiB, EMA {ema_bytes / GB:.2f} GiB; RSS peak while loading "
        f"{load / GB:.2f} GiB above the {child['baseline_rss_bytes'] / GB:.2f} GiB of the imports = "
        f"{out['load_ratio']:.2f}x EMA (process peak {out['peak_ratio']:.2f}x), {child['seconds']:.1f} s")
    return out


# ---------------------------------------------------------------------------------------------- report
def render(report: dict) -> str:
    lines = [f"MMGen bench ({report['machine']['cpu']}, {report['machine']['torch_threads']} threads, "
             f"torch {report['machine']['torch']})"]
    ref = report.get("reference")
    if ref is not None:
        if "skipped" in ref:
            lines.append(f"reference: skipped ({ref['skipped']})")
        else:
            lines.append(f"{'vs reference':<14}{'params':>12}{'ours ms':>10}{'ref ms':>10}{'ratio':>7}{'best-of':>8}"
                         f"{'max diff':>10}")
            for c in ref["cases"]:
                if "error" in c:
                    lines.append(f"{c['model']:<14} error: {c['error']}")
                    continue
                lines.append(f"{c['model']:<14}{c['params']:>12,}{c['ours_median_s'] * 1e3:>10.1f}"
                             f"{c['ref_median_s'] * 1e3:>10.1f}{c['ratio']:>7.2f}{c['ratio_min']:>8.2f}"
                             f"{c['max_abs_diff_final_latents']:>10.1e}{'  contended' if c['contended'] else ''}")
            lines.append("  depth2x with CFG 1.8 (batch 2 per call), same checkpoint/latents/seed/threads; a step = "
                         "model call + SDE update; order ours, reference (subprocess in its venv), ours")
    load = report.get("load")
    if load is not None:
        if "error" in load:
            lines.append(f"load: error {load['error']}")
        else:
            lines.append(f"load {load['model']} .pt ({load['file_bytes'] / GB:.2f} GiB, EMA {load['ema_bytes'] / GB:.2f} "
                         f"GiB): RSS while loading {load['load_rss_bytes'] / GB:.2f} GiB = {load['load_ratio']:.2f}x EMA "
                         f"(goal <= 1.3x), process peak incl. imports {load['peak_ratio']:.2f}x")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.mmgen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny + SiT-S/2 vs reference, SiT-S/2 load")
    p.add_argument("--models", nargs="*", help="reference comparison models (default: tiny SiT-S/2 SiT-B/2)")
    p.add_argument("--load-model", help="model of the load-RSS check (default SiT-B/2; SiT-XL/2 = the release, "
                                        "an 11 GB file and ~11 GB of RAM to write it)")
    p.add_argument("--steps", type=int, default=4, help="sampler steps (the first is warm-up)")
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--skip", nargs="*", default=[], choices=["reference", "load"])
    p.add_argument("--ref-tools")
    p.add_argument("--ref-venv")
    p.add_argument("--json", help="output JSON (default bench/results/mmgen-<time>.json)")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        print(json.dumps(_load_child(argv[1])))
        return 0
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.models = args.models or (["tiny", "SiT-S/2"] if args.quick else ["tiny", "SiT-S/2", "SiT-B/2"])
    args.load_model = args.load_model or ("SiT-S/2" if args.quick else "SiT-B/2")
    report = {"machine": machine.describe(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "load_average_start": machine.load_average()}
    if "reference" not in args.skip:
        report["reference"] = bench_reference(args, print)
    if "load" not in args.skip:
        try:
            report["load"] = bench_load(args, print)
        except Exception as e:  # noqa: BLE001 - report and go on
            report["load"] = {"error": str(e)}
    report["load_average_end"] = machine.load_average()
    text = render(report)
    print(text)
    path = Path(args.json) if args.json else Path(__file__).resolve().parent / "results" / (
        "mmgen-" + datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
