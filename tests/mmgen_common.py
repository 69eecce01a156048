"""Shared pieces of the MMGen tests: fixture paths, the visible cases, the released .pt form."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmgen"
EMA = FIXTURES / "tiny-mmgen" / "0600000.ema.safetensors"
VAE = FIXTURES / "tiny-mmgen" / "vae"
CASES = ["category_cfg4", "category_nocfg_b2", "rgb2x", "depth2x_cfg1.8"]
# More reference cases (made the same way on the development machine): normal and mask conditions, a 1100x600
# mask (BOX halving), t_blend 0.02, one step with CFG, and a second tiny checkpoint (SiT-T/4: patch 4, 2 heads,
# 3 blocks, explicit attention, the RGB fine-tune recipe) with batches of 1 and 3.
EXTRA_CASES = ["extra/normal2x", "extra/mask2x_big", "extra/category_steps1_b2", "extra/t4_rgb2x",
               "extra/t4_category"]
T4_EMA = FIXTURES / "tiny-t4" / "0620000.ema.safetensors"
TASK_OF = {"category": "category", "rgb": "rgb2x", "depth": "depth2x", "normal": "normal2x", "mask": "mask2x"}
TOL = 1e-4


def training_args(ema_file: Path = EMA) -> dict:
    with safe_open(str(ema_file), framework="pt") as f:
        return json.loads(f.metadata()["mmgen_ref"])["args"]


def checkpoint_of(name: str) -> Path:
    """The EMA safetensors a case ran on."""
    c = json.loads((FIXTURES / name / "case.json").read_text())
    return T4_EMA if c["checkpoint"]["id"] == "t4" else EMA


def write_released_pt(path: Path, args_as_dict: bool = False, ema=None, args: dict | None = None) -> Path:
    """The released layout {model, ema, opt, args, steps}; `model` differs from `ema` on purpose (inference
    must use `ema`); `opt` holds AdamW-shaped state."""
    ema = load_file(EMA) if ema is None else ema
    args = training_args() if args is None else args
    model = {k: v + 0.25 for k, v in ema.items()}
    trainable = [k for k in ema if k != "pos_embed"]
    opt = {"state": {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(ema[k]),
                         "exp_avg_sq": torch.zeros_like(ema[k])} for i, k in enumerate(trainable)},
           "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": list(range(len(trainable)))}]}
    torch.save({"model": model, "ema": ema, "opt": opt,
                "args": dict(args) if args_as_dict else argparse.Namespace(**args), "steps": 600000}, path)
    return path


def case(name: str) -> dict:
    """The reference arguments of a case as our CLI / pipeline options."""
    c = json.loads((FIXTURES / name / "case.json").read_text())
    a = c["exp_sample_args"]
    image = next(iter(sorted((FIXTURES / name).glob("input_*.png"))), None)
    return {"task": TASK_OF[a["condition_task"]], "class_label": c["labels"][0], "steps": a["num_steps"],
            "cfg": a["cfg_scale"], "seed": a["global_seed"], "batch_size": c["batch_size"],
            "t_blend": a["t_blend_start"], "image": image}


def final_latents(name: str) -> torch.Tensor:
    return load_file(FIXTURES / name / "final_latents.safetensors")["latents"]
