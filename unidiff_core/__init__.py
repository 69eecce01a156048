"""unidiff_core: host-independent engine for the OneDiffusion unified multi-task diffusion model.

Plain PyTorch; never imports ComfyUI. Heavy submodules are imported on use.
"""

__version__ = "0.1.0"
