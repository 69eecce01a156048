"""Side-by-side timing against the reference implementation, run as a subprocess in its own venv.

The reference is located through the developer tools (`../shared/tools`, see its README):
  * tools folder: --ref-tools, $UNIDIFF_REF_TOOLS, else <repo>/../shared/tools
  * venv: --ref-venv, $UNIDIFF_REF_VENV, else $REF_WORKDIR/venv, else ~/.cache/unidiff-ref/venv
When either is missing the comparison is skipped with the reason. Nothing of the reference is
imported into this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from unidiff_core.common.samplers import FlowSchedule, sample_euler
from unidiff_core.onediffusion.denoiser import MultiFrameDenoiser

from . import machine
from unidiff_core.onediffusion.schedule import DEFAULT_SCHEDULER_CONFIG, make_schedule

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "ref_worker.py"


def locate(tools: str | None = None, venv: str | None = None) -> tuple[Path | None, Path | None, str]:
    """(python of the reference venv, tools folder, reason if unavailable)."""
    tools_dir = Path(tools or os.environ.get("UNIDIFF_REF_TOOLS") or ROOT.parent / "shared" / "tools")
    if not (tools_dir / "ref_tiny_run.py").exists():
        return None, None, f"reference tools not found ({tools_dir}/ref_tiny_run.py)"
    if venv is None:
        venv = os.environ.get("UNIDIFF_REF_VENV")
    if venv is None:
        workdir = Path(os.path.expanduser(os.environ.get("REF_WORKDIR", "~/.cache/unidiff-ref")))
        venv = workdir / "venv"
    python = Path(venv) / "bin" / "python"
    if not python.exists():
        return None, None, f"reference venv not found ({python}); create it with {tools_dir}/ref_setup_venv.sh"
    workdir = Path(os.path.expanduser(os.environ.get("REF_WORKDIR", "~/.cache/unidiff-ref")))
    exported = (workdir / "OneDiffusion" / "onediffusion").exists()
    if not exported and not os.environ.get("ONEDIFFUSION_GIT"):
        return None, None, "reference code not exported and ONEDIFFUSION_GIT is not set (see the tools README)"
    return python, tools_dir, ""


def make_inputs(cfg, frames: int, res: int, guidance: float, steps: int, seed: int = 0,
                caption_lengths=(40, 90)) -> tuple[dict, dict]:
    """Random loop inputs: frame 0 generated, the others given (condition latents); T5-like states."""
    g = torch.Generator().manual_seed(seed)
    h = w = res // 8
    latents = torch.randn(1, frames, 16, h, w, generator=g)
    cond = torch.randn(1, frames, 16, h, w, generator=g)
    n_prompts = 2 if guidance > 1 else 1
    states = torch.randn(n_prompts, 300, cfg.caption_channels, generator=g)
    mask = torch.zeros(n_prompts, 300, dtype=torch.long)
    for i, length in enumerate(caption_lengths[-n_prompts:]):
        mask[i, :length] = 1
    denoise_mask = [1] + [0] * (frames - 1)
    tokens = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    _, _, mu = make_schedule(steps, tokens * sum(denoise_mask), DEFAULT_SCHEDULER_CONFIG, float32_mu=frames > 1)
    tensors = {"latents": latents, "cond_latents": cond, "encoder_hidden_states": states,
               "encoder_attention_mask": mask}
    meta = {"steps": steps, "guidance": guidance, "mu": mu, "denoise_mask": denoise_mask,
            "scheduler": DEFAULT_SCHEDULER_CONFIG, "frames": frames, "res": res}
    return tensors, meta


def run_ours(model, tensors: dict, meta: dict) -> tuple[list[dict], torch.Tensor]:
    """This engine's loop on the same inputs: per-step intervals (first = warm-up) and the final latents."""
    frames = meta["frames"]
    h = tensors["latents"].shape[-2]
    tokens = (h // model.config.patch_size[1]) * (tensors["latents"].shape[-1] // model.config.patch_size[2])
    timesteps, sigmas, _ = make_schedule(meta["steps"], tokens * sum(meta["denoise_mask"]), meta["scheduler"],
                                         float32_mu=frames > 1)
    mask = torch.tensor([bool(m) for m in meta["denoise_mask"]])
    stamps = [machine.stamp()]
    with torch.no_grad():
        context = model.prepare_context(tensors["encoder_hidden_states"], tensors["encoder_attention_mask"])
        denoiser = MultiFrameDenoiser(model, context, tensors["cond_latents"], mask, timesteps[-1], meta["guidance"])
        out = denoiser.impose(sample_euler(denoiser, denoiser.impose(tensors["latents"].clone()),
                                           FlowSchedule(timesteps, sigmas),
                                           callback=lambda i, n, lat, x0: stamps.append(machine.stamp())))
    return machine.intervals(stamps), out


def run_reference(python: Path, tools: Path, checkpoint: Path, tensors: dict, meta: dict, threads: int,
                  timeout: float = 900) -> dict:
    """Run the reference loop in its venv; returns {'step_s', 'load_s', 'latents', 'wall_s', ...}."""
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory(prefix="unidiff-ref-") as tmp:
        inputs = Path(tmp) / "inputs.safetensors"
        out = Path(tmp) / "out.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(inputs), metadata={"bench": json.dumps(meta)})
        env = dict(os.environ)
        env.setdefault("REF_WORKDIR", os.path.expanduser("~/.cache/unidiff-ref"))
        env.pop("PYTHONPATH", None)
        cmd = [str(python), str(WORKER), "--tools", str(tools), "--checkpoint", str(checkpoint), "--inputs",
               str(inputs), "--out", str(out), "--threads", str(threads)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError("reference run failed: " + " | ".join(tail))
        result = json.loads(Path(str(out) + ".json").read_text())
        result["latents"] = load_file(str(out))["latents"]
        result["steps"] = machine.intervals([tuple(x) for x in result.pop("stamps")])
        result["wall_s"] = wall
        return result


if __name__ == "__main__":  # quick manual check: python -m bench.reference
    print(locate())
    sys.exit(0)
