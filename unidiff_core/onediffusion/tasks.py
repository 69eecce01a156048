"""Every OneDiffusion task as an entry of one table, and the request builder.

A task is a prompt template plus a frame layout. `TASKS[name]` (a `TaskSpec`) holds the task token,
which frames are images or ray maps and which are given or generated, the prompt template, the
default size/steps/guidance/negative prompt and the output decoder. Adding a task = adding an entry.

    request = build_request("image2depth", caption="a cat", image=photo)
    result = pipe.generate(**request.generate_kwargs(), seed=0)
    output = decode_result(pipe, request, result)          # output.depth, output.depth_color, ...
    # or in one call:  result, output = run_task(pipe, request, seed=0)

Prompts are "<task token> <task tokens> <caption>" joined by single spaces, empty parts left out
(so image->depth without a caption is exactly "[[depth2image]]"). A full `prompt=` given to
`build_request` is used verbatim instead (colour tokens in it are still read for decoding).

Free-form runs: `freeform_request(prompt, frames)` takes any ordered list of frames (each given or
generated, image or ray), so zero-shot task combinations work.

Conventions: images are PIL images or float tensors in 0..1, (H, W, 3) or (3, H, W); masks are
float/bool (H, W) with 1 = the region (ComfyUI MASK convention). Every error is a ValueError that
names the input, the value received and the fix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from . import cameras
from .palette import ColorLabel, parse_color_tokens
from .pipeline import IMAGE, RAY, Frame

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
    default_steps: int = 50
    default_guidance: float = 4.0
    default_negative: str = NEGATIVE_PROMPT
    multiview: bool = False
    variable: str = ""
    defaults: tuple[tuple[str, Any], ...] = ()  # other input defaults (multi-view cameras)

    @property
    def denoise_mask(self) -> list[int]:
        return [1 if s.generated else 0 for s in self.frames]

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
            prompt_template=f"{token}{tokens} <caption>", default_size=None))
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
            prompt_template=f"{token}{tokens} [caption]", default_size=None,
            default_negative=""))
    return specs


def _make_tasks() -> dict[str, TaskSpec]:
    specs = [
        TaskSpec(
            name="text2image", token="[[text2image]]", title="text -> image",
            description="Generate an image from a caption (long, detailed captions work best; 768-1280 px).",
            frames=(_img(GENERATED),), inputs=("caption",), required=("caption",), outputs=_IMAGE_OUTPUTS,
            output="image", prompt_template="[[text2image]] <caption>", default_size=(1024, 1024)),
        TaskSpec(
            name="inpainting", token="[[image_inpainting]]", title="inpainting",
            description="Repaint the masked region of an image (mask 1 = repaint). The condition frame is the "
                        "image with the masked region painted black, as in the reference's example. "
                        "`composite=True` pastes the result back so unmasked pixels stay exact (feathered edge).",
            frames=(_img(GENERATED), _img(GIVEN, "masked_image")),
            inputs=("image", "mask", "caption", "composite", "feather", "fill"), required=("image",),
            outputs=_IMAGE_OUTPUTS + ("composite",), output="image",
            prompt_template="[[image_inpainting]] [caption]", default_size=None),
        TaskSpec(
            name="deblurring", token="[[deblurring]]", title="deblurring",
            description="Restore a sharp image from a blurry one.",
            frames=(_img(GENERATED), _img(GIVEN, "blurred_image")), inputs=("image", "caption"),
            required=("image",), outputs=_IMAGE_OUTPUTS, output="image",
            prompt_template="[[deblurring]] [caption]", default_size=None),
        TaskSpec(
            name="image_editing", token="[[image_editing]]", title="instruction editing",
            description="Edit an image following an instruction (the caption is the instruction; guidance "
                        "3-3.5 avoids over-saturation).",
            frames=(_img(GENERATED), _img(GIVEN, "source_image")), inputs=("image", "caption"),
            required=("image", "caption"), outputs=_IMAGE_OUTPUTS, output="image",
            prompt_template="[[image_editing]] <instruction>", default_size=None, default_steps=60,
            default_guidance=3.2),
        TaskSpec(
            name="faceid", token="[[faceid]]", title="ID customisation",
            description="Generate a new image of a person from 1-3 reference photos, each with a caption "
                        "(30-75 words work best); the size is the bucket of the first reference.",
            frames=(_img(GENERATED), _img(GIVEN, "reference")), inputs=("references", "caption"),
            required=("references",), outputs=_IMAGE_OUTPUTS, output="image",
            prompt_template="[[faceid]] [[img0]] <target caption> [[img1]] <caption 1> [[img2]] <caption 2> "
                            "[[img3]] <caption 3>",
            default_size=None, default_steps=75, variable="one given reference frame per reference (1-3)"),
        TaskSpec(
            name="subject_driven", token="[[subject_driven]]", title="subject-driven generation",
            description="Put a subject from one photo into a new scene; `subject` names it, the reference "
                        "caption describes the photo.",
            frames=(_img(GENERATED), _img(GIVEN, "reference")), inputs=("references", "subject", "caption"),
            required=("references", "subject"), outputs=_IMAGE_OUTPUTS, output="image",
            prompt_template="[[subject_driven]] <item: <subject>> [[img0]] <target caption> [[img1]] <caption 1>",
            default_size=(512, 512), default_steps=70),
        *_condition_tasks(),
        TaskSpec(
            name="image2multiview", token="[[multiview]]", title="image -> multi-view",
            description="Novel views of an object from one (or more) image(s) and the cameras of all views "
                        "(azimuth/elevation relative to view 0, which is 0/0). Square only.",
            frames=(_img(GIVEN), _ray(GIVEN)) + (_img(GENERATED), _ray(GIVEN)) * 3,
            inputs=("images", "azimuths", "elevations", "distances", "focal", "caption"), required=("images",),
            outputs=("images", "primary", "views"), output="multiview",
            prompt_template="[[multiview]] [caption]", default_size=(512, 512), default_steps=60, multiview=True,
            variable="2 frames (image, ray) per view; given images fill the first views",
            defaults=(("azimuths", (0.0, 20.0, 40.0, 60.0)), ("elevations", (0.0, 0.0, 0.0, 0.0)),
                      ("distances", MULTIVIEW_DISTANCE))),
        TaskSpec(
            name="text2multiview", token="[[multiview]]", title="text -> multi-view",
            description="Several views of an object described by the caption, at the given cameras. Square only.",
            frames=(_img(GENERATED), _ray(GIVEN)) * 4,
            inputs=("caption", "azimuths", "elevations", "distances", "focal"), required=("caption",),
            outputs=("images", "primary", "views"), output="multiview",
            prompt_template="[[multiview]] <caption>", default_size=(512, 512), default_steps=60, multiview=True,
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
            prompt_template="[[multiview]] [caption]", default_size=(512, 512), default_steps=60, multiview=True,
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
    """The TaskSpec of a task name (or alias); a ValueError lists the valid names."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, list(TASKS) + list(ALIASES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown task {name!r}{hint}; valid tasks: {', '.join(TASKS)}")


