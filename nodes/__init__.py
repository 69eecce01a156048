"""ComfyUI node adapters over unidiff_core (classic node API; no ComfyUI import at module level).

Node names (the keys below) are a public contract: saved workflows refer to them. Never rename one;
add a new node and mark the old one DEPRECATED instead.
"""

from . import host
from .decoders import (UniDiffDecodeBoxes, UniDiffDecodeCameras, UniDiffDecodeDepth, UniDiffDecodeImages,
                       UniDiffDecodeMultiView, UniDiffDecodeSegmentation)
from .examples import UniDiffExampleImage
from .frames import (UniDiffConditionMap, UniDiffImageFrame, UniDiffInpaintFrame, UniDiffLayoutBoxes,
                     UniDiffMultiViewCameras, UniDiffReferenceImages)
from .loader import UniDiffLoader
from .lora import UniDiffLoRA
from .mmgen import UniDiffMMGenDecode, UniDiffMMGenFrame, UniDiffMMGenTask
from .sampler import UniDiffSampler
from .text import UniDiffTextEncode

host.register_model_folder()  # models/unidiff/ (a no-op outside ComfyUI)

NODE_DISPLAY_NAME_MAPPINGS = {
    "UniDiffLoader": "UniDiff Loader",
    "UniDiffTextEncode": "UniDiff Text Encode (task)",
    "UniDiffImageFrame": "UniDiff Image Frame",
    "UniDiffInpaintFrame": "UniDiff Inpaint Frame",
    "UniDiffLayoutBoxes": "UniDiff Layout Boxes",
    "UniDiffReferenceImages": "UniDiff Reference Images",
    "UniDiffConditionMap": "UniDiff Condition Map",
    "UniDiffMultiViewCameras": "UniDiff Multi-View Cameras",
    "UniDiffSampler": "UniDiff Multi-Frame Sampler",
    "UniDiffDecodeImages": "UniDiff Decode Images",
    "UniDiffDecodeDepth": "UniDiff Decode Depth",
    "UniDiffDecodeSegmentation": "UniDiff Decode Segmentation",
    "UniDiffDecodeBoxes": "UniDiff Decode Boxes",
    "UniDiffDecodeMultiView": "UniDiff Decode Multi-View",
    "UniDiffDecodeCameras": "UniDiff Decode Cameras",
    "UniDiffExampleImage": "UniDiff Example Image",
    "UniDiffMMGenTask": "UniDiff MMGen Task",
    "UniDiffMMGenFrame": "UniDiff MMGen Modality Frame",
    "UniDiffMMGenDecode": "UniDiff MMGen Decode",
    "UniDiffLoRA": "UniDiff LoRA",
}

NODE_CLASS_MAPPINGS = {
    "UniDiffLoader": UniDiffLoader,
    "UniDiffTextEncode": UniDiffTextEncode,
    "UniDiffImageFrame": UniDiffImageFrame,
    "UniDiffInpaintFrame": UniDiffInpaintFrame,
    "UniDiffLayoutBoxes": UniDiffLayoutBoxes,
    "UniDiffReferenceImages": UniDiffReferenceImages,
    "UniDiffConditionMap": UniDiffConditionMap,
    "UniDiffMultiViewCameras": UniDiffMultiViewCameras,
    "UniDiffSampler": UniDiffSampler,
    "UniDiffDecodeImages": UniDiffDecodeImages,
    "UniDiffDecodeDepth": UniDiffDecodeDepth,
    "UniDiffDecodeSegmentation": UniDiffDecodeSegmentation,
    "UniDiffDecodeBoxes": UniDiffDecodeBoxes,
    "UniDiffDecodeMultiView": UniDiffDecodeMultiView,
    "UniDiffDecodeCameras": UniDiffDecodeCameras,
    "UniDiffExampleImage": UniDiffExampleImage,
    "UniDiffMMGenTask": UniDiffMMGenTask,
    "UniDiffMMGenFrame": UniDiffMMGenFrame,
    "UniDiffMMGenDecode": UniDiffMMGenDecode,
    "UniDiffLoRA": UniDiffLoRA,
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
