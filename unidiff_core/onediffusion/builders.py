"""Request builders: one per kind of task layout, each (spec, inputs) -> TaskRequest.

`inputs` is a `TaskInputs` whose caption is stripped and whose height/width are the run's (None =
the bucket of the first given image); `inputs.prompt` set means a full prompt is used verbatim (the
builder's prompt is replaced by it, so inputs the template needs are not required). Errors are
`InputError`s naming the input, the value and the fix.
"""

from __future__ import annotations

from ..common.errors import InputError
from . import cameras, conditions, validation
from .pipeline import IMAGE, Frame
from .requests import TaskInputs, TaskRequest, ViewInfo, join_prompt


def _need(value, name: str, spec, hint: str):
    if value is None:
        raise InputError(name, None, f"task {spec.name!r} needs {name}", hint)
    return value


def _two_frames(spec, inputs: TaskInputs, what: str, given, prompt=None, **extra) -> TaskRequest:
    """[generated image, given `what`] - the layout of every X->image task."""
    return TaskRequest(prompt=prompt if prompt is not None else join_prompt(spec.token, inputs.caption),
                       frames=[Frame(IMAGE), Frame(IMAGE, image=given)], whats=["image", what], **extra)


def _token_kind(spec) -> str:
    return "mask" if spec.frames[1].what == "semantic_map" else "boundingbox"


def text2image(spec, inputs: TaskInputs) -> TaskRequest:
    return TaskRequest(prompt=join_prompt(spec.token, inputs.caption), frames=[Frame(IMAGE)], whats=["image"])


def inpainting(spec, inputs: TaskInputs) -> TaskRequest:
    source = inputs.inpaint
    if source is not None and (inputs.image is not None or inputs.mask is not None):
        raise InputError("image/mask", "both an inpaint input and image/mask", "the image is given twice",
                         "give either inpaint (built by conditions.inpaint_source) or image and mask")
    if source is None and inputs.mask is not None:
        image = _need(inputs.image, "image", spec, "give the photo to repaint (and a mask, 1 = repaint)")
        source = conditions.inpaint_source(image, inputs.mask, fill=inputs.fill, composite=inputs.composite,
                                           feather=inputs.feather)
    if source is not None:
        return _two_frames(spec, inputs, "masked_image", source.condition, source_image=source.original,
                           inpaint=source)
    image = _need(inputs.image, "image", spec, "give the photo to repaint (and a mask, 1 = repaint)")
    if inputs.composite:
        raise InputError("mask", None, "inpainting composite=True needs the mask", "give mask (1 = repaint)")
    return _two_frames(spec, inputs, "masked_image", image, source_image=image)


def image_condition(spec, inputs: TaskInputs) -> TaskRequest:
    """deblurring, image_editing: [generated image, the given image]."""
    image = _need(inputs.image, "image", spec, "give the input image")
    return _two_frames(spec, inputs, spec.frames[1].what, image, source_image=image)


def cond2image(spec, inputs: TaskInputs) -> TaskRequest:
    """X->image: the given map, or built here from a photo (canny), masks (semantic) or boxes."""
    what = spec.frames[1].what
    image, labels = inputs.image, []
    built_from = {"canny": ("photo", inputs.photo, "an edge map"), "semantic_map": ("masks", inputs.masks,
                  "a colour map"), "box_map": ("boxes", inputs.boxes, "a box map")}.get(what)
    if built_from is not None and built_from[1] is not None:
        name, value, kind = built_from
        if image is not None:
            raise InputError("image", "both image and " + name, f"{spec.name}: give either image ({kind}) or "
                             f"{name}, not both", f"drop image or {name}")
        if what == "canny":
            image = conditions.canny_map(value, inputs.canny_low, inputs.canny_high)
        elif what == "semantic_map":
            built = conditions.semantic_map(value, labels=inputs.labels)
            image, labels = built.image, built.labels
        else:
            canvas = inputs.canvas_size or ((inputs.height, inputs.width) if inputs.height is not None else None)
            built = conditions.box_map(value, canvas or (512, 512), units=inputs.box_units)
            image, labels = built.image, built.labels
    hints = {"canny": "give an edge map as image, or a photo as photo",
             "semantic_map": "give a colour map as image (with labels), or masks=[(label, mask)]",
             "box_map": "give a box map as image (with labels), or boxes=[{label, box}]"}
    image = _need(image, "image", spec, hints.get(what, f"give the {what.replace('_', ' ')} image"))
    if not labels and what in ("semantic_map", "box_map") and inputs.labels is not None:
        labels = validation.label_list(inputs.labels)
    tokens = [lab.token(_token_kind(spec)) for lab in labels]
    return _two_frames(spec, inputs, what, image, prompt=join_prompt(spec.token, *tokens, inputs.caption),
                       labels=labels)