# --------------------------------------------------------------------------- requests
@dataclass
class ViewInfo:
    """One multi-view view: its camera (None = unknown, to be generated) and frame indices."""

    azimuth: float | None
    elevation: float | None
    distance: float | None
    image_frame: int
    ray_frame: int
    image_given: bool
    camera_given: bool


@dataclass
class InpaintInfo:
    """What the inpainting composite needs: the original image, the repaint mask and the feather."""

    original: Any
    mask: Any  # (H, W) float32 numpy, 1 = repaint
    composite: bool = False
    feather: int = 8


@dataclass
class TaskRequest:
    """Everything `UniDiffPipeline.generate` needs, plus what decoding needs."""

    prompt: str
    frames: list[Frame]
    negative_prompt: str = ""
    height: int | None = None
    width: int | None = None
    steps: int = 50
    guidance: float = 4.0
    task: str | None = None  # None for free-form requests
    whats: list[str] = field(default_factory=list)  # per frame: what it holds (WHATS)
    labels: list[ColorLabel] = field(default_factory=list)  # colour labels of the prompt's tokens
    source_image: Any = None  # the given photo (overlays of image->map tasks)
    inpaint: InpaintInfo | None = None
    views: list[ViewInfo] | None = None  # multi-view layouts
    focal: float = cameras.DEFAULT_FOCAL
    boxes: list[dict] | None = None  # the boxes drawn into a box map (pixels), when built here

    @property
    def denoise_mask(self) -> list[int]:
        return [0 if f.given else 1 for f in self.frames]

    @property
    def generated(self) -> list[int]:
        return [i for i, f in enumerate(self.frames) if not f.given]

    def generate_kwargs(self) -> dict:
        """Keyword arguments for `UniDiffPipeline.generate` (add seed, batch_size, callback, ...)."""
        return dict(prompt=self.prompt, frames=self.frames, negative_prompt=self.negative_prompt,
                    height=self.height, width=self.width, steps=self.steps, guidance=self.guidance)

    def describe(self) -> dict:
        """JSON-able summary (task, prompt, layout)."""
        return {"task": self.task, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "denoise_mask": self.denoise_mask, "frames": [
                    {"kind": f.kind, "given": f.given, "what": w} for f, w in zip(self.frames, self.whats)],
                "height": self.height, "width": self.width, "steps": self.steps, "guidance": self.guidance,
                "labels": [{"label": c.label, "hex": c.hex, "name": c.name} for c in self.labels]}


