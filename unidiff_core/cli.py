"""Command line: `python -m unidiff_core run ...` runs one generation headless;
`python -m unidiff_core tasks` lists the tasks that `run --task NAME` knows."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from .common import checks
from .common.errors import InputError
from .common.samplers import DEFAULT_SAMPLER, sampler_names
from .families import checkpoint_defaults, family_of, resolve_checkpoint
from .mmgen import cli as mmgen_cli
from .mmgen.detect import is_mmgen_checkpoint
from .mmgen.tasks import tasks_text as mmgen_tasks_text


def _finite(text: str) -> float:
    """A float flag: a finite number (argparse's float() takes 'nan' and 'inf')."""
    try:
        return checks.number("value", text)
    except InputError as e:
        raise argparse.ArgumentTypeError(f"{e.problem} (got {text!r}); {e.fix}") from None


def _floats(text: str) -> list:
    """'0,30,none' -> [0.0, 30.0, None] (None marks an unknown camera)."""
    try:
        return checks.numbers(text, "value", allow_none=True)
    except InputError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e.problem}; {e.fix}") from None


def _lora(text: str) -> tuple[str, float]:
    """--lora FILE[:STRENGTH] -> (file, strength); no number after the last ':' = the whole text is the file."""
    path, sep, tail = text.rpartition(":")
    if not sep or not path:
        return text, 1.0
    try:
        float(tail)
    except ValueError:
        return text, 1.0  # e.g. C:\loras\x.safetensors
    try:
        return path, checks.lora_strength(tail, "--lora strength")
    except InputError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e.problem}; {e.fix}") from None