def image2cond(spec, inputs: TaskInputs) -> TaskRequest:
    """image->X: [the given photo, the generated map]; colour maps name the concepts to find."""
    what = spec.frames[1].what
    image = _need(inputs.image, "image", spec, "give the photo to analyse")
    labels = []
    if what in ("semantic_map", "box_map"):
        if inputs.labels is not None:
            labels = validation.label_list(inputs.labels)
        elif inputs.prompt is None:
            raise InputError("labels", None, f"task {spec.name!r} needs labels", "name the concepts to find, e.g. "
                             "labels=['cat', 'dog']")
    tokens = [lab.token(_token_kind(spec)) for lab in labels]
    return TaskRequest(prompt=join_prompt(spec.token, *tokens, inputs.caption),
                       frames=[Frame(IMAGE, image=image), Frame(IMAGE)], whats=["image", what], labels=labels,
                       source_image=image)


def references(spec, inputs: TaskInputs) -> TaskRequest:
    """faceid (1-3 references), subject_driven (one reference and the subject's name)."""
    refs = conditions.reference_list(inputs.references, max_count=3 if spec.name == "faceid" else 1)
    frames = [Frame(IMAGE)] + [Frame(IMAGE, image=img) for img, _ in refs]
    parts = []
    if "subject" in spec.inputs:
        subject = (inputs.subject or "").strip()
        if not subject and inputs.prompt is None:
            raise InputError("subject", inputs.subject, f"task {spec.name!r} needs subject",
                             "name the subject, e.g. 'cartoon dog'")
        parts.append(f"<item: {subject}>")
    prompt = join_prompt(spec.token, *parts, reference_prompt(inputs.caption, [cap for _, cap in refs]))
    return TaskRequest(prompt=prompt, frames=frames,
                       whats=["image"] + ["reference"] * len(refs), source_image=refs[0][0])


def reference_prompt(caption: str, reference_captions) -> str:
    """'[[img0]] <target caption> [[img1]] <caption 1> ...' (frame 0 = the generated image)."""
    parts = ["[[img0]]", caption]
    for i, cap in enumerate(reference_captions, start=1):
        parts += [f"[[img{i}]]", cap]
    return join_prompt(*parts)


def multiview(spec, inputs: TaskInputs) -> TaskRequest:
    """Interleaved [image, ray] frames per view; given images fill the first views (or image_views)."""
    images = list(inputs.images or ([] if inputs.image is None else [inputs.image]))
    estimate = spec.name == "camera_estimation"  # rays of views 1.. are generated
    if spec.name == "text2multiview" and images:
        raise InputError("images", f"{len(images)} images", f"task {spec.name!r} takes no images",
                         "use 'image2multiview'")
    if spec.name == "image2multiview" and not images:
        raise InputError("images", "none", f"task {spec.name!r} needs images", "give at least the view-0 image")
    if estimate and len(images) < 2:
        raise InputError("images", f"{len(images)} images", f"task {spec.name!r} needs at least 2 images",
                         "give the views whose cameras to recover")
    validation.square(inputs.width, inputs.height)
    azimuths = inputs.azimuths
    if azimuths is None:
        azimuths = list(spec.default("azimuths"))
        if estimate:
            azimuths = [0.0] + [None] * (len(images) - 1)
    elevations = inputs.elevations
    if elevations is None:
        default = list(spec.default("elevations"))
        elevations = default if len(default) == len(azimuths) else [None if a is None else 0.0 for a in azimuths]
    distances = inputs.distances if inputs.distances is not None else spec.default("distances")
    layout = conditions.multiview_layout(images, azimuths, elevations, distances, image_views=inputs.image_views)
    focal = float(inputs.focal) if inputs.focal is not None else cameras.DEFAULT_FOCAL
    frames = conditions.multiview_frames(layout, size=inputs.height, focal=focal)
    if estimate and all(v.camera_given for v in layout.views):
        raise InputError("azimuths", azimuths, f"{spec.name}: every camera is known, nothing to estimate",
                         "set the unknown views' azimuth to None")
    whats = ["image" if f.kind == IMAGE else "ray" for f in frames]
    views = [ViewInfo(v.azimuth, v.elevation, v.distance, 2 * i, 2 * i + 1, v.image_given, v.camera_given)
             for i, v in enumerate(layout.views)]
    return TaskRequest(prompt=join_prompt(spec.token, inputs.caption), frames=frames, whats=whats, views=views,
                       focal=focal, source_image=images[0] if images else None)