def join_prompt(*parts: str) -> str:
    """Join prompt parts with single spaces, leaving out empty ones."""
    return " ".join(p.strip() for p in parts if p is not None and str(p).strip())


def build_request(task: str, caption: str = "", *, image=None, images: Sequence | None = None, photo=None,
                  mask=None, composite: bool = False, feather: int = 8, fill: str = "black",
                  boxes=None, box_units: str = "auto", labels=None, masks=None, references=None,
                  subject: str | None = None, azimuths=None, elevations=None, distances=None,
                  focal: float | None = None, image_views: Sequence[int] | None = None,
                  canny_low: int = 100, canny_high: int = 200, canvas_size: tuple[int, int] | None = None,
                  height: int | None = None, width: int | None = None, steps: int | None = None,
                  guidance: float | None = None, negative_prompt: str | None = None,
                  prompt: str | None = None) -> TaskRequest:
    """Form a task's prompt and frames from its natural inputs, the way the reference forms them.

    task: a name of TASKS (or alias). caption: the free text of the prompt (the instruction for
    image_editing, the target caption for faceid/subject_driven).
    image: the task's given image: the condition map for X->image tasks, the photo for image->X,
      inpainting, deblurring and editing. images: the views for multi-view tasks (first views).
    photo: canny2image only: any photo, its OpenCV Canny edges (canny_low, canny_high) become the map.
    mask: inpainting, (H, W) 1 = repaint (ComfyUI MASK), same size as `image`; without it `image`
      is taken as already masked (black region). composite/feather: see conditions.composite_inpaint.
    boxes: boundingbox2image, [{"label", "box": [x0, y0, x1, y1], "color"?}], box_units 'auto'
      (all values <= 1 -> fractions of the canvas), 'fraction' or 'pixel'.
    masks: semanticmap2image, [(label, mask)] or {label: mask}.
    labels: concepts for colour tokens: ['cat', 'dog'] or [('cat', 'cyan'), ...] or
      [{'label', 'color'}]; colours default to the palette order.
    canvas_size: (height, width) of a built map; default (height, width) or 512x512.
    references: faceid/subject_driven, [(image, caption), ...] (faceid 1-3, subject_driven 1).
    azimuths/elevations/distances (degrees, degrees, units; None = unknown camera) and focal:
      multi-view tasks; image_views: which views the `images` belong to (default the first ones).
    height/width/steps/guidance/negative_prompt: default to the task's defaults.
    prompt: a full prompt used verbatim instead of the template.
    """
    from . import conditions

    spec = get_task(task)
    inputs = dict(image=image, images=images, photo=photo, mask=mask, composite=composite, feather=feather, fill=fill,
                  boxes=boxes, box_units=box_units, labels=labels, masks=masks, references=references, subject=subject,
                  azimuths=azimuths, elevations=elevations, distances=distances, focal=focal,
                  image_views=image_views, canny_low=canny_low, canny_high=canny_high, canvas_size=canvas_size)
    _check_inputs(spec, inputs)
    height, width = _size(spec, height, width)
    ctx = _Ctx(spec=spec, caption=(caption or "").strip(), prompt_override=prompt)
    if "caption" in spec.required and not ctx.caption and prompt is None:
        from ..common.errors import InputError

        what = "an instruction" if spec.name == "image_editing" else "a caption"
        raise InputError("caption", caption, f"empty, but task {spec.name!r} needs {what}",
                         f"write {what}" + (" (what to change)" if spec.name == "image_editing" else
                                            " (describe what to generate)"))
    builder = _BUILDERS.get(spec.name) or _BUILDERS[_family(spec)]
    request = builder(ctx, conditions, height=height, width=width, **inputs)
    request.task = spec.name
    request.height = request.height if request.height is not None else height
    request.width = request.width if request.width is not None else width
    request.steps = int(steps) if steps is not None else spec.default_steps
    request.guidance = float(guidance) if guidance is not None else spec.default_guidance
    request.negative_prompt = spec.default_negative if negative_prompt is None else negative_prompt
    if prompt is not None:
        request.prompt = prompt
        if not request.labels:
            request.labels = [c for c, _ in parse_color_tokens(prompt)]
    if request.steps < 1:
        raise ValueError(f"steps={steps} must be at least 1")
    return request


