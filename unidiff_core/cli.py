"""Command line: `python -m unidiff_core run ...` runs one generation headless."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def _floats(text: str) -> list:
    """'0,30,none' -> [0.0, 30.0, None] (None marks an unknown camera)."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if part.lower() in ("none", "null", "?", ""):
            values.append(None)
        else:
            try:
                values.append(float(part))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers or 'none'") from None
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unidiff_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one generation")
    model = run.add_argument_group("model")
    model.add_argument("--checkpoint", required=True,
                       help="diffusers-layout folder, a transformer .safetensors file, or 'tiny' (random weights: "
                            "output is noise, for smoke runs)")
    model.add_argument("--vae", help="VAE folder or SD3 VAE .safetensors (default: the checkpoint's vae/)")
    model.add_argument("--text-encoder", help="T5 encoder folder (default: the checkpoint's text_encoder/)")
    model.add_argument("--tokenizer", help="T5 tokenizer folder (default: the checkpoint's tokenizer/)")
    model.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    model.add_argument("--device", default="cuda" if _cuda() else "cpu")
    model.add_argument("--threads", type=int, help="CPU threads for torch")
    gen = run.add_argument_group("generation")
    gen.add_argument("--prompt", default="", help="full prompt, task token included, e.g. '[[text2image]] a cat'")
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--image", action="append", default=[], help="given image, repeatable, in frame order")
    gen.add_argument("--denoise-mask", help="one entry per frame, 1 = generate, 0 = given (default: 1 then "
                                            "a 0 per image)")
    gen.add_argument("--height", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--steps", type=int, default=50)
    gen.add_argument("--cfg", type=float, default=4.0, help="guidance scale; <= 1 disables guidance")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--batch-size", type=int, default=1, help="item b uses seed + b")
    gen.add_argument("--no-crop", action="store_true", help="resize given images without centre crop")
    gen.add_argument("--rope-scale", type=float, default=1.0, help="RoPE scale factor (reference: 1.1-1.5 for >3 views)")
    gen.add_argument("--rope-watershed", type=float, default=1.0, help="RoPE scale watershed timestep")
    mv = run.add_argument_group("multi-view (interleaved image/ray frames)")
    mv.add_argument("--azimuths", type=_floats, help="per view, degrees, 'none' = unknown camera, e.g. 0,30,none")
    mv.add_argument("--elevations", type=_floats)
    mv.add_argument("--distance", type=_floats, help="one value or one per view (default 1.7)")
    mv.add_argument("--focal", type=float, default=None, help="normalised focal length (default 1.3887)")
    out = run.add_argument_group("output")
    out.add_argument("--out", default="out", help="folder for the PNGs of generated image frames")
    out.add_argument("--save-latents", help="write the final latents of all frames, key 'latents', (B,F,16,h,w)")
    return parser


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken torch install must not break --help
        return False


def atomic_write(path: Path, write) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_pipeline(args):
    from .pipeline import UniDiffPipeline
    from .tiny import tiny_pipeline

    if args.checkpoint == "tiny":
        print("checkpoint 'tiny': random weights, the output is noise (smoke run)", file=sys.stderr)
        from .pipeline import parse_dtype
        return tiny_pipeline(dtype=parse_dtype(args.dtype), device=args.device)
    return UniDiffPipeline.from_pretrained(args.checkpoint, dtype=args.dtype, device=args.device, vae=args.vae,
                                           text_encoder=args.text_encoder, tokenizer=args.tokenizer)


def build_frames(args, images, size):
    from . import cameras, layout

    if args.azimuths is not None:
        mask = args.denoise_mask or ",".join("0,0" if i < len(images) else "1,0" for i in range(len(args.azimuths)))
        elevations = args.elevations or [0.0] * len(args.azimuths)
        distance = args.distance if args.distance is not None else [cameras.DEFAULT_DISTANCE]
        distance = distance[0] if len(distance) == 1 else distance
        return layout.multiview_frames(mask, images, args.azimuths, elevations, distance,
                                       focal=args.focal or cameras.DEFAULT_FOCAL, size=size)
    mask = args.denoise_mask or ",".join(["1"] + ["0"] * len(images))
    return layout.frames_from_mask(mask, images)


def run(args) -> int:
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from . import preprocess

    if args.threads:
        torch.set_num_threads(args.threads)
    images = []
    for path in args.image:
        try:
            images.append(Image.open(path))
        except (OSError, ValueError) as e:
            raise SystemExit(f"--image {path}: cannot read the image ({e})")
    height, width = args.height, args.width
    if (height is None) != (width is None):
        raise SystemExit("give both --height and --width, or neither (then the first image picks a ~512² bucket)")
    if height is not None:
        preprocess.check_size(height, width)
    if args.azimuths is not None:
        if height is None:
            height = width = 512
        if height != width:
            raise SystemExit(f"multi-view needs a square size, got --height {height} --width {width}")
    frames = build_frames(args, images, height or 512)
    pipe = load_pipeline(args)
    result = pipe.generate(args.prompt, frames, negative_prompt=args.negative_prompt, height=height, width=width,
                           steps=args.steps, guidance=args.cfg, seed=args.seed, batch_size=args.batch_size,
                           crop=not args.no_crop, rope_scale=args.rope_scale, rope_watershed=args.rope_watershed)
    if args.save_latents:
        atomic_write(Path(args.save_latents),
                     lambda tmp: save_file({"latents": result.latents.contiguous()}, tmp))
        print(f"latents {tuple(result.latents.shape)} -> {args.save_latents}")
    image_frames = [i for i in result.generated if frames[i].kind == "image"]
    out_dir = Path(args.out)
    for index, images_b in zip(image_frames, pipe.decode(result.latents, image_frames)):
        for b, image in enumerate(images_b):
            path = out_dir / f"frame{index}_{b}.png"
            pixels = (image.numpy() * 255).round().astype("uint8")
            atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
            print(f"frame {index} item {b} -> {path}")
    summary = {"height": result.height, "width": result.width, "steps": args.steps, "mu": result.mu,
               "timesteps": [round(float(t), 4) for t in result.timesteps]}
    print(json.dumps(summary))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1
