"""Model-agnostic input checks: numbers, choices, seeds, text, JSON text, pixel sizes, comma-separated
numbers, dtypes.

Every check raises `InputError` naming the input, the value and the fix. Torch-free: ComfyUI runs
these while validating every POST /prompt (torch is imported only by the check that needs it). The rule
for numbers is in one place, `number`: every float widget, flag and JSON field goes through it, so NaN
and infinities are refused everywhere (ComfyUI's own min/max check lets NaN through: every comparison
with NaN is false).
"""

from __future__ import annotations

import difflib
import json
import math

from .errors import InputError

SIZE_MULTIPLE = 16  # VAE factor 8 x patch size 2
MAX_SIZE = 4096  # the widgets' maximum
DTYPES = ("fp32", "bf16", "fp16")
NONE_WORDS = ("none", "null", "?", "unknown")  # an unknown entry of a number list
MAX_SEED = 0xFFFFFFFFFFFFFFFF  # torch.Generator.manual_seed takes 64-bit seeds
MAX_TEXT_CHARS = 100_000  # far past any prompt the text encoder reads (its first few hundred tokens)
MAX_JSON_CHARS = 1_000_000
MAX_JSON_DEPTH = 32
MAX_LORA_STRENGTH = 10.0  # far past any useful LoRA strength (1 = as trained)  # box lists need 3 levels; deeper text is a mistake (or an attack on the parser)


def message(check, *args, **kwargs):
    """True when check(*args, **kwargs) passes, else its error message (what VALIDATE_INPUTS returns)."""
    try:
        check(*args, **kwargs)
    except ValueError as e:
        return str(e)
    return True


def _range_text(low, high) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    if high is not None:
        return f" of at most {high}"
    return ""


def number(name: str, value, low=None, high=None, integer: bool = False):
    """A finite number within [low, high] -> float (or int when `integer`: exact, also past 2**53)."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, str):
        value = value.strip()
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(name, value, f"not {kind}", f"give {kind}"
                         + (f" from {low} to {high}" if low is not None and high is not None else "")) from None
    if not math.isfinite(out):
        raise InputError(name, value, "not a finite number", "give a finite number")
    if integer:
        if isinstance(value, int):
            out = int(value)
        elif isinstance(value, str):
            try:
                out = int(value)  # "64"; "64.5" is refused
            except ValueError:
                raise InputError(name, value, f"not {kind}", f"give {kind}{_range_text(low, high)}") from None
        elif out.is_integer():
            out = int(out)
        else:
            raise InputError(name, value, f"not {kind}", f"give {kind}{_range_text(low, high)}")
    if low is not None and out < low:
        raise InputError(name, value, f"smaller than the minimum {low}", f"use a value{_range_text(low, high)}")
    if high is not None and out > high:
        raise InputError(name, value, f"bigger than the maximum {high}", f"use a value{_range_text(low, high)}")
    return out


def choice(name: str, value, options):
    """One of the options; a near miss is named."""
    options = list(options)
    if value in options:
        return value
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InputError(name, value, "not one of the choices", f"{hint}use one of {', '.join(map(str, options))}")


def seed(value, batch_size: int = 1, name: str = "seed") -> int:
    """A seed for batch items seed .. seed + batch_size - 1, each a valid 64-bit generator seed."""
    batch_size = number("batch_size", batch_size, 1, None, integer=True)
    top = MAX_SEED - (batch_size - 1)
    out = number(name, value, 0, MAX_SEED, integer=True)
    if out > top:
        raise InputError(name, value, f"with batch_size {batch_size} the last item's seed (seed + {batch_size - 1}) "
                         f"passes the maximum {MAX_SEED}", f"use a seed of at most {top}")
    return out


def lora_strength(value, name: str = "strength") -> float:
    """A LoRA strength: a finite number from -MAX_LORA_STRENGTH to MAX_LORA_STRENGTH (0 = off, 1 = as trained)."""
    return number(name, value, -MAX_LORA_STRENGTH, MAX_LORA_STRENGTH)


# ------------------------------------------------------------------------------------ text
def text(name: str, value, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A prompt or other free text, returned unchanged (None -> ""). Refused: not text, invalid Unicode (a lone
    surrogate: half of an emoji or accent, which JSON can carry as an escape and which the tokenizer cannot
    encode), absurd lengths."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(name, value, f"not text (a {type(value).__name__})", "give a string")
    for i, ch in enumerate(value):
        if "\ud800" <= ch <= "\udfff":
            raise InputError(name, value[max(0, i - 20): i + 20], f"invalid Unicode: a lone surrogate "
                             f"U+{ord(ch):04X} at character {i}", "remove that character or type the text again "
                             "(it is half of an emoji or accent, cut off when the text was copied or encoded)")
    if len(value) > max_chars:
        raise InputError(name, f"{len(value)} characters", f"longer than {max_chars} characters",
                         "shorten it (the text encoder reads only the first few hundred tokens)")
    return value


# ------------------------------------------------------------------------------------ JSON text
class _BadConstant(ValueError):
    pass


def _refuse_constant(word):
    raise _BadConstant(word)


def _finite_float(word):
    value = float(word)
    if not math.isfinite(value):
        raise _BadConstant(word)
    return value


def json_depth(text: str) -> int:
    """Deepest nesting of [ ] and { } outside strings (computed without parsing, so it cannot recurse)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def json_text(name: str, text: str, fix: str, max_depth: int = MAX_JSON_DEPTH, max_chars: int = MAX_JSON_CHARS,
              finite: bool = True):
    """Parse JSON text of an input. Refused, with the input named: malformed JSON (with its position), nesting
    deeper than `max_depth`, more than `max_chars` characters and, with `finite`, NaN and infinities (not JSON
    numbers, but Python's parser accepts them). A caller that checks every number itself with `number` (and
    so names the field) passes finite=False. `fix` says what to write instead."""
    if len(text) > max_chars:
        raise InputError(name, f"{len(text)} characters", f"longer than {max_chars} characters", fix)
    if text.count("[") + text.count("{") > max_depth:
        depth = json_depth(text)
        if depth > max_depth:
            raise InputError(name, text, f"nested {depth} levels deep (at most {max_depth})", fix)
    try:
        if not finite:
            return json.loads(text)
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _BadConstant as e:
        raise InputError(name, text, f"{e.args[0]} is not a finite number",
                         f"{fix}, with finite numbers") from None
    except json.JSONDecodeError as e:
        raise InputError(name, text, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})",
                         fix) from None
    except RecursionError:  # belt and braces: the depth check above comes first
        raise InputError(name, text, "nested too deeply", fix) from None