_INPUT_DEFAULTS = dict(image=None, images=None, photo=None, mask=None, composite=False, feather=8, fill="black",
                       boxes=None, box_units="auto", labels=None, masks=None, references=None, subject=None,
                       azimuths=None, elevations=None, distances=None, focal=None, image_views=None, canny_low=100,
                       canny_high=200, canvas_size=None)


def _check_inputs(spec: TaskSpec, given: dict) -> None:
    """An input the task does not read is an error (it would be silently ignored otherwise)."""
    allowed = set(spec.inputs) | ({"image"} if spec.multiview else set())
    for key, value in given.items():
        default = _INPUT_DEFAULTS[key]
        if default is None:
            changed = value is not None and not (isinstance(value, (list, tuple)) and len(value) == 0)
        else:
            changed = value != default
        if changed and key not in allowed:
            shown = value if isinstance(value, (int, float, str, bool)) else type(value).__name__
            raise ValueError(f"task {spec.name!r} does not take {key} (got {shown!r}); its inputs are: "
                             f"{', '.join(spec.inputs)}")


@dataclass
class _Ctx:
    spec: TaskSpec
    caption: str
    prompt_override: str | None


def _size(spec: TaskSpec, height, width):
    if (height is None) != (width is None):
        raise ValueError(f"height={height}, width={width}: give both or neither "
                         "(neither = the task's default size)")
    if height is None and spec.default_size is not None:
        height, width = spec.default_size
    if height is not None:
        from .preprocess import check_size
        check_size(height, width)
    return height, width


def _family(spec: TaskSpec) -> str:
    if spec.multiview:
        return "multiview"
    if spec.name.endswith("2image") and spec.name not in ("text2image",):
        return "cond2image"
    if spec.name.startswith("image2"):
        return "image2cond"
    raise KeyError(spec.name)


def _need(value, name: str, spec: TaskSpec, hint: str):
    if value is None:
        raise ValueError(f"task {spec.name!r} needs {name} (got None); {hint}")
    return value


def _build_text2image(ctx, c, **kw):
    if not ctx.caption and ctx.prompt_override is None:
        raise ValueError("task 'text2image' needs a caption (got an empty one); describe the image to generate")
    return TaskRequest(prompt=join_prompt(ctx.spec.token, ctx.caption), frames=[Frame(IMAGE)], whats=["image"])


def _build_two_frame(ctx, c, what, given, prompt=None, **extra):
    """[generated image, given `what`] - the layout of every X->image task."""
    return TaskRequest(prompt=prompt if prompt is not None else join_prompt(ctx.spec.token, ctx.caption),
                       frames=[Frame(IMAGE), Frame(IMAGE, image=given)], whats=["image", what], **extra)


