"""MMGen's modality layout: four SD-VAE latents of 4 channels each, stacked on channels (B, 16, 32, 32)."""

from __future__ import annotations

MODALITIES = ("rgb", "depth", "normal", "mask")  # channel blocks 0-3, 4-7, 8-11, 12-15
LATENT_CHANNELS = 4
CHANNELS = LATENT_CHANNELS * len(MODALITIES)
RESOLUTION = 256  # pixels; the released model and its positional table are for 256²
LATENT_SIZE = RESOLUTION // 8
JOINT_TOKEN = 0  # task token of joint (category) generation; modality m as condition is token m + 1


def modality_index(name: str) -> int:
    return MODALITIES.index(name)


def channels(modality: int | str) -> slice:
    """The latent channels of one modality."""
    m = modality_index(modality) if isinstance(modality, str) else modality
    return slice(LATENT_CHANNELS * m, LATENT_CHANNELS * (m + 1))


def task_token(condition: int | str | None) -> int:
    """0 for joint generation, m + 1 when modality m is the given condition."""
    if condition is None:
        return JOINT_TOKEN
    return (modality_index(condition) if isinstance(condition, str) else condition) + 1
