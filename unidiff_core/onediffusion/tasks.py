"""Every OneDiffusion task as an entry of one table, and the request builder.

A task is a prompt template plus a frame layout. `TASKS[name]` (a `TaskSpec`) holds the task token,
which frames are images or ray maps and which are given or generated, the prompt template, the
default size/steps/guidance/negative prompt, the output decoder and the builder (builders.py) that
forms its request. Adding a task = adding an entry (and, for a new layout, its builder).

    request = build_request("image2depth", TaskInputs(caption="a cat", image=photo))
    result = pipe.generate(**request.generate_kwargs(), seed=0)
    output = decode_result(pipe, request, result)          # output.depth, output.depth_color, ...
    # or in one call:  result, output = run_task(pipe, request, seed=0)

Prompts are "<task token> <task tokens> <caption>" joined by single spaces, empty parts left out
(so image->depth without a caption is exactly "[[depth2image]]"). A full `prompt` given in the
inputs is used verbatim instead (colour tokens in it are still read for decoding).

Free-form runs: `freeform_request(prompt, frames)` takes any ordered list of frames (each given or
generated, image or ray), so zero-shot task combinations work.

Conventions: images are PIL images or float tensors in 0..1, (H, W, 3) or (3, H, W); masks are
float/bool (H, W) with 1 = the region (ComfyUI MASK convention). Every error is an InputError that
names the input, the value received and the fix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from ..common import checks
from ..common.errors import InputError
from . import builders, cameras, outputs, validation
from .conditions import camera_rays
from .palette import parse_color_tokens
from .pipeline import IMAGE, RAY, Frame
from .requests import FrameInput, TaskInputs, TaskRequest

# The demos' negative prompt (PROMPT_GUIDE, inference.py, gradio_demo.py).
NEGATIVE_PROMPT = (
    "monochrome, greyscale, low-res, bad anatomy, bad hands, text, error, missing fingers, extra digit, "
    "fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, "
    "username, blurry, artist name, poorly drawn, bad anatomy, wrong anatomy, extra limb, missing limb, "
    "floating limbs, disconnected limbs, mutation, mutated, ugly, disgusting, blurry, amputation"
)

GIVEN, GENERATED = "given", "generated"
# What a frame holds; decoders are chosen by it.
WHATS = ("image", "masked_image", "blurred_image", "source_image", "reference", "depth", "canny", "hed", "pose",
         "semantic_map", "box_map", "ray")
MULTIVIEW_DISTANCE = 1.5  # the demos' camera distance (training's c2w scaling is 1.7)


@dataclass(frozen=True)
class FrameSlot:
    """One frame of a task's layout: kind 'image'|'ray', role 'given'|'generated', what it holds."""

    kind: str
    role: str
    what: str

    @property
    def generated(self) -> bool:
        return self.role == GENERATED


@dataclass(frozen=True)
class TaskSpec:
    """One task. `frames` is the layout for the default inputs (faceid: one reference; multi-view:
    the default cameras); `variable` says how the layout grows with the inputs."""

    name: str
    token: str
    title: str
    description: str
    frames: tuple[FrameSlot, ...]
    inputs: tuple[str, ...]  # build_request keyword arguments the task reads (required ones first)
    required: tuple[str, ...]  # of those, the ones that must be given (tuples = one of)
    outputs: tuple[str, ...]  # TaskOutput fields decode_result fills
    # decoder of the main output: image | depth | canny | hed | pose | segmentation | boxes | multiview | cameras
    output: str
    prompt_template: str
    default_size: tuple[int, int] | None  # (height, width); None = ~512² aspect bucket of the first given image
    builder: Callable[[Any, TaskInputs], TaskRequest]  # (spec, inputs) -> TaskRequest, see builders.py
    default_steps: int = 50
    default_guidance: float = 4.0
    default_negative: str = NEGATIVE_PROMPT
    multiview: bool = False
    variable: str = ""
    defaults: tuple[tuple[str, Any], ...] = ()  # other input defaults (multi-view cameras)

    @property
    def denoise_mask(self) -> list[int]:
        return [1 if s.generated else 0 for s in self.frames]

    def takes(self, key: str) -> bool:
        """Whether the task reads input `key` (multi-view tasks also take one `image` as view 0)."""
        return key in self.inputs or (self.multiview and key == "image")

    def default(self, key: str, fallback=None):
        return dict(self.defaults).get(key, fallback)