def _build_inpainting(ctx, c, **kw):
    image = _need(kw["image"], "image", ctx.spec, "give the photo to repaint (and a mask, 1 = repaint)")
    info = None
    given = image
    if kw["mask"] is not None:
        given = c.inpaint_condition(image, kw["mask"], fill=kw["fill"])
        info = InpaintInfo(original=image, mask=c.mask_array(kw["mask"], c.image_hw(image), "mask"),
                           composite=bool(kw["composite"]), feather=int(kw["feather"]))
    elif kw["composite"]:
        raise ValueError("inpainting composite=True needs the mask (got None); give mask (1 = repaint)")
    return _build_two_frame(ctx, c, "masked_image", given, source_image=image, inpaint=info)


def _build_simple_cond(what):
    def build(ctx, c, **kw):
        image = _need(kw["image"], "image", ctx.spec, "give the input image")
        return _build_two_frame(ctx, c, what, image, source_image=image)
    return build


def color_labels(labels) -> list[ColorLabel]:
    """Labels ('cat', ('cat', 'cyan'), {'label': 'cat', 'color': '#00FFFF'}, 'cat=cyan') -> ColorLabels."""
    from .palette import assign_colors, split_labels

    names, colors = split_labels(labels)
    return assign_colors(names, colors)


def _token_kind(spec):
    return "mask" if "semanticmap" in spec.name else "boundingbox"


def _build_cond2image(ctx, c, **kw):
    spec = ctx.spec
    what = spec.frames[1].what
    image, labels, extra = kw["image"], [], {}
    canvas = kw["canvas_size"] or ((kw["height"], kw["width"]) if kw["height"] is not None else None)
    if what == "canny" and kw["photo"] is not None:
        if image is not None:
            raise ValueError("canny2image: give either image (an edge map) or photo (edges are extracted), not both")
        image = c.canny_map(kw["photo"], kw["canny_low"], kw["canny_high"])
    elif what == "semantic_map" and kw["masks"] is not None:
        if image is not None:
            raise ValueError("semanticmap2image: give either image (a colour map) or masks, not both")
        built = c.semantic_map(kw["masks"], labels=kw["labels"])
        image, labels = built.image, built.labels
    elif what == "box_map" and kw["boxes"] is not None:
        if image is not None:
            raise ValueError("boundingbox2image: give either image (a box map) or boxes, not both")
        built = c.box_map(kw["boxes"], canvas or (512, 512), units=kw["box_units"])
        image, labels, extra = built.image, built.labels, {"boxes": built.boxes}
    hints = {"canny": "give an edge map as image, or a photo as photo",
             "semantic_map": "give a colour map as image (with labels), or masks=[(label, mask)]",
             "box_map": "give a box map as image (with labels), or boxes=[{label, box}]"}
    image = _need(image, "image", spec, hints.get(what, f"give the {what.replace('_', ' ')} image"))
    if not labels and what in ("semantic_map", "box_map") and kw["labels"] is not None:
        labels = color_labels(kw["labels"])
    tokens = [lab.token(_token_kind(spec)) for lab in labels]
    prompt = join_prompt(spec.token, *tokens, ctx.caption)
    return _build_two_frame(ctx, c, what, image, prompt=prompt, labels=labels, **extra)


def _build_image2cond(ctx, c, **kw):
    spec = ctx.spec
    what = spec.frames[1].what
    image = _need(kw["image"], "image", spec, "give the photo to analyse")
    labels = []
    if what in ("semantic_map", "box_map"):
        if kw["labels"] is not None:
            labels = color_labels(kw["labels"])
        elif ctx.prompt_override is None:
            raise ValueError(f"task {spec.name!r} needs labels (got None); name the concepts to find, "
                             "e.g. labels=['cat', 'dog']")
    tokens = [lab.token(_token_kind(spec)) for lab in labels]
    frames = [Frame(IMAGE, image=image), Frame(IMAGE)]
    return TaskRequest(prompt=join_prompt(spec.token, *tokens, ctx.caption), frames=frames, whats=["image", what],
                       labels=labels, source_image=image)