class _Given(argparse.Action):
    """Stores the value and notes that it was given (MMGen's default sampler differs from OneDiffusion's)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, self.dest + "_given", True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unidiff_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one generation")
    model = run.add_argument_group("model")
    model.add_argument("--checkpoint", required=True,
                       help="diffusers-layout folder, a transformer .safetensors file, 'mini' (UniDiff-Mini, the "
                            "small trained model shipped in models/; 64x64) or 'tiny' (random weights: output is "
                            "noise, for smoke runs)")
    model.add_argument("--vae", help="VAE folder or SD3 VAE .safetensors (default: the checkpoint's vae/)")
    model.add_argument("--text-encoder", help="T5 encoder folder (default: the checkpoint's text_encoder/)")
    model.add_argument("--tokenizer", help="T5 tokenizer folder (default: the checkpoint's tokenizer/)")
    model.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    model.add_argument("--device", default="cuda" if _cuda() else "cpu")
    model.add_argument("--threads", type=int, help="CPU threads for torch")
    model.add_argument("--weight-format", default="default", choices=["default", "fp8_e4m3"],
                       help="as the Loader's weight_format: fp8_e4m3 stores the transformer blocks' weights in fp8 "
                            "(a quarter of fp32's bytes), upcast one layer at a time to --dtype (OneDiffusion)")
    model.add_argument("--lora", action="append", default=[], type=_lora, metavar="FILE[:STRENGTH]",
                       help="a LoRA of the transformer (python -m training.train --lora-rank R writes one), merged "
                            "into the loaded weights at STRENGTH (default 1; 0 = off); repeatable")
    gen = run.add_argument_group("generation")
    gen.add_argument("--prompt", default=None, help="full prompt, task token included, e.g. '[[text2image]] a cat' "
                                                   "(with --task: used verbatim instead of the task's template)")
    gen.add_argument("--negative-prompt", default=None, help="default '' (with --task: the task's default)")
    gen.add_argument("--image", action="append", default=[], help="given image, repeatable, in frame order")
    gen.add_argument("--denoise-mask", help="one entry per frame, 1 = generate, 0 = given (default: 1 then "
                                            "a 0 per image)")
    gen.add_argument("--height", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--steps", type=int, default=None, help="default 50 (with --task: the task's default)")
    gen.add_argument("--cfg", type=_finite, default=None, help="guidance scale; <= 1 disables guidance (default 4.0; "
                                                             "with --task: the task's default)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--batch-size", type=int, default=1, help="item b uses seed + b")
    gen.add_argument("--no-crop", action="store_true", help="resize given images without centre crop")
    gen.add_argument("--rope-scale", type=_finite, default=1.0, help="RoPE scale factor (reference: 1.1-1.5 for >3 views)")
    gen.add_argument("--rope-watershed", type=_finite, default=1.0, help="RoPE scale watershed timestep")
    gen.add_argument("--step-cache", type=_finite, default=0.0, metavar="THRESHOLD",
                     help="first-block step cache: skip most of the transformer on steps whose first-block output "
                          "changed by less than THRESHOLD (relative L1, e.g. 0.05-0.1); faster, approximate; 0 = off")
    gen.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=sampler_names() + ["sde"], action=_Given,
                     help="euler (the reference's, default), heun (2nd order, ~2 model calls per step) or dpmpp_2m "
                          "(DPM-Solver++(2M), 2nd order, 1 call per step); MMGen: sde (its reference's "
                          "Euler-Maruyama, default) or those three")
    mv = run.add_argument_group("multi-view (interleaved image/ray frames)")
    mv.add_argument("--azimuths", type=_floats, help="per view, degrees, 'none' = unknown camera, e.g. 0,30,none")
    mv.add_argument("--elevations", type=_floats)
    mv.add_argument("--distance", type=_floats, help="one value or one per view (default 1.7; with --task 1.5, "
                                                     "as the reference demos)")
    mv.add_argument("--focal", type=_finite, default=None, help="normalised focal length (default 1.3887)")
    add_task_arguments(run)
    mmgen_cli.add_arguments(run)
    out = run.add_argument_group("output")
    out.add_argument("--out", default="out", help="folder for the PNGs of generated image frames")
    out.add_argument("--save-latents", help="write the final latents of all frames, key 'latents', (B,F,16,h,w)")
    mmgen_cli.add_convert_parser(sub)
    listing = sub.add_parser("tasks", help="list the tasks of run --task, with their inputs and defaults")
    listing.add_argument("--json", action="store_true", help="print the table as JSON")
    listing.add_argument("--markdown", action="store_true", help="print the table as Markdown (docs/tasks.md)")
    return parser


def add_task_arguments(run) -> None:
    task = run.add_argument_group("tasks (python -m unidiff_core tasks lists them)")
    task.add_argument("--task", help="task name: sets the token, frame layout and denoise mask; --image is the task's "
                                     "given image (the map for X2image, the photo for image2X; views for multi-view)")
    task.add_argument("--caption", default="", help="the caption part of the task's prompt (instruction for "
                                                    "image_editing, target caption for faceid/subject_driven)")
    task.add_argument("--mask", help="inpainting: mask image, white = repaint (same size as --image)")
    task.add_argument("--composite", action="store_true", help="inpainting: paste the result into the original so "
                                                              "unmasked pixels stay exact (composite_*.png)")
    task.add_argument("--feather", type=int, default=8, help="inpainting composite: edge ramp in pixels (default 8)")
    task.add_argument("--fill", default="black", choices=["black", "grey"], help="inpainting: masked-region fill")
    task.add_argument("--boxes", help="boundingbox2image: JSON file or text, [{\"label\", \"box\": [x0,y0,x1,y1]}] "
                                      "in pixels or 0..1 fractions")
    task.add_argument("--box-units", default="auto", choices=["auto", "fraction", "pixel"])
    task.add_argument("--labels", help="semantic/box tasks: comma-separated labels, optional colour: 'cat=cyan,dog'")
    task.add_argument("--seg-mask", action="append", default=[], metavar="LABEL=PATH",
                      help="semanticmap2image: a labelled mask (white = the label), repeatable")
    task.add_argument("--photo", help="canny2image: a photo whose Canny edges become the condition")
    task.add_argument("--canny-low", type=int, default=100)
    task.add_argument("--canny-high", type=int, default=200)
    task.add_argument("--ref-image", action="append", default=[], help="faceid/subject_driven reference, repeatable")
    task.add_argument("--ref-caption", action="append", default=[], help="caption of each --ref-image, in order")
    task.add_argument("--subject", help="subject_driven: the subject's name, e.g. 'cartoon dog'")
    task.add_argument("--image-views", help="multi-view: view index of each --image, e.g. 0,2 (default: first views)")
    task.add_argument("--tolerance", type=_finite, default=None, help="segmentation/boxes: RGB colour tolerance")
    task.add_argument("--min-area", type=int, default=None, help="segmentation/boxes: smallest blob in pixels")


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
    from .onediffusion.tiny import tiny_pipeline

    checks.dtype_on_device(args.dtype, args.device)  # e.g. fp16 on the CPU: refused before any weights are read
    if args.checkpoint == "tiny":
        print("checkpoint 'tiny': random weights, the output is noise (smoke run)", file=sys.stderr)
        from .onediffusion.pipeline import parse_dtype
        pipe = tiny_pipeline(dtype=parse_dtype(args.dtype), device=args.device)
    else:
        pipeline_class = family_of(args.checkpoint).pipeline_class()
        fp8 = {"weight_dtype": "fp8"} if args.weight_format == "fp8_e4m3" else {}
        pipe = pipeline_class.from_pretrained(args.checkpoint, dtype=args.dtype, device=args.device, vae=args.vae,
                                              text_encoder=args.text_encoder, tokenizer=args.tokenizer, **fp8)
    if args.lora:
        from .onediffusion.lora import load_lora, merge_loras

        # Every file is checked against this transformer before any is merged (the CLI's pipeline is its own).
        loras = [(load_lora(path, pipe.transformer), strength) for path, strength in args.lora]
        merge_loras(pipe.transformer, loras)
        for lora, strength in loras:
            print(f"LoRA {lora.path} (rank {lora.rank}, alpha {lora.alpha:g}) merged at strength {strength:g}",
                  file=sys.stderr)
    return pipe


def build_frames(args, images, size):
    from .onediffusion import cameras, layout

    if args.azimuths is not None:
        mask = args.denoise_mask or ",".join("0,0" if i < len(images) else "1,0" for i in range(len(args.azimuths)))
        elevations = args.elevations or [0.0] * len(args.azimuths)
        distance = args.distance if args.distance is not None else [cameras.DEFAULT_DISTANCE]
        distance = distance[0] if len(distance) == 1 else distance
        return layout.multiview_frames(mask, images, args.azimuths, elevations, distance,
                                       focal=args.focal or cameras.DEFAULT_FOCAL, size=size)
    mask = args.denoise_mask or ",".join(["1"] + ["0"] * len(images))
    return layout.frames_from_mask(mask, images)


TASK_ONLY = {"caption": "", "mask": None, "composite": False, "boxes": None, "labels": None, "seg_mask": [],
             "photo": None, "ref_image": [], "ref_caption": [], "subject": None, "image_views": None}


def apply_checkpoint_defaults(args) -> None:
    """'mini' -> its folder; the checkpoint's declared size and negative prompt unless given (so Mini runs at
    its native 64x64, not at a task's 1024x1024 default)."""
    if args.checkpoint == "tiny":
        return
    args.checkpoint = str(resolve_checkpoint(args.checkpoint))
    declared = checkpoint_defaults(args.checkpoint)
    if args.height is None and args.width is None and "height" in declared and "width" in declared:
        args.height, args.width = int(declared["height"]), int(declared["width"])
    if args.negative_prompt is None and "negative_prompt" in declared:
        args.negative_prompt = str(declared["negative_prompt"])


