"""Task output decoders: latents -> images, depth, segmentation masks, boxes, multi-view images, cameras.

All of them read one `unidiff_core.onediffusion.outputs.decode_result` of the latents, made once per latents and
decode options (several decoder nodes on one sampler decode the VAE once).
"""

from __future__ import annotations

import json

from ..unidiff_core.onediffusion import validation
from . import host
from .common import CATEGORY, LATENTS, MODEL

SUB = CATEGORY + "/decode"
MODEL_INPUT = (MODEL, {"tooltip": "The model that sampled the latents (its VAE decodes them)."})
LATENTS_INPUT = (LATENTS, {"tooltip": "From UniDiff Multi-Frame Sampler."})


def _tolerance_inputs():
    from ..unidiff_core.onediffusion.outputs import DEFAULT_MIN_AREA, DEFAULT_TOLERANCE

    return {
        "tolerance": ("FLOAT", {"default": DEFAULT_TOLERANCE, "min": 0.0, "max": 442.0, "step": 1.0,
                                "tooltip": "RGB distance from a label's palette colour still counted as that label."}),
        "min_area": ("INT", {"default": DEFAULT_MIN_AREA, "min": 0, "max": 1 << 20, "step": 1,
                             "tooltip": "Blobs and holes smaller than this many pixels are dropped as noise."}),
    }


def task_output(model, latents, tolerance=None, min_area=None):
    """The TaskOutput of these latents (cached on the latents object per options)."""
    from ..unidiff_core.onediffusion import outputs

    tolerance = outputs.DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    min_area = outputs.DEFAULT_MIN_AREA if min_area is None else int(min_area)
    if not hasattr(latents, "request") or not hasattr(latents, "result"):
        raise ValueError(f"latents: expected UNIDIFF_LATENTS from UniDiff Multi-Frame Sampler, got "
                         f"{type(latents).__name__}")
    key = (tolerance, min_area)
    out = latents.decoded.get(key)
    if out is None:
        pipe = model.ready("vae")
        out = outputs.decode_result(pipe, latents.request, latents.result, tolerance=tolerance, min_area=min_area)
        latents.decoded[key] = out
    return out


def _out(tensor):
    return tensor.float().contiguous().to(host.intermediate_device())


def _task(latents) -> str:
    return latents.request.task or "custom"


def _mask_stack(masks: dict, labels: list[str]):
    """{label: (B, H, W)} -> (L*B, H, W), label-major: index l*B + b."""
    import torch

    return torch.cat([masks[label].float() for label in labels])


def decode_images(model, latents):
    out = task_output(model, latents)
    if not out.images:
        raise ValueError(f"these latents have no generated image frame (task {_task(latents)!r} generates camera "
                         "rays only); use UniDiff Decode Cameras")
    import torch

    images = torch.cat(out.images)
    composite = out.composite if out.composite is not None else out.images[0]
    return _out(images), _out(composite)


def decode_depth(model, latents):
    out = task_output(model, latents)
    if out.depth is None:
        raise ValueError(f"these latents hold no depth frame (task {_task(latents)!r}); use task 'image2depth', "
                         "or a custom frame with what=depth")
    return _out(out.depth_grey), _out(out.depth_color), _out(out.depth)


def decode_segmentation(model, latents, tolerance=None, min_area=None, label: str = ""):
    known = [lab.label for lab in getattr(getattr(latents, "request", None), "labels", None) or []]
    if known:  # before the VAE decode
        validation.select_labels(label, known)
    out = task_output(model, latents, tolerance, min_area)
    if out.overlay is None or out.boxes is not None or not out.masks:
        raise ValueError(f"these latents hold no semantic map with labels (task {_task(latents)!r}); use task "
                         "'image2semanticmap' with labels on the text node")
    labels = validation.select_labels(label, list(out.masks))
    return _out(_mask_stack(out.masks, labels)), _out(out.overlay), json.dumps(labels)


def decode_boxes(model, latents, tolerance=None, min_area=None):
    out = task_output(model, latents, tolerance, min_area)
    if out.boxes is None:
        raise ValueError(f"these latents hold no box map with labels (task {_task(latents)!r}); use task "
                         "'image2boundingbox' with labels on the text node")
    boxes = [dict(box, batch=b) for b, items in enumerate(out.boxes) for box in items]
    return json.dumps(boxes), _out(_mask_stack(out.masks, list(out.masks))), _out(out.overlay)


def decode_multiview(model, latents):
    import torch

    out = task_output(model, latents)
    if not out.views:
        raise ValueError(f"these latents are not a multi-view run (task {_task(latents)!r}); use task "
                         "'image2multiview' / 'text2multiview'")
    views = torch.cat(out.views)
    generated = [out.views[v] for v in (out.generated_views or [])]
    return _out(views), _out(torch.cat(generated) if generated else views)


