"""The 20 colours OneDiffusion knows for semantic maps and bounding boxes, and its colour tokens.

A semantic-map or box prompt names each concept with a token such as
`<#00FFFF cyan mask: sphere>` or `<#FF0000 red boundingbox: car>`; the map image paints that
concept in that colour on a black background. The model was trained with the colours below
(PROMPT_GUIDE, in this order); colours are handed out in this order unless one is asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# (hex, name), in the order the prompt guide lists them. The box editor (js/) uses the same order.
PALETTE: tuple[tuple[str, str], ...] = (
    ("#FF0000", "red"), ("#00FF00", "lime"), ("#0000FF", "blue"), ("#FFFF00", "yellow"),
    ("#FF00FF", "magenta"), ("#00FFFF", "cyan"), ("#FFA500", "orange"), ("#800080", "purple"),
    ("#A52A2A", "brown"), ("#008000", "green"), ("#FFC0CB", "pink"), ("#008080", "teal"),
    ("#FF8C00", "darkorange"), ("#8A2BE2", "blueviolet"), ("#006400", "darkgreen"), ("#FF4500", "orangered"),
    ("#000080", "navy"), ("#FFD700", "gold"), ("#40E0D0", "turquoise"), ("#DA70D6", "orchid"),
)
MAX_COLORS = len(PALETTE)

_BY_NAME = {name: hex_ for hex_, name in PALETTE}
_BY_HEX = {hex_: name for hex_, name in PALETTE}
# <#RRGGBB name mask: concept> or <#RRGGBB name boundingbox: concept>; hex and name case-insensitive.
TOKEN_RE = re.compile(r"<\s*(#[0-9A-Fa-f]{6})\s+([A-Za-z]+)\s+(mask|boundingbox)\s*:\s*([^>]*)>")


def hex_to_rgb(hex_code: str) -> tuple[int, int, int]:
    code = hex_code.lstrip("#")
    if len(code) != 6:
        raise ValueError(f"colour {hex_code!r} is not #RRGGBB; use a hex code like '#00FFFF' or a palette name")
    try:
        return int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16)
    except ValueError:
        raise ValueError(f"colour {hex_code!r} is not #RRGGBB; use a hex code like '#00FFFF' "
                         "or a palette name") from None


def resolve_color(color) -> tuple[str, str]:
    """A palette colour given as a name ('cyan'), a hex code ('#00ffff') or an index (5) -> (HEX, name)."""
    if isinstance(color, (int, np.integer)) and not isinstance(color, bool):
        if not 0 <= int(color) < MAX_COLORS:
            raise ValueError(f"colour index {color} is outside the palette; use 0..{MAX_COLORS - 1}")
        return PALETTE[int(color)]
    text = str(color).strip()
    if text.lower() in _BY_NAME:
        return _BY_NAME[text.lower()], text.lower()
    if text.startswith("#") and text.upper() in _BY_HEX:
        return text.upper(), _BY_HEX[text.upper()]
    raise ValueError(f"colour {color!r} is not in the model's 20-colour palette; use one of "
                     + ", ".join(name for _, name in PALETTE))


@dataclass(frozen=True)
class ColorLabel:
    """One concept of a semantic map or box layout: its colour and the words of its token."""

    label: str
    hex: str
    name: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        return hex_to_rgb(self.hex)

    def token(self, kind: str) -> str:
        """kind 'mask' or 'boundingbox' -> '<#00FFFF cyan mask: sphere>'."""
        if kind not in ("mask", "boundingbox"):
            raise ValueError(f"token kind {kind!r} must be 'mask' or 'boundingbox'")
        return f"<{self.hex} {self.name} {kind}: {self.label}>"


def assign_colors(labels, colors=None) -> list[ColorLabel]:
    """Distinct labels -> ColorLabels. colors[i] (optional, may be None) pins label i's colour;
    the others take the first palette colours not yet used, in palette order.

    More than 20 labels, a repeated colour or a colour outside the palette is a ValueError.
    """
    labels = [str(label).strip() for label in labels]
    if len(labels) > MAX_COLORS:
        raise ValueError(f"{len(labels)} labels given but the model's palette has only {MAX_COLORS} colours; "
                         f"use at most {MAX_COLORS} labels (merge or drop some)")
    for label in labels:
        if not label or any(c in label for c in "<>"):
            raise ValueError(f"label {label!r} must be non-empty text without '<' or '>'")
    colors = list(colors) if colors is not None else [None] * len(labels)
    if len(colors) != len(labels):
        raise ValueError(f"{len(colors)} colours for {len(labels)} labels; give one colour (or None) per label")
    pinned = [resolve_color(c) if c is not None else None for c in colors]
    used = [p[0] for p in pinned if p is not None]
    if len(used) != len(set(used)):
        raise ValueError(f"colours {colors} repeat a colour; each label needs its own colour")
    free = iter([p for p in PALETTE if p[0] not in used])
    out = []
    for label, pin in zip(labels, pinned):
        hex_, name = pin if pin is not None else next(free)
        out.append(ColorLabel(label, hex_, name))
    return out


def split_labels(labels) -> tuple[list[str], list]:
    """Labels in any accepted shape -> (names, colours or None): 'cat,dog=cyan' / ['cat', 'dog=cyan'] /
    [('dog', 'cyan')] / [{'label': 'dog', 'color': 'cyan'}] / [ColorLabel]."""
    if labels is None:
        return [], []
    if isinstance(labels, str):
        labels = [s for s in labels.split(",") if s.strip()]
    names, colors = [], []
    for item in labels:
        if isinstance(item, ColorLabel):
            name, color = item.label, item.hex
        elif isinstance(item, dict):
            name, color = item.get("label", ""), item.get("color")
        elif isinstance(item, (tuple, list)):
            name, color = item[0], (item[1] if len(item) > 1 else None)
        else:
            name, _, color = str(item).partition("=")
            color = color.strip() or None
        names.append(str(name).strip())
        colors.append(color)
    return names, colors


def parse_color_tokens(prompt: str) -> list[tuple[ColorLabel, str]]:
    """All colour tokens of a prompt, in order: [(ColorLabel, 'mask' | 'boundingbox')].

    Hex codes are read case-insensitively (the reference's examples write lowercase); the colour
    of a token is its hex code (the reference once pairs #ff0000 with the word 'yellow').
    """
    out = []
    for hex_, name, kind, concept in TOKEN_RE.findall(prompt or ""):
        out.append((ColorLabel(concept.strip(), hex_.upper(), name.lower()), kind))
    return out
