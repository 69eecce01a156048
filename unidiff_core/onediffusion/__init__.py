"""OneDiffusion: the NextDiT denoiser over a sequence of frames, its T5 encoder, SD3 VAE, tasks and pipeline."""
