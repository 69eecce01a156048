"""The tiny NextDiT on ComfyUI's layers, attention and ModelPatcher, in a process of its own (ComfyUI's
modules must not leak into the other tests, which check the pack without ComfyUI). Prints one JSON line.

    python tests/comfy_ops_check.py <ComfyUI folder>

Measures: (1) fp32 on comfy.ops + ComfyUI's attention, loaded whole, against the core's default path;
(2) the same layers loaded partially by the ModelPatcher (budget of one byte: every layer stays on the
offload device and is cast per call) against that whole load; (3) fp32-stored weights computing in bf16
through comfy.ops.manual_cast, partially loaded, against the fp32 output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "golden"


def main(comfy_path: str) -> dict:
    sys.path.append(comfy_path)  # append: ComfyUI's top-level `nodes` must not shadow the pack's
    from comfy.cli_args import args

    args.cpu = True  # outside main.py no CLI is parsed; never look for a GPU here
    import comfy.ldm.modules.attention  # noqa: F401  (a missing requirement fails here, by name)
    import comfy.model_patcher  # noqa: F401
    import comfy.ops
    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, str(ROOT / "example_workflows"))
    from make_workflows import load_pack

    load_pack("comfyui_unidiff")
    from comfyui_unidiff.nodes import host
    from comfyui_unidiff.unidiff_core.onediffusion.loading import load_transformer
    from comfyui_unidiff.unidiff_core.onediffusion.model import OPERATIONS

    torch.manual_seed(0)
    torch.set_num_threads(1)
    assert host.available(), "ComfyUI did not import"
    oracle = load_file(GOLDEN / "forward_tiny.safetensors")
    path = GOLDEN / "tiny-onediffusion" / "transformer"
    cpu = torch.device("cpu")

    def run(model, dtype):
        with torch.no_grad():
            return model(oracle["samples5"].to(dtype), oracle["timesteps5"], oracle["encoder_hidden_states"].to(dtype),
                         oracle["encoder_attention_mask"])

    cast = set()
    original = comfy.ops.cast_bias_weight

    def counting(s, *a, **k):
        cast.add(id(s))
        return original(s, *a, **k)

    comfy.ops.cast_bias_weight = counting

    def weighted(model):
        return [m for m in model.modules() if next(m.children(), None) is None
                and next(m.parameters(recurse=False), None) is not None]

    def streamed(model):
        return {id(m) for m in model.modules() if getattr(m, "comfy_cast_weights", False)}

    def rel(a, b):
        return float((a.float() - b.float()).norm() / b.float().norm())

    out = {}
    fp32_default = run(load_transformer(path), torch.float32)

    # (1) + (2): fp32 weights and compute, ComfyUI's layers and attention, whole then partial.
    ops = host.operations(OPERATIONS, torch.float32, torch.float32)
    model = load_transformer(path, operations=ops, attention=host.attention())
    part = host.ManagedPart("transformer", model, cpu, cpu)
    out["streams"] = part.streams
    part.patcher.load(cpu, full_load=True)
    whole = run(model, torch.float32)
    out["whole_vs_default_max_abs"] = float((whole - fp32_default).abs().max())
    out["whole_vs_reference_max_abs"] = float((whole - oracle["output5"]).abs().max())
    part.patcher.unpatch_model(cpu)
    part.patcher.load(cpu, lowvram_model_memory=1)
    out["partial_lowvram"] = bool(part.patcher.model.model_lowvram)
    out["weighted_layers"] = len(weighted(model))
    out["streamed_layers"] = len(streamed(model) & {id(m) for m in weighted(model)})
    cast.clear()
    partial = run(model, torch.float32)
    out["cast_layers"] = len(cast & {id(m) for m in weighted(model)})
    out["partial_equals_whole"] = bool(torch.equal(partial, whole))

    # (3): fp32-stored weights on the offload device, bf16 compute through manual_cast, partially loaded.
    ops = host.operations(OPERATIONS, torch.float32, torch.bfloat16)
    out["bf16_operations"] = ops.Linear.__module__ + "." + ops.Linear.__qualname__
    model = load_transformer(path, operations=ops, attention=host.attention())
    model.compute_dtype = torch.bfloat16
    part = host.ManagedPart("transformer", model, cpu, cpu)
    part.patcher.load(cpu, lowvram_model_memory=1)
    cast.clear()
    bf16 = run(model, torch.bfloat16)
    out["bf16_output_dtype"] = str(bf16.dtype)
    out["bf16_weight_dtypes"] = sorted({str(p.dtype) for p in model.parameters()})
    out["bf16_cast_layers"] = len(cast & {id(m) for m in weighted(model)})
    out["bf16_weighted_layers"] = len(weighted(model))
    out["bf16_rel_err_vs_fp32"] = rel(bf16, fp32_default)
    out["bf16_max_abs_vs_fp32"] = float((bf16.float() - fp32_default).abs().max())
    bf16_whole = run(load_transformer(path, dtype=torch.bfloat16), torch.bfloat16)
    out["bf16_whole_rel_err_vs_fp32"] = rel(bf16_whole, fp32_default)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
