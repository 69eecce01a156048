"""The request types: a task's natural inputs (`TaskInputs`), a free-form frame (`FrameInput`) and what
`UniDiffPipeline.generate` runs plus what decoding needs (`TaskRequest`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from . import cameras
from .conditions import InpaintSource
from .palette import ColorLabel
from .pipeline import IMAGE, Frame


@dataclass
class TaskInputs:
    """Everything a task may read, each field once (see `tasks.TASKS[name].inputs` for what a task reads).

    caption: the free text of the prompt (the instruction for image_editing, the target caption for
      faceid/subject_driven); prompt: a full prompt used verbatim instead of the template.
    image: the task's given image: the condition map for X->image tasks, the photo for image->X,
      inpainting, deblurring and editing. images: the views for multi-view tasks (first views).
    photo: canny2image only: any photo, its OpenCV Canny edges (canny_low, canny_high) become the map.
    mask: inpainting, (H, W) 1 = repaint (ComfyUI MASK), same size as `image`; without it `image` is
      taken as already masked (black region). inpaint: the same, built (conditions.inpaint_source).
      composite/feather: see conditions.composite_inpaint.
    boxes: boundingbox2image, [{"label", "box": [x0, y0, x1, y1], "color"?}], box_units 'auto'
      (all values <= 1 -> fractions of the canvas), 'fraction' or 'pixel'.
    masks: semanticmap2image, [(label, mask)] or {label: mask}.
    labels: concepts for colour tokens: 'cat, dog=cyan', ['cat', 'dog'], [('cat', 'cyan'), ...] or
      [{'label', 'color'}]; colours default to the palette order.
    canvas_size: (height, width) of a built map; default (height, width) or 512x512.
    references: faceid/subject_driven, [(image, caption), ...] (faceid 1-3, subject_driven 1).
    azimuths/elevations/distances (degrees, degrees, units; None = unknown camera) and focal:
      multi-view tasks; image_views: which views the `images` belong to (default the first ones).
    height/width/steps/guidance/negative_prompt: None = the task's defaults.
    """

    caption: str = ""
    prompt: str | None = None
    negative_prompt: str | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    image: Any = None
    images: Sequence | None = None
    photo: Any = None
    mask: Any = None
    inpaint: InpaintSource | None = None
    composite: bool = False
    feather: int = 8
    fill: str = "black"
    boxes: Any = None
    box_units: str = "auto"
    canvas_size: tuple[int, int] | None = None
    labels: Any = None
    masks: Any = None
    references: Sequence | None = None
    subject: str | None = None
    azimuths: Sequence | None = None
    elevations: Sequence | None = None
    distances: Any = None
    focal: float | None = None
    image_views: Sequence[int] | None = None
    canny_low: int = 100
    canny_high: int = 200

    RUN = ("caption", "prompt", "negative_prompt", "height", "width", "steps", "guidance")  # every task's

    def given(self) -> dict:
        """The task inputs set to something other than their default (the run settings left out)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.RUN:
                continue
            if f.default is None:
                if value is not None and not (isinstance(value, (list, tuple)) and len(value) == 0):
                    out[f.name] = value
            elif value != f.default:
                out[f.name] = value
        return out


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
    whats: list[str] = field(default_factory=list)  # per frame: what it holds (tasks.WHATS)
    labels: list[ColorLabel] = field(default_factory=list)  # colour labels of the prompt's tokens
    source_image: Any = None  # the given photo (overlays of image->map tasks)
    inpaint: InpaintSource | None = None
    views: list[ViewInfo] | None = None  # multi-view layouts
    focal: float = cameras.DEFAULT_FOCAL

    @property
    def denoise_mask(self) -> list[int]:
        return [0 if f.given else 1 for f in self.frames]

    def generate_kwargs(self) -> dict:
        """Keyword arguments for `UniDiffPipeline.generate` (add seed, batch_size, callback, ...)."""
        return dict(prompt=self.prompt, frames=self.frames, negative_prompt=self.negative_prompt,
                    height=self.height, width=self.width, steps=self.steps, guidance=self.guidance)


def join_prompt(*parts: str) -> str:
    """Join prompt parts with single spaces, leaving out empty ones."""
    return " ".join(p.strip() for p in parts if p is not None and str(p).strip())