def run(args) -> int:
    apply_checkpoint_defaults(args)
    if args.weight_format != "default":
        if args.checkpoint == "tiny" or is_mmgen_checkpoint(args.checkpoint):
            raise ValueError(f"--weight-format {args.weight_format} is for OneDiffusion checkpoints (Mini included), "
                             f"not {Path(args.checkpoint).name!r}; leave it at default")
        if args.lora:
            raise ValueError(f"--lora merges into the stored weights and --weight-format {args.weight_format} "
                             "stores them in fp8: use one of the two (default weights with --lora)")
    if args.checkpoint != "tiny" and is_mmgen_checkpoint(args.checkpoint):
        if args.lora:
            raise ValueError("--lora applies to OneDiffusion transformers; this checkpoint is MMGen")
        return mmgen_cli.run(args, atomic_write)
    if args.class_label is not None or args.t_blend_start != mmgen_cli.DEFAULT_T_BLEND:
        raise ValueError("--class-label and --t-blend-start are for MMGen checkpoints; this one is OneDiffusion")
    if args.task:
        return run_task(args)
    used = [name for name, default in TASK_ONLY.items() if getattr(args, name) != default]
    if used:
        flags = ", ".join("--" + name.replace("_", "-") for name in used)
        raise ValueError(f"{flags} need(s) --task NAME (python -m unidiff_core tasks lists them); "
                         "without --task give the full --prompt and --image frames")
    import torch
    from PIL import Image

    from .onediffusion import preprocess

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
    steps = 50 if args.steps is None else args.steps
    result = pipe.generate(args.prompt or "", frames, negative_prompt=args.negative_prompt or "", height=height,
                           width=width, steps=steps, guidance=4.0 if args.cfg is None else args.cfg, seed=args.seed,
                           batch_size=args.batch_size, crop=not args.no_crop, rope_scale=args.rope_scale,
                           rope_watershed=args.rope_watershed, step_cache_threshold=args.step_cache,
                           sampler=args.sampler)
    image_frames = [i for i in result.generated if frames[i].kind == "image"]
    write_results(args, result, image_frames, pipe.decode(result.latents, image_frames), steps)
    return 0


