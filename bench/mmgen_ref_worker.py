"""Times the *reference* MMGen sampler; run by `python -m bench.mmgen` with the reference venv's python.

Imports nothing from unidiff_core: it runs in the reference's own virtual environment and imports the
reference code through the developer tools' exporter (`mmgen_ref_run.import_reference()`, unmodified
reference modules). Nothing of the reference is copied into this repository.

The reference's inference path: `exp_sample.build_model` (EMA weights of the released-format .pt), then
`torch.manual_seed(seed)` and `samplers.euler_maruyama_sampler` on the given start latents. A forward
pre-hook stamps each model call, so a step is the interval between two model calls (model + sampler
arithmetic), as for our side.

    <venv>/bin/python bench/mmgen_ref_worker.py --tools DIR --checkpoint FILE.pt --inputs FILE --out FILE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path


def _stamp():
    """(wall, system busy ticks, own CPU ticks): as bench.machine.stamp, kept standalone here."""
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
    parser.add_argument("--tools", required=True, help="folder holding mmgen_ref_run.py")
    parser.add_argument("--checkpoint", required=True, help="released-format .pt")
    parser.add_argument("--inputs", required=True, help="safetensors with the start latents + JSON metadata")
    parser.add_argument("--out", required=True, help="output safetensors (final latents); timings go to OUT.json")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    if args.threads:
        torch.set_num_threads(args.threads)
    # This script's folder (bench/) is first on sys.path and its models.py would shadow the reference's models/.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(Path(args.tools).resolve()))
    import mmgen_ref_run as rr  # noqa: E402  (the tools' exporter and import shims)

    rr.ensure_reference_export()
    ref = rr.import_reference()
    rr.register_tiny_models(ref)
    with safe_open(args.inputs, framework="pt") as f:
        meta = json.loads(f.metadata()["bench"])
        latents = f.get_tensor("latents")
        labels = f.get_tensor("labels")

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        model, _, _, path_type, _ = ref.exp_sample.build_model(argparse.Namespace(ckpt=args.checkpoint,
                                                                                  fused_attn=None), torch.device("cpu"))
    load_s = time.perf_counter() - t0
    stamps = []
    model.register_forward_pre_hook(lambda module, inputs: stamps.append(_stamp()))
    torch.manual_seed(meta["seed"])
    with torch.no_grad():
        out = ref.samplers.euler_maruyama_sampler(model=model, latents=latents, y=labels, num_steps=meta["steps"],
                                                  path_type=path_type, condition_task=meta["condition"],
                                                  t_blend_start=meta["t_blend"], cfg_scale=meta["cfg"])
    stamps.append(_stamp())
    save_file({"latents": out.to(torch.float32).contiguous()}, args.out)
    Path(args.out + ".json").write_text(json.dumps({
        "stamps": stamps, "load_s": load_s, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "reference_commit": rr.reference_commit(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