def _img(role, what="image"):
    return FrameSlot(IMAGE, role, what)


def _ray(role):
    return FrameSlot(RAY, role, "ray")


_IMAGE_OUTPUTS = ("images", "primary")
# Per condition: (what, task token, title of the map, condition->image inputs, image->condition outputs, decoder).
_CONDITIONS = {
    "depth": ("depth", "[[depth2image]]", "depth map", ("image",),
              ("depth", "depth_grey", "depth_color"), "depth"),
    "canny": ("canny", "[[canny2image]]", "Canny edge map", (("image", "photo"),), (), "canny"),
    "hed": ("hed", "[[hed2img]]", "HED soft-edge map", ("image",), (), "hed"),
    "pose": ("pose", "[[pose2image]]", "pose skeleton map", ("image",), (), "pose"),
    "semanticmap": ("semantic_map", "[[semanticmap2image]]", "semantic map", (("image", "masks"),),
                    ("masks", "overlay"), "segmentation"),
    "boundingbox": ("box_map", "[[boundingbox2image]]", "bounding-box map", (("image", "boxes"),),
                    ("boxes", "masks", "overlay"), "boxes"),
}


def _condition_tasks() -> list[TaskSpec]:
    specs = []
    for key, (what, token, title, required, extra_out, decoder) in _CONDITIONS.items():
        colour = what in ("semantic_map", "box_map")
        token_kind = "mask" if what == "semantic_map" else "boundingbox"
        extra_in = {"depth": (), "canny": ("photo", "canny_low", "canny_high"), "hed": (), "pose": (),
                    "semanticmap": ("masks", "labels"),
                    "boundingbox": ("boxes", "labels", "box_units", "canvas_size")}[key]
        tokens = f" <#RRGGBB colour {token_kind}: label>..." if colour else ""
        specs.append(TaskSpec(
            name=f"{key}2image", token=token, title=f"{title} -> image",
            description=f"Generate an image that follows a {title}." + (
                " Give the map image with `labels` (colours in palette order), or build it: "
                + ("`masks` = [(label, mask), ...]." if what == "semantic_map"
                   else "`boxes` = [{label, box}, ...].") if colour else "")
            + (" `photo` = any photo: its Canny edges (OpenCV) become the map." if key == "canny" else ""),
            frames=(_img(GENERATED), _img(GIVEN, what)),
            inputs=tuple(dict.fromkeys(("image",) + extra_in + ("caption",))),
            required=required, outputs=_IMAGE_OUTPUTS, output="image",
            prompt_template=f"{token}{tokens} <caption>", default_size=None, builder=builders.cond2image))
        specs.append(TaskSpec(
            name=f"image2{key}", token=token, title=f"image -> {title}",
            description=f"Predict the {title} of an image." + (
                " `labels` name the concepts to find (one palette colour each)." if colour else "")
            + {"depth": " Depth: 0 = near, 1 = far (min-max normalised per image).",
               "semanticmap": " One mask per label, plus a 50/50 overlay on the input.",
               "boundingbox": " Boxes (label, x0, y0, x1, y1, score) as JSON, masks and an overlay."}.get(key, ""),
            frames=(_img(GIVEN), _img(GENERATED, what)),
            inputs=("image", "labels", "caption") if colour else ("image", "caption"),
            required=("image", "labels") if colour else ("image",),
            outputs=_IMAGE_OUTPUTS + extra_out, output=decoder,
            prompt_template=f"{token}{tokens} [caption]", default_size=None, builder=builders.image2cond,
            default_negative=""))
    return specs