def write_results(args, result, image_frames, decoded, steps, extra: dict | None = None):
    """--save-latents, frame{i}_{b}.png of the generated image frames, and the JSON summary line."""
    from PIL import Image
    from safetensors.torch import save_file

    if args.save_latents:
        atomic_write(Path(args.save_latents),
                     lambda tmp: save_file({"latents": result.latents.contiguous()}, tmp))
        print(f"latents {tuple(result.latents.shape)} -> {args.save_latents}")
    out_dir = Path(args.out)
    for index, images_b in zip(image_frames, decoded):
        for b, image in enumerate(images_b):
            path = out_dir / f"frame{index}_{b}.png"
            pixels = (image.numpy() * 255).round().astype("uint8")
            atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
            print(f"frame {index} item {b} -> {path}")
    summary = {"height": result.height, "width": result.width, "steps": steps, "mu": result.mu,
               "timesteps": [round(float(t), 4) for t in result.timesteps]}
    if getattr(result, "step_cache", None):
        summary["step_cache"] = {k: result.step_cache[k] for k in ("threshold", "full_steps", "cached_steps")}
    summary.update(extra or {})
    print(json.dumps(summary))


def _read_image(path: str, flag: str):
    from PIL import Image

    try:
        image = Image.open(path)
        image.load()
        return image
    except (OSError, ValueError) as e:
        raise SystemExit(f"{flag} {path}: cannot read the image ({e})")


