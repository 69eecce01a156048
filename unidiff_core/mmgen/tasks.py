"""MMGen's inference modes: which modality is given (held near clean), the task token and defaults."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.checks import choice
from .layout import MODALITIES, task_token

NULL_LABEL = 1000  # ImageNet has 1000 classes; row 1000 of the label table means "no class"


@dataclass(frozen=True)
class MMGenTask:
    name: str
    condition: str | None  # the given modality, None = generate all four from a class label
    default_label: int
    default_cfg: float
    checkpoint: str  # which released checkpoint the mode was trained for
    description: str

    @property
    def token(self) -> int:
        return task_token(self.condition)

    @property
    def outputs(self) -> tuple:
        return tuple(m for m in MODALITIES if m != self.condition)


TASKS = {t.name: t for t in [
    MMGenTask("category", None, 0, 1.0, "0600000",
              "ImageNet class -> RGB image, depth, surface normal and segmentation generated jointly"),
    MMGenTask("rgb2x", "rgb", NULL_LABEL, 1.0, "0620000",
              "RGB photo -> its depth, surface normal and segmentation (understanding)"),
    MMGenTask("depth2x", "depth", NULL_LABEL, 1.8, "0600000",
              "depth map -> a matching RGB image, surface normal and segmentation"),
    MMGenTask("normal2x", "normal", NULL_LABEL, 1.8, "0600000",
              "surface-normal map -> a matching RGB image, depth and segmentation"),
    MMGenTask("mask2x", "mask", NULL_LABEL, 1.8, "0600000",
              "segmentation (colour regions) -> a matching RGB image, depth and surface normal"),
]}
DEFAULT_STEPS = 250
DEFAULT_SAMPLER = "sde"  # the reference's Euler-Maruyama; the common flow samplers are options
DEFAULT_T_BLEND = 0.005  # the given modality's time: near clean (0 would divide by zero in the sampler)


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> MMGenTask:
    return TASKS[choice("task", name, TASKS)]


def tasks_text() -> str:
    """The table for `python -m unidiff_core tasks` (MMGen part)."""
    lines = ["MMGen tasks (an MMGen checkpoint; run --task NAME [--image IN.png] [--class-label N]):"]
    for t in TASKS.values():
        given = f"given {t.condition}" if t.condition else "given a class label"
        lines.append(f"  {t.name:<10} token {t.token}  {given}; defaults: class {t.default_label}, cfg "
                     f"{t.default_cfg}, steps {DEFAULT_STEPS}, sampler {DEFAULT_SAMPLER}  - {t.description}")
    return "\n".join(lines)
