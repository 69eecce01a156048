"""A user's own fine-tuning data in a folder, turned into task samples by the pack's request builder.

    my_data/
      images/0001.png, 0002.jpg, ...   the photos, every one size x size (the checkpoint's size, e.g. 64x64)
      captions.txt                      "0001.png: a teal circle on a white background", one line per image
      images/0001.txt                   ... or a caption file beside each image (not both for one image)
      depth/0001.png, ...               a condition folder for depth2image / image2depth, same file names

`FOLDER_TASKS` says which folder is given and which is generated for each task that a folder can train.
Every sample goes through `build_request`, exactly like the generator's samples and inference, so the
prompt and frame layout cannot drift. The whole folder is checked when it is opened: a missing caption,
an image without its condition (or the other way round), a wrong size or an unreadable file is an
InputError naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unidiff_core.common.errors import InputError
from unidiff_core.onediffusion.requests import TaskInputs
from unidiff_core.onediffusion.tasks import build_request

from .samples import TrainSample

IMAGES = "images"
CAPTIONS = "captions.txt"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CONDITIONS = ("depth", "canny", "hed", "pose")  # the condition tasks whose map is a plain picture (no labels)
# task -> (folder of the given frame or None, folder of the generated frame)
FOLDER_TASKS = {
    "text2image": (None, IMAGES),
    "deblurring": ("blurred", IMAGES),
    "image_editing": ("source", IMAGES),  # the caption is the instruction; images/ holds the edited result
    **{f"{key}2image": (key, IMAGES) for key in CONDITIONS},
    **{f"image2{key}": (IMAGES, key) for key in CONDITIONS},
}
CAPTION_REQUIRED = {"text2image", "image_editing"}  # the prompt is the caption; elsewhere it is optional
DOCS = "see docs/training.md, 'Your own data'"


def _images(folder: Path) -> dict[str, Path]:
    """file stem -> image file of a folder; two images with one stem are refused."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in found:
            raise InputError(str(path), path.name, f"has the same name as {found[path.stem].name}",
                             "keep one image per name (the names pair images with captions and conditions)")
        found[path.stem] = path
    return found


def _read_captions(root: Path, images: dict[str, Path]) -> dict[str, str]:
    """Captions by image stem, from captions.txt and per-image .txt files."""
    captions: dict[str, str] = {}
    listed = root / CAPTIONS
    if listed.is_file():
        by_name = {p.name: stem for stem, p in images.items()}
        for number, line in enumerate(listed.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            name, sep, text = line.partition(":")
            where = f"{listed}:{number}"
            if not sep:
                raise InputError(where, line, "is not 'file name: caption'",
                                 f"write each line as '0001.png: a red circle on a white background' ({DOCS})")
            name = name.strip()
            if name not in by_name:
                raise InputError(where, name, f"names no image in {IMAGES}/",
                                 f"use the file name of an image in {root / IMAGES} (with its extension)")
            if by_name[name] in captions:
                raise InputError(where, name, "has a second caption", "keep one line per image")
            captions[by_name[name]] = text.strip()
    for stem, path in images.items():
        beside = path.with_suffix(".txt")
        if beside.is_file():
            if stem in captions:
                raise InputError(str(beside), path.name, "gives a second caption (captions.txt has one)",
                                 "give each image's caption in captions.txt or in its .txt file, not both")
            captions[stem] = beside.read_text(encoding="utf-8").strip()
    return captions


def _load_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.size != (size, size):
                raise InputError(str(path), f"{image.size[0]}x{image.size[1]}", f"is not {size}x{size}",
                                 f"resize it to {size}x{size} (the checkpoint's size; every image and "
                                 "condition of a folder has it)")
            return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except OSError as e:
        raise InputError(str(path), path.name, f"cannot be read as an image ({e})",
                         "replace it with a PNG or JPEG file") from None


class FolderData:
    """The samples of one task from a user folder; sample i of a step is image `seed % len`."""

    def __init__(self, folder, task: str, size: int):
        root = Path(folder)
        if task not in FOLDER_TASKS:
            raise InputError("--task", task, "cannot be trained from a folder",
                             f"use one of {', '.join(FOLDER_TASKS)} ({DOCS})")
        if not (root / IMAGES).is_dir():
            raise InputError("--data", str(root), f"has no {IMAGES}/ folder",
                             f"put the photos in {root / IMAGES} ({DOCS})")
        images = _images(root / IMAGES)
        if not images:
            raise InputError("--data", str(root / IMAGES), "holds no images",
                             f"add PNG or JPEG files ({', '.join(IMAGE_SUFFIXES)})")
        given, generated = FOLDER_TASKS[task]
        condition = next((f for f in (given, generated) if f != IMAGES), None)
        conditions: dict[str, Path] = {}
        if condition is not None:
            if not (root / condition).is_dir():
                raise InputError("--data", str(root), f"has no {condition}/ folder, which task {task} needs",
                                 f"put one {condition} picture per image in {root / condition}, with the image's "
                                 "file name")
            conditions = _images(root / condition)
            missing = sorted(set(images) - set(conditions))
            extra = sorted(set(conditions) - set(images))
            if missing:
                raise InputError(str(root / IMAGES / images[missing[0]].name), images[missing[0]].name,
                                 f"has no {condition} picture ({len(missing)} image(s) lack one)",
                                 f"add {condition}/{missing[0]}.png (same name as the image)")
            if extra:
                raise InputError(str(conditions[extra[0]]), conditions[extra[0]].name,
                                 f"has no image of the same name in {IMAGES}/",
                                 f"rename it to match its image, or remove it ({len(extra)} such file(s))")
        captions = _read_captions(root, images)
        if task in CAPTION_REQUIRED:
            lacking = [s for s in images if not captions.get(s)]
            if lacking:
                raise InputError(str(images[lacking[0]]), images[lacking[0]].name,
                                 f"has no caption ({len(lacking)} image(s) lack one; task {task} needs them)",
                                 f"add a line '{images[lacking[0]].name}: <caption>' to {root / CAPTIONS}")
        self.root, self.task, self.size = root, task, int(size)
        self.items = []
        for stem in sorted(images):  # every file is read and checked now, not in the middle of a run
            pictures = {IMAGES: _load_image(images[stem], self.size)}
            if condition is not None:
                pictures[condition] = _load_image(conditions[stem], self.size)
            self.items.append((stem, pictures, captions.get(stem, "")))

    def __len__(self) -> int:
        return len(self.items)

    def make_sample(self, task: str, seed: int, size: int, views=None) -> TrainSample:
        if task != self.task or size != self.size:
            raise ValueError(f"this folder holds {self.task} samples at {self.size}x{self.size}, "
                             f"not {task} at {size}x{size}")
        stem, pictures, caption = self.items[int(seed) % len(self.items)]
        given, generated = FOLDER_TASKS[task]
        inputs = TaskInputs(height=size, width=size, caption=caption,
                            image=pictures[given] if given is not None else None)
        request = build_request(task, inputs)
        index = [i for i, generate in enumerate(request.denoise_mask) if generate]
        assert len(index) == 1, f"{task}: a folder task generates one frame, the layout is {request.denoise_mask}"
        return TrainSample(task, request, {index[0]: pictures[generated]}, {"file": stem})