def _make_tasks() -> dict[str, TaskSpec]:
    specs = [
        TaskSpec(
            name="text2image", token="[[text2image]]", title="text -> image",
            description="Generate an image from a caption (long, detailed captions work best; 768-1280 px).",
            frames=(_img(GENERATED),), inputs=("caption",), required=("caption",), outputs=_IMAGE_OUTPUTS,
            output="image", prompt_template="[[text2image]] <caption>", default_size=(1024, 1024),
            builder=builders.text2image),
        TaskSpec(
            name="inpainting", token="[[image_inpainting]]", title="inpainting",
            description="Repaint the masked region of an image (mask 1 = repaint). The condition frame is the "
                        "image with the masked region painted black, as in the reference's example. "
                        "`composite=True` pastes the result back so unmasked pixels stay exact (feathered edge). "
                        "`inpaint` = image and mask already built (conditions.inpaint_source).",
            frames=(_img(GENERATED), _img(GIVEN, "masked_image")),
            inputs=("image", "mask", "caption", "composite", "feather", "fill", "inpaint"),
            required=(("image", "inpaint"),),
            outputs=_IMAGE_OUTPUTS + ("composite",), output="image",
            prompt_template="[[image_inpainting]] [caption]", default_size=None, builder=builders.inpainting),
        TaskSpec(
            name="deblurring", token="[[deblurring]]", title="deblurring",
            description="Restore a sharp image from a blurry one.",
            frames=(_img(GENERATED), _img(GIVEN, "blurred_image")), inputs=("image", "caption"),
            required=("image",), outputs=_IMAGE_OUTPUTS, output="image",
            prompt_template="[[deblurring]] [caption]", default_size=None, builder=builders.image_condition),
        TaskSpec(
            name="image_editing", token="[[image_editing]]", title="instruction editing",
            description="Edit an image following an instruction (the caption is the instruction; guidance "
                        "3-3.5 avoids over-saturation).",
            frames=(_img(GENERATED), _img(GIVEN, "source_image")), inputs=("image", "caption"),
            required=("image", "caption"), outputs=_IMAGE_OUTPUTS, output="image",
            prompt_template="[[image_editing]] <instruction>", default_size=None, builder=builders.image_condition,
            default_steps=60, default_guidance=3.2),
        TaskSpec(
            name="faceid", token="[[faceid]]", title="ID customisation",
            description="Generate a new image of a person from 1-3 reference photos, each with a caption "
                        "(30-75 words work best); the size is the bucket of the first reference.",
            frames=(_img(GENERATED), _img(GIVEN, "reference")), inputs=("references", "caption"),
            required=("references",), outputs=_IMAGE_OUTPUTS, output="image",
            prompt_template="[[faceid]] [[img0]] <target caption> [[img1]] <caption 1> [[img2]] <caption 2> "
                            "[[img3]] <caption 3>",
            default_size=None, builder=builders.references, default_steps=75,
            variable="one given reference frame per reference (1-3)"),
        TaskSpec(
            name="subject_driven", token="[[subject_driven]]", title="subject-driven generation",
            description="Put a subject from one photo into a new scene; `subject` names it, the reference "
                        "caption describes the photo.",
            frames=(_img(GENERATED), _img(GIVEN, "reference")), inputs=("references", "subject", "caption"),
            required=("references", "subject"), outputs=_IMAGE_OUTPUTS, output="image",
            prompt_template="[[subject_driven]] <item: <subject>> [[img0]] <target caption> [[img1]] <caption 1>",
            default_size=(512, 512), builder=builders.references, default_steps=70),
        *_condition_tasks(),
        TaskSpec(
            name="image2multiview", token="[[multiview]]", title="image -> multi-view",
            description="Novel views of an object from one (or more) image(s) and the cameras of all views "
                        "(azimuth/elevation relative to view 0, which is 0/0). Square only.",
            frames=(_img(GIVEN), _ray(GIVEN)) + (_img(GENERATED), _ray(GIVEN)) * 3,
            inputs=("images", "azimuths", "elevations", "distances", "focal", "caption"), required=("images",),
            outputs=("images", "primary", "views"), output="multiview",
            prompt_template="[[multiview]] [caption]", default_size=(512, 512), builder=builders.multiview,
            default_steps=60, multiview=True,
            variable="2 frames (image, ray) per view; given images fill the first views",
            defaults=(("azimuths", (0.0, 20.0, 40.0, 60.0)), ("elevations", (0.0, 0.0, 0.0, 0.0)),
                      ("distances", MULTIVIEW_DISTANCE))),
        TaskSpec(
            name="text2multiview", token="[[multiview]]", title="text -> multi-view",
            description="Several views of an object described by the caption, at the given cameras. Square only.",
            frames=(_img(GENERATED), _ray(GIVEN)) * 4,
            inputs=("caption", "azimuths", "elevations", "distances", "focal"), required=("caption",),
            outputs=("images", "primary", "views"), output="multiview",
            prompt_template="[[multiview]] <caption>", default_size=(512, 512), builder=builders.multiview,
            default_steps=60, multiview=True,
            variable="2 frames (image, ray) per view",
            defaults=(("azimuths", (0.0, 30.0, 60.0, 90.0)), ("elevations", (0.0, 10.0, 15.0, 20.0)),
                      ("distances", MULTIVIEW_DISTANCE))),
        TaskSpec(
            name="camera_estimation", token="[[multiview]]", title="camera pose estimation",
            description="Recover the cameras of views 1.. from their images (view 0's camera is the reference; "
                        "give known cameras to pin them, unknown = None). Square only.",
            frames=(_img(GIVEN), _ray(GIVEN), _img(GIVEN), _ray(GENERATED)),
            inputs=("images", "azimuths", "elevations", "distances", "focal", "caption"), required=("images",),
            outputs=("cameras", "views"), output="cameras",
            prompt_template="[[multiview]] [caption]", default_size=(512, 512), builder=builders.multiview,
            default_steps=60, multiview=True,
            variable="2 frames (image, ray) per view; one view per image (at least 2)",
            defaults=(("azimuths", (0.0, None)), ("elevations", (0.0, None)), ("distances", MULTIVIEW_DISTANCE))),
    ]
    return {spec.name: spec for spec in specs}


