"""UniDiffTextEncode: the task picker, the caption and the negative prompt (task tokens are added for you)."""

from __future__ import annotations

from dataclasses import dataclass

from ..unidiff_core.onediffusion import validation
from ..unidiff_core.onediffusion.validation import CUSTOM
from .common import CATEGORY, TEXT


def task_choices() -> list[str]:
    from ..unidiff_core.onediffusion.tasks import task_names

    return task_names() + [CUSTOM]


@dataclass(frozen=True)
class TextSpec:
    """The UNIDIFF_TEXT value. The sampler forms the final prompt from it and the frames."""

    task: str  # a unidiff_core.onediffusion.tasks name, or "custom" (prompt verbatim, frames as chained)
    prompt: str  # the caption / instruction; a prompt starting with "[[" is used verbatim
    negative_prompt: str | None  # None = the task's default negative prompt
    labels: str = ""  # concepts with palette colours for segmentation/detection and given colour maps


def encode_text(task: str, prompt: str, negative_prompt: str = "", use_task_negative: bool = True,
                labels: str = "") -> TextSpec:
    if task != CUSTOM:
        from ..unidiff_core.onediffusion.tasks import get_task

        task = get_task(task).name  # a clear error for a name from an older/newer pack version
    negative = (negative_prompt or "").strip()
    if use_task_negative and not negative and task != CUSTOM:
        negative = None
    return TextSpec(task=task, prompt=(prompt or "").strip(), negative_prompt=negative, labels=(labels or "").strip())


class UniDiffTextEncode:
    DESCRIPTION = ("Picks the OneDiffusion task and holds the caption. The task token ([[text2image]], "
                   "[[depth2image]], [[faceid]] [[img0]] ..., colour tokens of boxes and maps) is added by the "
                   "sampler from the task and the chained frames, so you only write the description. "
                   "Start the prompt with [[ to write the whole prompt yourself; task 'custom' runs the frames "
                   "exactly as chained with the prompt verbatim.")
    CATEGORY = CATEGORY + "/conditioning"
    RETURN_TYPES = (TEXT,)
    RETURN_NAMES = ("text",)
    OUTPUT_TOOLTIPS = ("Task, caption and negative prompt for UniDiff Multi-Frame Sampler.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "task": (task_choices(), {
                    "default": "text2image",
                    "tooltip": "What to do. X2image: generate an image from a condition frame; image2X: "
                               "estimate X (depth, segmentation, boxes, edges, pose) from an image; "
                               "faceid/subject_driven: reference images; *multiview: views from cameras; "
                               "custom: any frame sequence you chain, prompt verbatim."}),
                "prompt": ("STRING", {
                    "multiline": True, "dynamicPrompts": False, "default": "",
                    "tooltip": "The caption (for image_editing the instruction; for faceid the target caption). "
                               "Task tokens are added for you; a prompt starting with [[ is used as typed."}),
                "negative_prompt": ("STRING", {
                    "multiline": True, "dynamicPrompts": False, "default": "",
                    "tooltip": "What to avoid (used when guidance > 1). Empty = the task's default negative "
                               "prompt when 'use_task_negative' is on."}),
                "use_task_negative": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "On: an empty negative prompt means the task's default (the demos' long list; "
                               "none for estimation tasks). Off: the negative prompt is exactly what you typed."}),
                "labels": ("STRING", {
                    "multiline": False, "dynamicPrompts": False, "default": "",
                    "tooltip": "Comma-separated concepts, each one palette colour, optionally pinned: "
                               "'cat, dog' or 'cat=red, dog=cyan'. image2semanticmap / image2boundingbox: "
                               "what to find. A semantic/box map given as an image: what its colours mean "
                               "(palette order). Boxes from UniDiff Layout Boxes carry their own labels."}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, task=None, prompt=None, labels=None):
        from ..unidiff_core.onediffusion.tasks import TASKS

        return validation.message(validation.task_text, task, prompt, labels, TASKS)  # the task combo too

    def encode(self, task, prompt, negative_prompt, use_task_negative, labels):
        return (encode_text(task, prompt, negative_prompt, use_task_negative, labels),)
