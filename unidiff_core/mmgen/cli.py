"""`python -m unidiff_core run` for MMGen checkpoints, and `python -m unidiff_core convert CKPT.pt OUT`.

    run --checkpoint PATH --vae VAE_DIR --task category|rgb2x|depth2x|normal2x|mask2x [--class-label N]
        [--image IN.png] --steps N --cfg S --seed N --batch-size B --t-blend-start T --dtype fp32
        --save-latents OUT.safetensors

Writes <out>/<modality>_<b>.png for the four modalities (the given one is its slightly noised VAE round
trip, as the reference writes it), depth_<b>.npy (float map) and the JSON summary line.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..common.checks import dtype_on_device
from ..common.errors import InputError
from .layout import MODALITIES
from .tasks import DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_T_BLEND, TASKS

# OneDiffusion-only flags (name, default) that mean nothing to MMGen.
_FOREIGN = {"prompt": None, "negative_prompt": None, "height": None, "width": None, "denoise_mask": None,
            "azimuths": None, "elevations": None, "caption": "", "mask": None, "boxes": None, "labels": None,
            "seg_mask": [], "photo": None, "ref_image": [], "text_encoder": None, "tokenizer": None}


def add_arguments(run) -> None:
    group = run.add_argument_group("MMGen (checkpoint detected as MMGen: --task " + "|".join(TASKS) + ")")
    group.add_argument("--class-label", type=int, default=None,
                       help="ImageNet class id 0-999, 1000 = none (default: 0 for category, 1000 otherwise)")
    group.add_argument("--t-blend-start", type=float, default=DEFAULT_T_BLEND,
                       help=f"time the given modality is held at, in (0, 1] (default {DEFAULT_T_BLEND})")


def add_convert_parser(sub) -> None:
    convert = sub.add_parser("convert", help="MMGen: released training checkpoint (.pt) -> EMA weights only "
                                             "(folder with config.json + model.safetensors)")
    convert.add_argument("checkpoint", help="the released 0600000.pt / 0620000.pt")
    convert.add_argument("out", help="output folder")
    convert.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])


def convert_main(args) -> int:
    from .loading import convert

    out = convert(args.checkpoint, args.out, args.dtype)
    print(f"EMA weights ({args.dtype}) -> {out}")
    return 0


def _read_image(path: str):
    from PIL import Image

    try:
        image = Image.open(path)
        image.load()
        return image
    except (OSError, ValueError) as e:
        raise InputError("--image", path, f"cannot read the image ({e})", "give a PNG or JPEG file") from None


def run(args, atomic_write) -> int:
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from .pipeline import MMGenPipeline, check_generation

    used = [n for n, d in _FOREIGN.items() if getattr(args, n, d) != d]
    if used:
        flags = ", ".join("--" + n.replace("_", "-") for n in used)
        raise InputError(flags, "set", "OneDiffusion options, not used by an MMGen checkpoint",
                         "drop them; MMGen takes --task, --class-label, --image, --steps, --cfg, --t-blend-start")
    if args.task is None:
        raise InputError("--task", None, "an MMGen checkpoint needs a task", f"use one of {', '.join(TASKS)}")
    if args.task not in TASKS:
        raise InputError("--task", args.task, "not an MMGen task", f"use one of {', '.join(TASKS)}")
    if len(args.image) > 1:
        raise InputError("--image", args.image, "MMGen takes one given image", "give one --image")
    if args.threads:
        torch.set_num_threads(args.threads)
    image = _read_image(args.image[0]) if args.image else None
    spec = TASKS[args.task]
    steps = DEFAULT_STEPS if args.steps is None else args.steps
    options = dict(class_label=spec.default_label if args.class_label is None else args.class_label, steps=steps,
                   cfg=spec.default_cfg if args.cfg is None else args.cfg, seed=args.seed,
                   batch_size=args.batch_size, t_blend=args.t_blend_start,
                   sampler=args.sampler if getattr(args, "sampler_given", False) else DEFAULT_SAMPLER)
    try:  # before any weights are read; the message names the flag
        dtype_on_device(args.dtype, args.device)
        check_generation(spec, image=image, **{k: v for k, v in options.items() if k != "seed"})
    except InputError as e:
        flag = "--" + {"t_blend": "t_blend_start"}.get(e.input_name, e.input_name).replace("_", "-")
        raise InputError(flag, e.value, e.problem, e.fix) from None
    pipe = MMGenPipeline.from_pretrained(args.checkpoint, vae=args.vae, dtype=args.dtype, device=args.device)
    result = pipe.generate(args.task, image=image, **options)
    if args.save_latents:
        atomic_write(Path(args.save_latents), lambda tmp: save_file({"latents": result.latents.contiguous()}, tmp))
        print(f"latents {tuple(result.latents.shape)} -> {args.save_latents}")
    decoded = pipe.decode(result.latents)
    out = Path(args.out)
    for m in MODALITIES:
        for b, pixels in enumerate(decoded[m]):
            path = out / f"{m}_{b}.png"
            atomic_write(path, lambda tmp, p=pixels: Image.fromarray(p.numpy()).save(tmp, format="PNG"))
            print(f"{m} item {b} -> {path}")
    from .outputs import depth_map

    for b, depth in enumerate(depth_map(decoded["depth"])):
        path = out / f"depth_{b}.npy"
        atomic_write(path, lambda tmp, d=depth: np.save(tmp, d.numpy()))
    print(json.dumps({"family": "mmgen", "task": result.task, "labels": result.labels, "steps": result.steps,
                      "cfg": result.cfg, "seed": result.seed, "t_blend_start": args.t_blend_start,
                      "batch_size": args.batch_size}))
    return 0

