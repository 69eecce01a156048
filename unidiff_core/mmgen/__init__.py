"""MMGen (arXiv 2503.20644): one SiT over RGB, depth, surface-normal and segmentation latents stacked on channels."""
