"""ComfyUI-UniDiff: ComfyUI nodes for the OneDiffusion unified multi-task diffusion model.

Importing this package must never fail ComfyUI's startup: the node modules import only light
modules at import time, and heavy work (torch models, diffusers, transformers) happens on use.
"""

if __package__:  # imported as a package (ComfyUI, tests): a broken node module is a visible import error
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # run as a plain module (e.g. collected by a tool outside a package): no nodes
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