# ------------------------------------------------------------------------------------ pixel sizes
def nearest_sizes(value: int, high: int | None = MAX_SIZE) -> list[int]:
    """The valid sizes next to a value: [below, above] (one when the other is out of range)."""
    below = (int(value) // SIZE_MULTIPLE) * SIZE_MULTIPLE
    return [s for s in (below, below + SIZE_MULTIPLE) if SIZE_MULTIPLE <= s and (high is None or s <= high)]


def size(name: str, value, allow_auto: bool = False, low: int = SIZE_MULTIPLE, high: int | None = MAX_SIZE,
         keyword: bool = False) -> int:
    """The size rule: a pixel size is a multiple of 16 within [low, high]; 0 also when allow_auto (= the
    task's default). keyword: word the error for a keyword argument (``width=100 is ...``)."""
    if keyword and (isinstance(value, bool) or not hasattr(value, "__index__")):  # 512.0 is not a size
        raise InputError(name, value, "not a whole number", f"use {name}=512",
                         text=f"{name}={value!r} is not a positive multiple of {SIZE_MULTIPLE}; use {name}=512")
    value = number(name, value, integer=True) if keyword else \
        number(name, value, 0 if allow_auto else low, high, integer=True)
    if allow_auto and value == 0:
        return 0
    if value < low or value % SIZE_MULTIPLE:
        sizes = nearest_sizes(max(value, low), high)
        problem = f"smaller than the minimum {low}" if value < low else f"not a multiple of {SIZE_MULTIPLE}"
        fix = (f"use at least {low}" + (" (or 0 for auto)" if allow_auto else "")) if value < low \
            else "use " + " or ".join(map(str, sizes))
        text = None
        if keyword:
            text = (f"{name}={value} is not a positive multiple of {SIZE_MULTIPLE}; use "
                    + " or ".join(f"{name}={s}" for s in sizes))
        raise InputError(name, value, problem, fix, text=text)
    return value


def size_pair(width, height, auto=0, keyword: bool = False) -> tuple:
    """Width and height: both sizes, or both `auto` (0 on the widgets, None in the API: the task's default
    size or the ~512² bucket of the first given image)."""
    high = None if keyword else MAX_SIZE
    width, height = (value if value == auto else size(name, value, allow_auto=auto == 0, high=high, keyword=keyword)
                     for name, value in (("width", width), ("height", height)))
    if (width == auto) != (height == auto):
        missing, other = ("width", "height") if width == auto else ("height", "width")
        if auto is None:
            raise InputError(missing, None, f"not given but {other} is", "give both or neither (neither = the "
                             "task's default size)", text=f"height={height}, width={width}: give both or neither "
                             "(neither = the task's default size)")
        raise InputError(missing, auto, f"auto ({auto}) but {other}={width if height == auto else height}",
                         "set both, or both to 0 (auto: the task's default size or the ~512² bucket of the "
                         "first given image)")
    return width, height


# ------------------------------------------------------------------------------------ number lists
def numbers(text, name: str, allow_none: bool = False) -> list:
    """Comma-separated numbers: '0, 30, none' -> [0.0, 30.0, None] (none only with allow_none); a bad
    entry is named. A number or a list is taken as is."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return [float(text)]
    if isinstance(text, (list, tuple)):
        parts = ["none" if v is None else str(v) for v in text]
    else:
        parts = str(text).replace(";", ",").split(",")
    values = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if part.lower() in NONE_WORDS:
            if not allow_none:
                raise InputError(name, text, "'none' is not allowed here", "give numbers")
            values.append(None)
            continue
        try:
            value = float(part)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise InputError(name, text, f"{part!r} is not a number", "expected comma-separated numbers, e.g. "
                             "0, 30, 60" + (" (none = unknown)" if allow_none else ""))
        values.append(value)
    return values


# ------------------------------------------------------------------------------------ devices
def dtype_on_device(dtype: str, device) -> None:
    """A dtype the device can run (fp16 is not supported on the CPU; bf16 needs a GPU that has it)."""
    import torch  # only here: this module stays importable without torch

    choice("dtype", dtype, DTYPES)
    device = torch.device(device)
    if device.type == "cpu" and dtype == "fp16":
        raise InputError("dtype", dtype, "fp16 is not supported on the CPU", "use fp32 or bf16 there (or auto)")
    if device.type == "cuda" and dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise InputError("dtype", dtype, "this GPU cannot run bf16", "use fp16 or fp32 (or auto)")
