"""Procedural scenes with exact ground truth for every task of the pack, and task samples built from them.

    from training.data import make_sample, TRAIN_SEEDS, HELDOUT_SEEDS
    sample = make_sample("image2depth", seed=12, size=64)   # prompt, frames, ground truth

Seeds are the only source of randomness; the training and held-out ranges never overlap.
"""

from .scenes import HELDOUT_SEEDS, TRAIN_SEEDS, Scene, render, sample_scene
from .samples import TASK_BUILDERS, TrainSample, make_sample

__all__ = ["HELDOUT_SEEDS", "TRAIN_SEEDS", "Scene", "render", "sample_scene", "TASK_BUILDERS", "TrainSample",
           "make_sample"]
