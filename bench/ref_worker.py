"""Times the *reference* OneDiffusion denoising loop; run by `bench` with the reference venv's python.

This file imports nothing from unidiff_core: it runs in the reference's own virtual environment
(`../shared/tools/ref_setup_venv.sh`) and loads the reference code through the tools' exporter
(`ref_tiny_run.ensure_reference_export()` / `import_reference()`). Nothing of the reference is
copied into this repository.

With one generated frame the loop body follows the reference's text-to-image call (`__call__`:
4-D latents, one timestep per sample); otherwise its multi-frame call (`img2img`): CFG batch by
concatenation, a 5-D per-frame timestep tensor with condition frames at the last scheduled
timestep, the transformer called with the raw T5 states and mask, CFG combination, the diffusers
FlowMatchEuler step on the flattened frames and re-imposition of the condition latents.

    <venv>/bin/python bench/ref_worker.py --tools DIR --checkpoint DIR --inputs FILE --out FILE
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _stamp():
    """(wall, system busy ticks, own CPU ticks): same as bench.machine.stamp, kept standalone here."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
        busy = sum(vals) - vals[3] - vals[4]
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    except (OSError, ValueError, IndexError):
        busy = own = None
    return time.perf_counter(), busy, own


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tools", required=True, help="folder holding ref_tiny_run.py")
    parser.add_argument("--checkpoint", required=True, help="transformer folder (config.json + safetensors)")
    parser.add_argument("--inputs", required=True, help="safetensors with the loop inputs + JSON metadata")
    parser.add_argument("--out", required=True, help="output safetensors (final latents); timings go to OUT.json")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(args.tools).resolve()))
    import ref_tiny_run as rt  # noqa: E402  (the tools' exporter and import shims)

    rt.ensure_reference_export()
    _, NextDiT, _ = rt.import_reference()
    from diffusers import FlowMatchEulerDiscreteScheduler

    import einops

    with safe_open(args.inputs, framework="pt") as f:
        meta = json.loads(f.metadata()["bench"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}

    t0 = time.perf_counter()
    model = NextDiT.from_pretrained(args.checkpoint, torch_dtype=torch.float32).float().eval()
    load_s = time.perf_counter() - t0

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(meta["scheduler"])
    steps = int(meta["steps"])
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=meta["mu"], device="cpu")
    timesteps = scheduler.timesteps
    guidance = float(meta["guidance"])
    cfg = guidance > 1
    latents = tensors["latents"].clone()
    cond_latents = tensors["cond_latents"]
    mask = [int(v) for v in meta["denoise_mask"]]
    cond_indices = [i for i, m in enumerate(mask) if m == 0]
    states, attn_mask = tensors["encoder_hidden_states"], tensors["encoder_attention_mask"]
    if cond_indices:
        latents[:, cond_indices] = cond_latents[:, cond_indices]
    stamps = [_stamp()]
    if mask == [1]:  # one generated frame: the reference's text-to-image call (__call__)
        latents = latents[:, 0]
        with torch.no_grad():
            for t in timesteps:
                model_in = torch.cat([latents] * 2) if cfg else latents
                noise_pred = model(samples=model_in, timesteps=torch.tensor([t] * model_in.shape[0]),
                                   encoder_hidden_states=states, encoder_attention_mask=attn_mask)
                if cfg:
                    uncond, text = noise_pred.chunk(2)
                    noise_pred = uncond + guidance * (text - uncond)
                latents = scheduler.step(noise_pred, t, latents).prev_sample  # becomes (B, 1, C, h, w)
                stamps.append(_stamp())
        timesteps = []  # done
    with torch.no_grad():
        for t in timesteps:
            model_in = torch.cat([latents] * 2) if cfg else latents
            input_t = torch.broadcast_to(einops.repeat(torch.Tensor([t]), "1 -> 1 f 1 1 1", f=model_in.shape[1]),
                                         model_in.shape).clone()
            if cond_indices:
                input_t[:, cond_indices] = scheduler.timesteps[-1]
            noise_pred = model(samples=model_in, timesteps=input_t, encoder_hidden_states=states,
                               encoder_attention_mask=attn_mask)
            if cfg:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + guidance * (text - uncond)
            bs, n_frame = noise_pred.shape[:2]
            noise_pred = einops.rearrange(noise_pred, "b f c h w -> (b f) c h w")
            flat = einops.rearrange(latents, "b f c h w -> (b f) c h w")
            flat = scheduler.step(noise_pred, t, flat).prev_sample
            latents = einops.rearrange(flat, "(b f) c h w -> b f c h w", b=bs, f=n_frame)
            if cond_indices:
                latents[:, cond_indices] = cond_latents[:, cond_indices]
            stamps.append(_stamp())
    save_file({"latents": latents.contiguous()}, args.out)
    Path(args.out + ".json").write_text(json.dumps({
        "stamps": stamps, "load_s": load_s, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "reference_commit": rt.reference_commit(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