def _build_references(ctx, c, **kw):
    spec = ctx.spec
    refs = c.reference_list(kw["references"], max_count=3 if spec.name == "faceid" else 1)
    frames = [Frame(IMAGE)] + [Frame(IMAGE, image=img) for img, _ in refs]
    parts = []
    if spec.name == "subject_driven":
        subject = (kw["subject"] or "").strip()
        if not subject and ctx.prompt_override is None:
            raise ValueError("task 'subject_driven' needs subject (got empty); name the subject, e.g. 'cartoon dog'")
        parts.append(f"<item: {subject}>")
    prompt = join_prompt(spec.token, *parts, c.reference_prompt(ctx.caption, [cap for _, cap in refs]))
    return TaskRequest(prompt=prompt, frames=frames, whats=["image"] + ["reference"] * len(refs),
                       source_image=refs[0][0])


def _build_multiview(ctx, c, **kw):
    spec = ctx.spec
    images = list(kw["images"] or ([] if kw["image"] is None else [kw["image"]]))
    if spec.name == "text2multiview" and images:
        raise ValueError(f"task 'text2multiview' takes no images (got {len(images)}); use 'image2multiview'")
    if spec.name == "image2multiview" and not images:
        raise ValueError("task 'image2multiview' needs images (got none); give at least the view-0 image")
    if spec.name == "camera_estimation" and len(images) < 2:
        raise ValueError(f"task 'camera_estimation' needs at least 2 images (got {len(images)}); "
                         "give the views whose cameras to recover")
    height, width = kw["height"], kw["width"]
    if height != width:
        raise ValueError(f"multi-view tasks need a square size, got height={height}, width={width}; "
                         "use e.g. 512x512")
    azimuths = kw["azimuths"]
    if azimuths is None:
        azimuths = list(spec.default("azimuths"))
        if spec.name == "camera_estimation":
            azimuths = [0.0] + [None] * (len(images) - 1)
    elevations = kw["elevations"]
    if elevations is None:
        default = list(spec.default("elevations"))
        elevations = default if len(default) == len(azimuths) else [None if a is None else 0.0 for a in azimuths]
    distances = kw["distances"] if kw["distances"] is not None else spec.default("distances")
    layout = c.multiview_layout(images, azimuths, elevations, distances, image_views=kw["image_views"])
    focal = float(kw["focal"]) if kw["focal"] is not None else cameras.DEFAULT_FOCAL
    frames = c.multiview_frames(layout, size=height, focal=focal)
    if spec.name == "camera_estimation" and not any(v.camera_given is False for v in layout.views):
        raise ValueError("camera_estimation: every camera is known, nothing to estimate; "
                         "set the unknown views' azimuth to None")
    whats = ["image" if f.kind == IMAGE else "ray" for f in frames]
    views = [ViewInfo(v.azimuth, v.elevation, v.distance, 2 * i, 2 * i + 1, v.image_given, v.camera_given)
             for i, v in enumerate(layout.views)]
    return TaskRequest(prompt=join_prompt(spec.token, ctx.caption), frames=frames, whats=whats, views=views,
                       focal=focal, source_image=images[0] if images else None)


_BUILDERS: dict[str, Callable] = {
    "text2image": _build_text2image,
    "inpainting": _build_inpainting,
    "deblurring": _build_simple_cond("blurred_image"),
    "image_editing": _build_simple_cond("source_image"),
    "faceid": _build_references,
    "subject_driven": _build_references,
    "cond2image": _build_cond2image,
    "image2cond": _build_image2cond,
    "multiview": _build_multiview,
}


# --------------------------------------------------------------------------- free-form
@dataclass
class FrameInput:
    """A free-form frame. Given when `image` (image frame) or `camera` / `latent` (ray frame) is set.

    camera = (azimuth, elevation, distance) in degrees; rays of all given cameras are expressed
    relative to the first given camera. `what` tells the decoder what a generated frame holds
    ('image', 'depth', 'semantic_map', 'box_map', 'canny', ...).
    """

    kind: str = IMAGE
    image: Any = None
    camera: tuple | None = None
    latent: Any = None
    what: str = "image"