TASKS: dict[str, TaskSpec] = _make_tasks()
ALIASES = {"depth_estimation": "image2depth", "segmentation": "image2semanticmap",
           "detection": "image2boundingbox", "editing": "image_editing", "image_inpainting": "inpainting",
           "multiview": "image2multiview", "pose_estimation": "camera_estimation", "hed2img": "hed2image"}


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> TaskSpec:
    """The TaskSpec of a task name (or alias); an error lists the valid names."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, list(TASKS) + list(ALIASES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError("task", name, f"unknown task {name!r}{hint}", f"valid tasks: {', '.join(TASKS)}")


# --------------------------------------------------------------------------- requests
def build_request(task: str, inputs: TaskInputs) -> TaskRequest:
    """Form a task's prompt and frames from its natural inputs (a TaskInputs), the way the reference
    forms them: the task's builder lays the frames out, then the run settings default to the task's."""
    spec = get_task(task)
    for key, value in inputs.given().items():
        if not spec.takes(key):
            validation.takes(spec.name, spec.inputs, key, _shown(value))
    width, height = checks.size_pair(inputs.width, inputs.height, auto=None, keyword=True)
    if height is None and spec.default_size is not None:
        height, width = spec.default_size
    caption = (inputs.caption or "").strip()
    if inputs.prompt is None:
        validation.caption(spec.name, "caption" in spec.required, caption)
    request = spec.builder(spec, replace(inputs, caption=caption, height=height, width=width))
    request.task = spec.name
    request.height = request.height if request.height is not None else height
    request.width = request.width if request.width is not None else width
    request.steps = spec.default_steps if inputs.steps is None else int(inputs.steps)
    if request.steps < 1:
        raise InputError("steps", inputs.steps, "must be at least 1", "use 1 or more",
                         text=f"steps={inputs.steps} must be at least 1")
    request.guidance = float(inputs.guidance) if inputs.guidance is not None else spec.default_guidance
    request.negative_prompt = spec.default_negative if inputs.negative_prompt is None else inputs.negative_prompt
    if inputs.prompt is not None:
        request.prompt = inputs.prompt
        if not request.labels:
            request.labels = [c for c, _ in parse_color_tokens(inputs.prompt)]
    return request


def _shown(value):
    """A value as an error shows it: scalars as they are, anything else by its type."""
    return value if isinstance(value, (int, float, str, bool)) else type(value).__name__


# --------------------------------------------------------------------------- free-form
def freeform_request(prompt: str, frames: Sequence, negative_prompt: str = "", height: int | None = None,
                     width: int | None = None, steps: int = 50, guidance: float = 4.0, labels=None,
                     focal: float | None = None) -> TaskRequest:
    """Any ordered frame list with a prompt (zero-shot task combinations).

    frames: FrameInput, pipeline.Frame, or dicts with the FrameInput fields
    ({'kind': 'image', 'image': img} given, {'kind': 'image', 'what': 'depth'} generated,
    {'kind': 'ray', 'camera': (30, 10, 1.5)} given, {'kind': 'ray'} generated).
    labels: colour labels of the prompt (default: read from its colour tokens).
    """
    inputs = []
    for i, f in enumerate(frames):
        if isinstance(f, Frame):
            inputs.append(FrameInput(kind=f.kind, image=f.image, latent=f.latent,
                                     what="image" if f.kind == IMAGE else "ray"))
        elif isinstance(f, FrameInput):
            inputs.append(f)
        elif isinstance(f, dict):
            unknown = set(f) - {"kind", "image", "camera", "latent", "what"}
            if unknown:
                raise InputError(f"frame {i}", sorted(unknown), "unknown keys", "use kind, image, camera, latent, what")
            inputs.append(FrameInput(**f))
        else:
            raise InputError(f"frame {i}", type(f).__name__, "not a frame", "give a FrameInput, Frame or dict")
    if not inputs:
        raise InputError("frames", [], "frames is empty", "give at least one frame")
    for i, f in enumerate(inputs):
        if f.kind not in (IMAGE, RAY):
            raise InputError(f"frame {i}", f.kind, f"kind {f.kind!r} is not a frame kind", "use 'image' or 'ray'")
        if f.kind == IMAGE and (f.camera is not None):
            raise InputError(f"frame {i}", f.camera, "an image frame takes an image, not a camera",
                             "give the image, or make it a ray frame")
        if f.kind == RAY and f.image is not None:
            raise InputError(f"frame {i}", "an image", "a ray frame takes a camera (azimuth, elevation, distance), "
                             "not an image", "give the camera, or make it an image frame")
        if f.what not in WHATS:
            raise InputError(f"frame {i}", f.what, "not what a frame holds", f"use one of {', '.join(WHATS)}")
    focal = float(focal) if focal is not None else cameras.DEFAULT_FOCAL
    ray_given = [i for i, f in enumerate(inputs) if f.kind == RAY and f.camera is not None]
    rays = {}
    if ray_given:
        if height is None or width is None:
            raise InputError("height/width", (height, width), "ray frames need a square size", "give height = "
                             "width (e.g. 512)")
        validation.square(width, height, "ray frames")
        rays = dict(zip(ray_given, camera_rays([inputs[i].camera for i in ray_given], height, focal)))
    out = []
    for i, f in enumerate(inputs):
        if f.kind == RAY:
            out.append(Frame(RAY, latent=rays.get(i, f.latent)))
        else:
            out.append(Frame(IMAGE, image=f.image, latent=f.latent))
    if all(f.given for f in out):
        raise InputError("frames", f"{len(out)} given frames", "every frame is given",
                         "mark at least one frame to generate (no image / no camera)")
    whats = [("ray" if f.kind == RAY else f.what) for f in inputs]
    label_list = validation.label_list(labels) if labels is not None else [c for c, _ in parse_color_tokens(prompt)]
    source = next((f.image for f in inputs if f.image is not None), None)
    return TaskRequest(prompt=prompt, frames=out, negative_prompt=negative_prompt or "", height=height, width=width,
                       steps=int(steps), guidance=float(guidance), task=None, whats=whats, labels=label_list,
                       source_image=source, focal=focal)


# --------------------------------------------------------------------------- running
def run_task(pipe, request: TaskRequest, seed: int = 0, batch_size: int = 1, callback=None, interrupt=None,
             crop: bool = True, rope_scale: float = 1.0, rope_watershed: float = 1.0, **decode_options):
    """generate + decode: returns (GenerationResult, TaskOutput). decode_options go to outputs.decode_result."""
    result = pipe.generate(**request.generate_kwargs(), seed=seed, batch_size=batch_size, callback=callback,
                           interrupt=interrupt, crop=crop, rope_scale=rope_scale, rope_watershed=rope_watershed)
    return result, outputs.decode_result(pipe, request, result, **decode_options)


# --------------------------------------------------------------------------- listings
def _required_text(spec: TaskSpec) -> list[str]:
    return [" or ".join(r) if isinstance(r, tuple) else r for r in spec.required]


def tasks_table() -> list[dict]:
    """The task table as JSON-able rows (what `python -m unidiff_core tasks --json` prints)."""
    rows = []
    for spec in TASKS.values():
        rows.append({
            "name": spec.name, "token": spec.token, "title": spec.title, "description": spec.description,
            "frames": [{"kind": s.kind, "role": s.role, "what": s.what} for s in spec.frames],
            "denoise_mask": spec.denoise_mask, "variable": spec.variable,
            "inputs": list(spec.inputs), "required": _required_text(spec), "outputs": list(spec.outputs),
            "output": spec.output, "prompt_template": spec.prompt_template,
            "default_size": list(spec.default_size) if spec.default_size else "bucket of the first image",
            "default_steps": spec.default_steps, "default_guidance": spec.default_guidance,
            "negative_prompt": "demo negative" if spec.default_negative else "empty",
            "defaults": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.defaults},
        })
    return rows


def tasks_text() -> str:
    """A plain-text listing: one block per task."""
    lines = []
    for row in tasks_table():
        size = row["default_size"]
        size = f"{size[0]}x{size[1]}" if isinstance(size, list) else size
        lines.append(f"{row['name']:<20} {row['token']:<22} {row['title']}")
        frames = ", ".join(("gen " if f["role"] == GENERATED else "given ") + f["what"] for f in row["frames"])
        lines.append(f"    frames:  {frames}"
                     f"  (denoise mask {','.join(map(str, row['denoise_mask']))})"
                     + (f"; {row['variable']}" if row["variable"] else ""))
        lines.append(f"    prompt:  {row['prompt_template']}")
        lines.append(f"    inputs:  {', '.join(row['inputs'])}  (required: {', '.join(row['required'])})")
        lines.append(f"    outputs: {', '.join(row['outputs'])}")
        extra = "".join(f", {k} {v}" for k, v in row["defaults"].items())
        lines.append(f"    defaults: size {size}, steps {row['default_steps']}, guidance {row['default_guidance']}, "
                     f"negative prompt {row['negative_prompt']}{extra}")
    return "\n".join(lines)


def tasks_markdown() -> str:
    """The task table in Markdown (the table of docs/tasks.md)."""
    head = ("| task | token | frames (denoise mask) | prompt | inputs (required in bold) | outputs | "
            "size / steps / cfg / negative |\n|---|---|---|---|---|---|---|")
    rows = [head]
    for row in tasks_table():
        size = row["default_size"]
        size = f"{size[0]}×{size[1]}" if isinstance(size, list) else "bucket"
        required = {r for item in row["required"] for r in item.split(" or ")}
        inputs = ", ".join(f"**{i}**" if i in required else i for i in row["inputs"])
        frames = ", ".join(('gen ' if f['role'] == GENERATED else 'given ') + f['what'] for f in row["frames"])
        mask = "".join(map(str, row["denoise_mask"]))
        prompt = row["prompt_template"].replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{row['name']}` | `{row['token']}` | {frames} (`{mask}`) | {prompt} | {inputs} | "
                    f"{', '.join(row['outputs'])} | {size} / {row['default_steps']} / {row['default_guidance']} / "
                    f"{row['negative_prompt']} |")
    return "\n".join(rows)
