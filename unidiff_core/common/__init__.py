"""Model-agnostic parts shared by every family: errors, input checks, images, safetensors I/O, flow matching,
samplers and the step cache."""