def freeform_request(prompt: str, frames: Sequence, negative_prompt: str = "", height: int | None = None,
                     width: int | None = None, steps: int = 50, guidance: float = 4.0, labels=None,
                     focal: float | None = None) -> TaskRequest:
    """Any ordered frame list with a prompt (zero-shot task combinations).

    frames: FrameInput, pipeline.Frame, or dicts with the FrameInput fields
    ({'kind': 'image', 'image': img} given, {'kind': 'image', 'what': 'depth'} generated,
    {'kind': 'ray', 'camera': (30, 10, 1.5)} given, {'kind': 'ray'} generated).
    labels: colour labels of the prompt (default: read from its colour tokens).
    """
    from . import conditions

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
                raise ValueError(f"frame {i}: unknown keys {sorted(unknown)}; use kind, image, camera, latent, what")
            inputs.append(FrameInput(**f))
        else:
            raise ValueError(f"frame {i}: {type(f).__name__} is not a frame; give a FrameInput, Frame or dict")
    if not inputs:
        raise ValueError("frames is empty: give at least one frame")
    for i, f in enumerate(inputs):
        if f.kind not in (IMAGE, RAY):
            raise ValueError(f"frame {i}: kind {f.kind!r} must be 'image' or 'ray'")
        if f.kind == IMAGE and (f.camera is not None):
            raise ValueError(f"frame {i}: an image frame takes an image, not a camera")
        if f.kind == RAY and f.image is not None:
            raise ValueError(f"frame {i}: a ray frame takes a camera (azimuth, elevation, distance), not an image")
        if f.what not in WHATS:
            raise ValueError(f"frame {i}: what={f.what!r} is not one of {', '.join(WHATS)}")
    focal = float(focal) if focal is not None else cameras.DEFAULT_FOCAL
    ray_given = [i for i, f in enumerate(inputs) if f.kind == RAY and f.camera is not None]
    rays = {}
    if ray_given:
        if height is None or width is None or height != width:
            raise ValueError(f"ray frames need a square size, got height={height}, width={width}; "
                             "give height=width (e.g. 512)")
        rays = dict(zip(ray_given, conditions.camera_rays([inputs[i].camera for i in ray_given], height, focal)))
    out = []
    for i, f in enumerate(inputs):
        if f.kind == RAY:
            latent = rays.get(i, f.latent)
            out.append(Frame(RAY, latent=latent))
        else:
            out.append(Frame(IMAGE, image=f.image, latent=f.latent))
    if all(f.given for f in out):
        raise ValueError("every frame is given: mark at least one frame to generate (no image / no camera)")
    whats = [("ray" if f.kind == RAY else f.what) for f in inputs]
    label_list = color_labels(labels) if labels is not None else [c for c, _ in parse_color_tokens(prompt)]
    source = next((f.image for f in inputs if f.image is not None), None)
    return TaskRequest(prompt=prompt, frames=out, negative_prompt=negative_prompt or "", height=height, width=width,
                       steps=int(steps), guidance=float(guidance), task=None, whats=whats, labels=label_list,
                       source_image=source, focal=focal)


# --------------------------------------------------------------------------- running
def decode_result(pipe, request: TaskRequest, result, **options):
    """Decode a GenerationResult of `request` into a TaskOutput (see outputs.decode_result)."""
    from . import outputs

    return outputs.decode_result(pipe, request, result, **options)


def run_task(pipe, request: TaskRequest, seed: int = 0, batch_size: int = 1, callback=None, interrupt=None,
             crop: bool = True, rope_scale: float = 1.0, rope_watershed: float = 1.0, **decode_options):
    """generate + decode: returns (GenerationResult, TaskOutput). decode_options go to decode_result."""
    result = pipe.generate(**request.generate_kwargs(), seed=seed, batch_size=batch_size, callback=callback,
                           interrupt=interrupt, crop=crop, rope_scale=rope_scale, rope_watershed=rope_watershed)
    return result, decode_result(pipe, request, result, **decode_options)


def with_overrides(request: TaskRequest, **changes) -> TaskRequest:
    """A copy of a request with some fields replaced (prompt, steps, guidance, ...)."""
    return replace(request, **changes)


# --------------------------------------------------------------------------- listings
def _layout_text(spec: TaskSpec) -> str:
    return ", ".join(f"{'gen' if s.generated else 'given'} {s.what}" for s in spec.frames)


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
