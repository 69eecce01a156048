"""Condition encoders: nodes that append frames to a UNIDIFF_FRAMES chain.

Each node takes an optional `frames` input and returns the chain with its own contribution
appended, so any frame sequence can be built. A contribution is one core value
(`unidiff_core.onediffusion.contributions.Contribution`, made by the constructor of its kind); the
sampler hands the chain to the core, which merges it into the task's request (or, for task
'custom', runs the contributed frames as chained).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..unidiff_core.common import checks
from ..unidiff_core.common.errors import InputError
from ..unidiff_core.onediffusion import validation
from ..unidiff_core.onediffusion.validation import GENERATED_WHATS, MAP_TYPES
from .common import CATEGORY, FRAMES, check_mask, image_list, to_image, validate

SUB = CATEGORY + "/frames"
FRAMES_INPUT = (FRAMES, {"tooltip": "Frames chained so far (optional): this node appends its frames after them."})


@dataclass(frozen=True)
class FrameChain:
    """The UNIDIFF_FRAMES value: an immutable sequence of Contributions (branching a graph is safe)."""

    items: tuple = ()

    def then(self, item) -> "FrameChain":
        return FrameChain(self.items + (item,))

    def __repr__(self):
        return f"FrameChain({[(i.source, len(i.frames)) for i in self.items]})"


def chain(frames) -> FrameChain:
    if frames is None:
        return FrameChain()
    if not isinstance(frames, FrameChain):
        raise InputError("frames", type(frames).__name__, "not UNIDIFF_FRAMES",
                         "connect the frames output of a UniDiff frame node")
    return frames


def _one(image, name: str, rule: str):
    """The one image of an IMAGE input that takes one (a batch is refused, not silently cut)."""
    images = image_list(image, name)
    if len(images) != 1:
        raise InputError(name, f"a batch of {len(images)}", rule,
                         "pick one image of the batch (e.g. ImageFromBatch) or use one node per image")
    return images[0]


# ------------------------------------------------------------------------------------ node logic
def image_frame(what: str = "image", image=None, frames=None) -> FrameChain:
    """Given frames (one per image of the batch) or, without an image, one generated frame."""
    from ..unidiff_core.onediffusion import contributions

    if image is None:  # a task lays out its own generated frames: this one is for custom runs
        item = contributions.generated_frame(what, source="UniDiff Image Frame (generate)")
    else:
        item = contributions.given_images(image_list(image), what, source="UniDiff Image Frame")
    return chain(frames).then(item)


def inpaint_frame(image, mask, fill: str = "black", composite: bool = True, feather: int = 8, frames=None):
    """The image with the masked region (MASK 1 = repaint) painted over; returns (chain, condition image)."""
    from ..unidiff_core.onediffusion import contributions

    img = _one(image, "image", "UniDiff Inpaint Frame takes one image")
    item = contributions.inpaint(img, check_mask(mask)[0], fill, bool(composite), int(feather),
                                 source="UniDiff Inpaint Frame")
    return chain(frames).then(item), to_image(item.inputs["inpaint"].condition)


def layout_boxes(boxes: str, width: int, height: int, frames=None):
    """Labelled boxes (JSON, fractions of the canvas) -> the palette-coloured box map; returns (chain, map)."""
    from ..unidiff_core.onediffusion import contributions

    item, box_map = contributions.layout_boxes(boxes, width, height, source="UniDiff Layout Boxes")
    return chain(frames).then(item), to_image(box_map)


def reference_images(image_1, caption_1: str = "", caption_2: str = "", caption_3: str = "", subject: str = "",
                     image_2=None, image_3=None, frames=None) -> FrameChain:
    """1-3 reference photos with captions (faceid: [[img1]]..[[img3]]; subject_driven: one photo + subject)."""
    from ..unidiff_core.onediffusion import contributions

    refs = []
    for n, (image, caption) in enumerate(((image_1, caption_1), (image_2, caption_2), (image_3, caption_3)), 1):
        if image is not None:
            refs.append((_one(image, f"image_{n}", "one reference per input"), (caption or "").strip()))
    missing = [n for n, (_, caption) in enumerate(refs, 1) if not caption]
    if missing and len(missing) < len(refs):  # some references described, some not: a forgotten caption
        n = missing[0]
        raise InputError(f"caption_{n}", "", f"empty, but image_{n} is connected and the other references have "
                         "captions (more reference images than captions)",
                         f"describe reference {n} in caption_{n}, or disconnect image_{n}")
    return chain(frames).then(contributions.references(refs, subject, source="UniDiff Reference Images"))


def condition_map(image, map_type: str, extract_canny: bool = False, canny_low: int = 100, canny_high: int = 200,
                  frames=None):
    """A condition map (depth, canny, HED, pose, semantic or box map); extract_canny turns a photo into
    its Canny edge map. Returns (chain, the map as used)."""
    from ..unidiff_core.onediffusion import contributions

    item, used = contributions.condition_map(_one(image, "image", "UniDiff Condition Map takes one map"), map_type, extract_canny,
                                             canny_low, canny_high, source="UniDiff Condition Map")
    return chain(frames).then(item), to_image(used)


def multiview_cameras(azimuths: str, elevations: str, distance: float, focal: float, images=None, frames=None):
    """One view per azimuth (degrees, relative to view 0; 'none' = unknown camera, estimated)."""
    from ..unidiff_core.onediffusion import contributions

    view_images = image_list(images, "images") if images is not None else []
    item = contributions.multiview_cameras(azimuths, elevations, distance, focal, view_images,
                                           source="UniDiff Multi-View Cameras")
    return chain(frames).then(item)


# ------------------------------------------------------------------------------------ nodes
class UniDiffImageFrame:
    DESCRIPTION = ("Appends an image frame. With an image: a given frame per image of the batch (the photo of "
                   "image2X / editing / deblurring, the views of multi-view). Without: a frame to generate, for "
                   "task 'custom' sequences.")
    CATEGORY = SUB
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The frame chain with this frame appended.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "what": (list(GENERATED_WHATS), {
                    "default": "image",
                    "tooltip": "What the frame holds. Matters for task 'custom': a generated frame's decoder "
                               "(image, depth map, edge map, ...), or what a given image is."}),
            },
            "optional": {
                "frames": FRAMES_INPUT,
                "image": ("IMAGE", {"tooltip": "The given image(s). Leave unconnected for a frame to generate "
                                               "(task 'custom' only: a task lays out its own generated frames)."}),
            },
        }

    def build(self, what, frames=None, image=None):
        return (image_frame(what, image, frames),)


class UniDiffInpaintFrame:
    DESCRIPTION = ("Inpainting condition: the image with the masked region painted black (what the model was "
                   "trained on). Use with task 'inpainting'.")
    CATEGORY = SUB
    RETURN_TYPES = (FRAMES, "IMAGE")
    RETURN_NAMES = ("frames", "condition")
    OUTPUT_TOOLTIPS = ("The frame chain with the condition frame appended.", "The masked condition image (preview).")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The photo to repaint (first image of the batch)."}),
                "mask": ("MASK", {"tooltip": "1 = repaint, 0 = keep (e.g. painted in Load Image's mask editor); "
                                             "resized to the image if its size differs."}),
                "fill": (["black", "grey"], {
                    "default": "black",
                    "tooltip": "Colour painted into the masked region: black is what the reference feeds the model."}),
                "composite": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Paste the result back into the original so unmasked pixels stay exact "
                               "(UniDiff Decode Images 'composite' output)."}),
                "feather": ("INT", {"default": 8, "min": 0, "max": 256, "step": 1,
                                    "tooltip": "Width in pixels of the soft edge of the composite, inside the mask."}),
            },
            "optional": {"frames": FRAMES_INPUT},
        }

    def build(self, image, mask, fill, composite, feather, frames=None):
        return inpaint_frame(image, mask, fill, composite, feather, frames)


class UniDiffLayoutBoxes:
    DESCRIPTION = ("Layout boxes for task 'boundingbox2image': labelled boxes drawn on the canvas editor "
                   "(drag = new box, double-click = label). Each label gets a palette colour and a colour token.")
    CATEGORY = SUB
    RETURN_TYPES = (FRAMES, "IMAGE")
    RETURN_NAMES = ("frames", "box_map")
    OUTPUT_TOOLTIPS = ("The frame chain with the box-map frame appended.", "The rendered box map (preview).")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "boxes": ("STRING", {
                    "multiline": True, "dynamicPrompts": False,
                    "default": "[]",
                    "tooltip": 'JSON list of {"label": text, "box": [x0, y0, x1, y1]} with coordinates as '
                               "fractions 0..1 of the canvas (x right, y down); edited by the box editor."}),
                "width": ("INT", {"default": 512, "min": 16, "max": 4096, "step": 16,
                                  "tooltip": "Canvas width in pixels; use the generation size (its aspect is kept)."}),
                "height": ("INT", {"default": 512, "min": 16, "max": 4096, "step": 16,
                                   "tooltip": "Canvas height in pixels; use the generation size."}),
            },
            "optional": {
                "frames": FRAMES_INPUT,
                "image": ("IMAGE", {"tooltip": "Optional backdrop for the box editor (not used for generation)."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, boxes=None, width=None, height=None):
        def check():
            if boxes is not None:
                validation.boxes(boxes, units="fraction")
            for name, value in (("width", width), ("height", height)):
                if value is not None:
                    checks.size(name, value)

        return validate(cls, check, width=width, height=height)

    def build(self, boxes, width, height, frames=None, image=None):
        return layout_boxes(boxes, width, height, frames)


class UniDiffReferenceImages:
    DESCRIPTION = ("1-3 reference photos with captions for task 'faceid' (they become [[img1]]..[[img3]] after "
                   "the target caption) or one photo and a subject name for 'subject_driven'.")
    CATEGORY = SUB
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The frame chain with one given frame per reference appended.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        caption = "Caption of reference {n} (30-75 words work best; the face/subject, clothes, pose, background)."
        return {
            "required": {
                "image_1": ("IMAGE", {"tooltip": "Reference photo 1 (also sets the output size when size is auto)."}),
                "caption_1": ("STRING", {"multiline": True, "dynamicPrompts": False, "default": "",
                                         "tooltip": caption.format(n=1)}),
                "caption_2": ("STRING", {"multiline": True, "dynamicPrompts": False, "default": "",
                                         "tooltip": caption.format(n=2) + " Used when image_2 is connected."}),
                "caption_3": ("STRING", {"multiline": True, "dynamicPrompts": False, "default": "",
                                         "tooltip": caption.format(n=3) + " Used when image_3 is connected."}),
                "subject": ("STRING", {"multiline": False, "dynamicPrompts": False, "default": "",
                                       "tooltip": "subject_driven only: the subject's name, e.g. 'cartoon dog'."}),
            },
            "optional": {
                "frames": FRAMES_INPUT,
                "image_2": ("IMAGE", {"tooltip": "Reference photo 2 (faceid)."}),
                "image_3": ("IMAGE", {"tooltip": "Reference photo 3 (faceid)."}),
            },
        }

    def build(self, image_1, caption_1, caption_2, caption_3, subject, frames=None, image_2=None, image_3=None):
        return (reference_images(image_1, caption_1, caption_2, caption_3, subject, image_2, image_3, frames),)


class UniDiffConditionMap:
    DESCRIPTION = ("A condition map for the X2image tasks: depth, Canny edges, HED soft edges, pose skeleton, "
                   "semantic colour map or box map. A photo can be turned into its Canny edges here.")
    CATEGORY = SUB
    RETURN_TYPES = (FRAMES, "IMAGE")
    RETURN_NAMES = ("frames", "map")
    OUTPUT_TOOLTIPS = ("The frame chain with the map frame appended.", "The map as the model sees it (preview).")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The map image (or a photo with extract_canny)."}),
                "map_type": (list(MAP_TYPES), {
                    "default": "depth",
                    "tooltip": "What the map is; must match the task (depth2image takes depth, ...). Depth: "
                               "white = near. Semantic/box maps: palette colours on black, named by the text "
                               "node's labels in palette order."}),
                "extract_canny": ("BOOLEAN", {"default": False,
                                              "tooltip": "canny only: the image is a photo; use its OpenCV Canny edges."}),
                "canny_low": ("INT", {"default": 100, "min": 0, "max": 255, "step": 1,
                                      "tooltip": "Canny lower hysteresis threshold (grey levels)."}),
                "canny_high": ("INT", {"default": 200, "min": 1, "max": 255, "step": 1,
                                       "tooltip": "Canny upper hysteresis threshold (grey levels)."}),
            },
            "optional": {"frames": FRAMES_INPUT},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, map_type=None, extract_canny=None, canny_low=None, canny_high=None):
        return validate(cls, lambda: validation.canny_options(map_type, extract_canny, canny_low, canny_high),
                        map_type=map_type, canny_low=canny_low, canny_high=canny_high)

    def build(self, image, map_type, extract_canny, canny_low, canny_high, frames=None):
        return condition_map(image, map_type, extract_canny, canny_low, canny_high, frames)


class UniDiffMultiViewCameras:
    DESCRIPTION = ("Cameras of a multi-view run, one view per azimuth: image and ray frames interleaved. Given "
                   "images fill the first views; unknown cameras ('none') are estimated (camera_estimation).")
    CATEGORY = SUB
    RETURN_TYPES = (FRAMES,)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The frame chain with 2 frames (image, camera rays) per view appended.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "azimuths": ("STRING", {"default": "0, 30, 60, 90", "dynamicPrompts": False,
                                        "tooltip": "Degrees, one per view, relative to view 0 (which is 0); "
                                                   "'none' = unknown camera, to be estimated."}),
                "elevations": ("STRING", {"default": "0, 0, 0, 0", "dynamicPrompts": False,
                                          "tooltip": "Degrees, one per view (or one for all); 'none' where the "
                                                     "azimuth is 'none'."}),
                "distance": ("FLOAT", {"default": 1.5, "min": 0.1, "max": 10.0, "step": 0.01,
                                       "tooltip": "Camera distance from the object for every view (demos: 1.5)."}),
                "focal": ("FLOAT", {"default": 1.3887, "min": 0.1, "max": 10.0, "step": 0.0001,
                                    "tooltip": "Normalised focal length (1.3887 = the training cameras, ~40 deg FOV)."}),
            },
            "optional": {
                "frames": FRAMES_INPUT,
                "images": ("IMAGE", {"tooltip": "Given views: image i of the batch is view i (the first views)."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, azimuths=None, elevations=None):
        def check():
            if azimuths is not None and elevations is not None:
                validation.cameras(azimuths, elevations)
            elif azimuths is not None or elevations is not None:  # the other one is linked
                name = "azimuths" if azimuths is not None else "elevations"
                checks.numbers(azimuths if azimuths is not None else elevations, name, allow_none=True)

        return validate(cls, check)

    def build(self, azimuths, elevations, distance, focal, frames=None, images=None):
        return (multiview_cameras(azimuths, elevations, distance, focal, images, frames),)
