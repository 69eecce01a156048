"""The pack's error types. Torch-free: ComfyUI imports them while validating every POST /prompt."""

from __future__ import annotations


def show_value(value, limit: int = 120) -> str:
    """repr(value), shortened for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class InputError(ValueError):
    """A bad input, found before any model work; str() is the user-facing message."""

    def __init__(self, name: str, value, problem: str, fix: str, text: str | None = None):
        self.input_name, self.value, self.problem, self.fix = name, value, problem, fix
        # text: the same facts worded for a keyword argument ("width=100 is ..."), where that reads better
        super().__init__(text or f"{name}: {problem} (got {show_value(value)}); {fix}")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and what to do."""


class Interrupted(Exception):
    """Raised when the host asks to stop; nothing of the run is returned."""


# ComfyUI shows an execution error as "<module>.<class>: message"; inside ComfyUI the pack's modules are named
# after their path (.../custom_nodes/ComfyUI-UniDiff.unidiff_core.common.errors). Show "UniDiff.InputError".
InputError.__module__ = CheckpointError.__module__ = "UniDiff"
