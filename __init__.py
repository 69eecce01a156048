"""ComfyUI-UniDiff: ComfyUI nodes for the OneDiffusion unified multi-task diffusion model.

Importing this package must never fail ComfyUI's startup: the node modules import only light
modules at import time, and heavy work (torch models, diffusers, transformers) happens on use.
"""

try:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
except ImportError:  # outside a package context (e.g. pytest collecting this file): no nodes
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
