"""Shared fixtures. The repository root is put on sys.path so `unidiff_core` imports as a package."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
TINY_CHECKPOINT = GOLDEN / "tiny-onediffusion"


@pytest.fixture(scope="session")
def golden_dir():
    return GOLDEN


@pytest.fixture(scope="session")
def tiny_checkpoint():
    return TINY_CHECKPOINT


@pytest.fixture(scope="session")
def golden_pipeline():
    """The reference's tiny checkpoint loaded once per session (fp32, CPU)."""
    import torch

    from unidiff_core.onediffusion.pipeline import UniDiffPipeline

    torch.set_num_threads(1)  # the goldens were made with one thread
    return UniDiffPipeline.from_pretrained(TINY_CHECKPOINT)
