"""Which model family a checkpoint belongs to, and the family's entry points.

Each family is one entry: how to recognise its checkpoints (from file names and headers only, no tensor
read) and where its pipeline and task table live. The CLI and the ComfyUI Loader pick the family here,
so a new family is one entry plus its package. Module paths are imported on use: listing families
imports no torch.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .common.errors import CheckpointError
from .common.safetensors_io import refuse_pickle
from .mmgen.detect import is_mmgen_checkpoint  # torch-free


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    recognises: Callable[[Path], bool]  # True when a checkpoint path is of this family
    pipeline: str  # "module:Class" with a from_pretrained(checkpoint, **options) classmethod
    tasks: str  # module holding the family's task table (TASKS)

    def pipeline_class(self):
        module, _, name = self.pipeline.partition(":")
        return getattr(importlib.import_module(module, __package__), name)

    def task_module(self):
        return importlib.import_module(self.tasks, __package__)


def _is_onediffusion(path: Path) -> bool:
    if path.is_dir():
        return (path / "transformer").is_dir() or (path / "model_index.json").is_file()
    return path.suffix == ".safetensors"


ONEDIFFUSION = Family("onediffusion", "OneDiffusion", _is_onediffusion,
                      ".onediffusion.pipeline:UniDiffPipeline", ".onediffusion.tasks")

MMGEN = Family("mmgen", "MMGen", is_mmgen_checkpoint, ".mmgen.pipeline:MMGenPipeline", ".mmgen.tasks")

# Checked in order: the first family that recognises a checkpoint takes it. MMGen first: its safetensors are
# told apart by their keys, while OneDiffusion takes any other .safetensors.
FAMILIES: tuple[Family, ...] = (MMGEN, ONEDIFFUSION)

# Checkpoints shipped inside the pack, by name (usable wherever a checkpoint path is).
EMBEDDED: dict[str, Path] = {"mini": Path(__file__).resolve().parent.parent / "models" / "UniDiff-Mini"}


def resolve_checkpoint(name: str | os.PathLike) -> Path:
    """An embedded checkpoint's name ('mini') -> its folder; any other value is taken as a path."""
    return EMBEDDED.get(str(name), Path(name))


def checkpoint_defaults(checkpoint: str | os.PathLike) -> dict:
    """Generation defaults a checkpoint declares in model_index.json under "unidiff_defaults" (e.g. Mini's
    native size {"height": 64, "width": 64} and the negative prompt it was trained with); {} when none."""
    import json

    index = Path(checkpoint) / "model_index.json"
    if not index.is_file():
        return {}
    try:
        return dict(json.loads(index.read_text()).get("unidiff_defaults") or {})
    except (OSError, ValueError, TypeError):
        return {}


def family_of(checkpoint: str | os.PathLike) -> Family:
    """The family of a checkpoint path; CheckpointError (naming the path) when none recognises it."""
    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    for family in FAMILIES:
        if family.recognises(path):
            return family
    refuse_pickle(path)  # a pickle no family takes gets the pickle message, not "unknown family"
    names = ", ".join(f.title for f in FAMILIES)
    raise CheckpointError(f"{path}: not a checkpoint of a known model family ({names}); "
                          "point at a OneDiffusion folder (transformer/, vae/, ...) or a transformer .safetensors, or at an "
                          "MMGen checkpoint (the released .pt, its EMA .safetensors or a converted folder)")