def decode_cameras(latents):
    from ..unidiff_core.onediffusion import outputs

    request = latents.request
    if not request.views:
        raise ValueError(f"these latents are not a multi-view run (task {_task(latents)!r}); use task "
                         "'camera_estimation'")
    rays = [v.ray_frame for v in request.views]  # every view's ray frame, given ones included
    lat = latents.latents
    return json.dumps([dict(cam, batch=b) for b in range(lat.shape[0])
                       for cam in outputs.cameras_from_ray_latents(lat[b, rays], request.views, request.focal)])


# ------------------------------------------------------------------------------------ nodes
class _Decoder:
    CATEGORY = SUB

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": MODEL_INPUT, "latents": LATENTS_INPUT}}


class UniDiffDecodeImages(_Decoder):
    DESCRIPTION = "Decodes the generated image frames with the VAE."
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("images", "composite")
    OUTPUT_TOOLTIPS = ("Every generated image frame, frame by frame, each with the whole batch.",
                       "Inpainting: the result pasted into the original (unmasked pixels exact); otherwise the "
                       "first generated frame.")
    FUNCTION = "decode"

    def decode(self, model, latents):
        return decode_images(model, latents)


class UniDiffDecodeDepth(_Decoder):
    DESCRIPTION = "Depth from image2depth: grey (near white), colour-mapped (Spectral: near red) and a float map."
    RETURN_TYPES = ("IMAGE", "IMAGE", "MASK")
    RETURN_NAMES = ("depth", "depth_color", "depth_map")
    OUTPUT_TOOLTIPS = ("Grey depth image, near = white (what depth ControlNets and depth2image take).",
                       "Colour-mapped depth (Spectral: near red, far blue).",
                       "Float depth (batch, H, W), 0 = near .. 1 = far, min-max normalised per image.")
    FUNCTION = "decode"

    def decode(self, model, latents):
        return decode_depth(model, latents)


class UniDiffDecodeSegmentation(_Decoder):
    DESCRIPTION = "Segmentation from image2semanticmap: one MASK per label (palette colour) and an overlay."
    RETURN_TYPES = ("MASK", "IMAGE", "STRING")
    RETURN_NAMES = ("masks", "overlay", "labels")
    OUTPUT_TOOLTIPS = ("One mask per label, label by label (index = label * batch + item).",
                       "The predicted map blended 50/50 over the input photo.",
                       "JSON list of the labels, in mask order.")
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        spec = super().INPUT_TYPES()
        spec["required"].update(_tolerance_inputs())
        spec["required"]["label"] = ("STRING", {"default": "", "dynamicPrompts": False,
                                                "tooltip": "Only these labels (comma-separated); empty = all."})
        return spec

    def decode(self, model, latents, tolerance, min_area, label):
        return decode_segmentation(model, latents, tolerance, min_area, label)


class UniDiffDecodeBoxes(_Decoder):
    DESCRIPTION = "Detection from image2boundingbox: boxes as JSON, one MASK per label and an overlay."
    RETURN_TYPES = ("STRING", "MASK", "IMAGE")
    RETURN_NAMES = ("boxes", "masks", "overlay")
    OUTPUT_TOOLTIPS = ('JSON list of {"label", "color", "x0", "y0", "x1", "y1" (pixels, x1/y1 exclusive), "score", '
                       '"box_fraction", "batch"}.',
                       "Per label the union of its boxes (index = label * batch + item).",
                       "Boxes drawn over the input photo blended with the predicted map.")
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        spec = super().INPUT_TYPES()
        spec["required"].update(_tolerance_inputs())
        return spec

    def decode(self, model, latents, tolerance, min_area):
        return decode_boxes(model, latents, tolerance, min_area)


class UniDiffDecodeMultiView(_Decoder):
    DESCRIPTION = "Multi-view images: every view in view order (given views as the model saw them)."
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("views", "generated")
    OUTPUT_TOOLTIPS = ("All views, view by view, each with the whole batch.", "Only the generated views.")
    FUNCTION = "decode"

    def decode(self, model, latents):
        return decode_multiview(model, latents)


class UniDiffDecodeCameras(_Decoder):
    DESCRIPTION = ("Camera poses read from the ray frames (camera_estimation; any multi-view run): rotation, "
                   "centre, focal and azimuth/elevation/distance relative to the known camera.")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("cameras",)
    OUTPUT_TOOLTIPS = ('JSON list, one entry per view and batch item: "view", "given", "azimuth", "elevation", '
                       '"distance", "rotation", "centre", "focal", "residual", "batch".',)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):  # rays need no VAE: no model input
        return {"required": {"latents": LATENTS_INPUT}}

    def decode(self, latents):
        return (decode_cameras(latents),)