def _task_inputs(args, spec):
    """The task's TaskInputs from the command line: files read here, one contribution per flag, merged by
    the core as the Sampler node's frames are (onediffusion/contributions.py)."""
    from .onediffusion import contributions
    from .onediffusion.contributions import Contribution

    images = [_read_image(p, "--image") for p in args.image]
    parts = []
    if spec.takes("references"):  # the references: --ref-image (or --image), with their --ref-caption
        if images and args.ref_image:
            raise ValueError(f"--task {spec.name}: give the references as --ref-image or as --image, not both")
        ref_images = images or [_read_image(p, "--ref-image") for p in args.ref_image]
        captions = args.ref_caption or [""] * len(ref_images)
        if len(captions) != len(ref_images):
            raise ValueError(f"{len(args.ref_caption)} --ref-caption for {len(ref_images)} reference image(s); "
                             "give one caption per reference (or none)")
        if ref_images:
            parts.append(Contribution("--ref-image" if args.ref_image else "--image",
                                      {"references": list(zip(ref_images, captions))}))
    else:
        if args.ref_image:
            parts.append(Contribution("--ref-image", {"references": args.ref_image}))  # refused by the merge
        if images:
            if not spec.multiview and len(images) > 1:
                raise ValueError(f"--task {spec.name} takes one --image, got {len(images)}")
            parts.append(Contribution("--image", {"images": images}))
    flags = {
        "--mask": args.mask and dict(mask=_read_image(args.mask, "--mask"), composite=args.composite,
                                     feather=args.feather),
        "--fill": args.fill != "black" and dict(fill=args.fill),
        "--boxes": args.boxes and dict(boxes=_boxes_text(args.boxes), box_units=args.box_units),
        "--labels": args.labels and dict(labels=args.labels),
        "--seg-mask": args.seg_mask and dict(masks=[_seg_mask(item) for item in args.seg_mask]),
        "--photo": args.photo and dict(photo=_read_image(args.photo, "--photo"), canny_low=args.canny_low,
                                       canny_high=args.canny_high),
        "--subject": args.subject and dict(subject=args.subject),
        "--image-views": args.image_views and dict(
            image_views=[int(checks.number("--image-views", v, 0, None, integer=True))
                         for v in checks.numbers(args.image_views, "--image-views")]),
        "--azimuths": args.azimuths is not None and dict(azimuths=args.azimuths),
        "--elevations": args.elevations is not None and dict(elevations=args.elevations),
        "--distance": args.distance is not None and dict(
            distances=args.distance[0] if len(args.distance) == 1 else args.distance),
        "--focal": args.focal is not None and dict(focal=args.focal),
    }
    parts += [Contribution(flag, given) for flag, given in flags.items() if given]
    return replace(contributions.task_inputs(spec.name, parts), caption=args.caption, prompt=args.prompt,
                   negative_prompt=args.negative_prompt, steps=args.steps, guidance=args.cfg, height=args.height,
                   width=args.width)


def _boxes_text(value: str) -> str:
    """--boxes: a JSON file or the JSON itself."""
    try:
        is_file = Path(value).is_file()
    except OSError:  # JSON text longer than a file name can be
        is_file = False
    return Path(value).read_text() if is_file else value


def _seg_mask(item: str):
    label, sep, path = item.partition("=")
    if not sep:
        raise ValueError(f"--seg-mask {item!r}: expected LABEL=PATH")
    return label.strip(), _read_image(path, "--seg-mask")


def run_task(args) -> int:
    """run --task NAME: build the task's request, generate, decode and write its natural outputs."""
    import torch

    from .onediffusion import tasks
    from .onediffusion.layout import parse_mask
    from .onediffusion.outputs import DEFAULT_MIN_AREA, DEFAULT_TOLERANCE, decode_result, save_task_output

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = tasks.get_task(args.task)
    request = tasks.build_request(spec.name, _task_inputs(args, spec))
    if args.denoise_mask and parse_mask(args.denoise_mask) != request.denoise_mask:
        raise ValueError(f"--denoise-mask {args.denoise_mask} differs from task {spec.name}'s layout "
                         f"{request.denoise_mask}; drop --task for a free-form layout")
    pipe = load_pipeline(args)
    result = pipe.generate(**request.generate_kwargs(), seed=args.seed, batch_size=args.batch_size,
                           crop=not args.no_crop, rope_scale=args.rope_scale, rope_watershed=args.rope_watershed,
                           step_cache_threshold=args.step_cache, sampler=args.sampler)
    output = decode_result(pipe, request, result,
                                 tolerance=DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
                                 min_area=DEFAULT_MIN_AREA if args.min_area is None else args.min_area)
    write_results(args, result, output.image_frames, output.images, request.steps,
                  extra={"task": spec.name, "prompt": request.prompt, "denoise_mask": request.denoise_mask})
    for path in save_task_output(output, args.out, writer=atomic_write):
        print(f"{path.stem} -> {path}")
    return 0


def list_tasks(args) -> int:
    from .onediffusion import tasks

    if args.json:
        print(json.dumps(tasks.tasks_table(), indent=2))
    elif args.markdown:
        print(tasks.tasks_markdown())
    else:
        print(tasks.tasks_text())
        print()
        print(mmgen_tasks_text())
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(args)
        if args.command == "convert":
            return mmgen_cli.convert_main(args)
        if args.command == "tasks":
            return list_tasks(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1
