"""ImageNet-1k class labels by id or name (MMGen's class conditioning); 1000 = no class. Torch-free."""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

from ..common.errors import InputError

NULL_LABEL = 1000
NONE_WORDS = ("", "none", "null", "no class", "unconditional")


@lru_cache(maxsize=1)
def class_names() -> list[list[str]]:
    """names[id] = the class's lemmas, e.g. names[207] = ['golden retriever']."""
    lines = (Path(__file__).with_name("imagenet_classes.txt")).read_text().splitlines()
    rows = [line.split("\t", 1)[1] for line in lines if line and not line.startswith("#")]
    return [[name.strip() for name in row.split(",")] for row in rows]


def class_name(label: int) -> str:
    return "none" if label == NULL_LABEL else class_names()[label][0]


def parse_class_label(value, name: str = "class_label") -> int:
    """An id 0-999, 1000 / 'none' for no class, or a class name ('golden retriever', case-insensitive)."""
    text = str(value).strip()
    if text.lower() in NONE_WORDS:
        return NULL_LABEL
    try:
        label = int(text)
    except ValueError:
        label = None
    if label is not None:
        if not 0 <= label <= NULL_LABEL:
            raise InputError(name, value, "not an ImageNet class id", "use 0-999, or 1000 for no class")
        return label
    lowered = text.lower()
    for index, names in enumerate(class_names()):
        if lowered in (n.lower() for n in names):
            return index
    every = [n for names in class_names() for n in names]
    close = difflib.get_close_matches(text, every, n=3)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise InputError(name, value, "not an ImageNet class name", f"{hint}give a class name, an id 0-999 or 1000 "
                                                                "for no class")
