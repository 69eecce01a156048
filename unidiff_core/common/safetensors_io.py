"""Checkpoint files read safely: the one reader of safetensors headers and JSON config files.

Pickles are refused; every header and config is checked (its JSON type, each field's type, tensor sizes
against their dtype and the file's length) before anything is built from it, and every error is a
`CheckpointError` that names the file and says what to do. No tensor is read here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .checks import json_depth
from .errors import CheckpointError

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
# Bytes per element of every dtype the safetensors format names.
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
MAX_JSON_BYTES = 64_000_000  # configs are kilobytes; a shard index of a huge model is a few MB
MAX_JSON_DEPTH = 32
REDOWNLOAD = "re-download the file"


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickle checkpoints ({path.suffix}) can run arbitrary code and are refused; "
            "convert the weights to .safetensors"
        )


def _a_file(path: Path, what: str) -> None:
    if not path.exists():
        raise CheckpointError(f"{what} not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder where the {what} should be a file; put the file itself there "
                              "(or point at the checkpoint folder that holds it)")


# ------------------------------------------------------------------------------ JSON
class _NotFinite(ValueError):
    pass


def _no_constant(word):  # NaN, Infinity, -Infinity: not JSON, though Python's parser takes them
    raise _NotFinite(word)


def parse_json(text, source, what: str, fix: str, max_depth: int = MAX_JSON_DEPTH) -> dict:
    """JSON text from a checkpoint (a config, an index, a header, metadata) -> dict; CheckpointError otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{source}: the {what} is not UTF-8 text (a corrupt file); {fix}") from None
    if len(text) <= 1_000_000:  # a cheap scan; a longer text (a big header) relies on the parser's own limit
        depth = json_depth(text)
        if depth > max_depth:
            raise CheckpointError(f"{source}: the {what} is nested {depth} levels deep (at most {max_depth}); {fix}")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise CheckpointError(f"{source}: the {what} is nested too deeply; {fix}") from None
    except _NotFinite as e:
        raise CheckpointError(f"{source}: the {what} holds {e.args[0]}, not a finite number; {fix}") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{source}: the {what} is not valid JSON ({e.msg} at line {e.lineno} column "
                              f"{e.colno}); {fix}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{source}: the {what} is a JSON {type(value).__name__}, not an object "
                              f"({{\"key\": value, ...}}); {fix}")
    return value


def read_json(path: Path, what: str, fix: str) -> dict:
    """A JSON object file of a checkpoint (config.json, a shard index)."""
    path = Path(path)
    _a_file(path, what)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise CheckpointError(f"{path}: {size} bytes is too big for a {what} (at most {MAX_JSON_BYTES}); {fix}")
    return parse_json(path.read_bytes(), path, what, fix)


# ------------------------------------------------------------------------------ safetensors
def read_header(path: Path) -> dict:
    """The checked header of a safetensors file: {tensor name: {"dtype", "shape", "data_offsets"}, ...,
    "__metadata__": {str: str}}. Every entry has a known dtype, a shape of non-negative integers and
    offsets whose length equals shape x dtype size, within the file."""
    path = Path(path)
    _a_file(path, "weights file")
    refuse_pickle(path)
    size = path.stat().st_size
    pickle_error = CheckpointError(f"{path}: this is a pickle/zip file named .safetensors; refused (convert it)")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: file is truncated ({size} bytes), not a safetensors file; {REDOWNLOAD}")
        header_len = int.from_bytes(head, "little")
        # A zip/pickle start is only told apart after the header fails: a valid header length can begin
        # with the byte 0x80 too (e.g. 640 = 80 02 00 ...).
        pickled = head[:2] == b"PK" or head[:1] == b"\x80"
        if header_len <= 0 or 8 + header_len > size or header_len > MAX_HEADER_BYTES:
            if pickled:
                raise pickle_error
            raise CheckpointError(f"{path}: corrupt or truncated safetensors header; {REDOWNLOAD}")
        raw = f.read(header_len)
    try:
        header = parse_json(raw, path, "safetensors header", REDOWNLOAD, max_depth=4)
    except CheckpointError as e:
        if pickled:
            raise pickle_error from None
        if "not valid JSON" in str(e) or "not UTF-8" in str(e):
            raise CheckpointError(f"{path}: corrupt safetensors header (not JSON); {REDOWNLOAD}") from None
        raise
    data_size = size - 8 - header_len
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise CheckpointError(f"{path}: the header's __metadata__ must map text to text; {REDOWNLOAD}")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise CheckpointError(f"{where}: a header entry needs dtype, shape and data_offsets (got "
                                  f"{str(entry)[:80]}); {REDOWNLOAD}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise CheckpointError(f"{where}: unknown dtype {str(dtype)[:40]!r}; {REDOWNLOAD}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise CheckpointError(f"{where}: shape {str(shape)[:80]} is not a list of sizes; {REDOWNLOAD}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(f"{where}: data_offsets {str(offsets)[:80]} are not [begin, end]; {REDOWNLOAD}")
        needed = math.prod(shape) * DTYPE_BYTES[dtype]
        if offsets[1] - offsets[0] != needed:
            raise CheckpointError(f"{where}: {dtype} {shape} needs {needed} bytes but its data_offsets hold "
                                  f"{offsets[1] - offsets[0]} (dtype or size mismatch); {REDOWNLOAD}")
        end = max(end, offsets[1])
    if end > data_size:
        raise CheckpointError(
            f"{path}: truncated: the header needs {8 + header_len + end} bytes but the file has {size}; {REDOWNLOAD}"
        )
    return header


def check_safetensors(path: Path) -> None:
    """Fail early, with the file named, on a missing, pickled, truncated or corrupt file."""
    read_header(path)


def safetensors_metadata(path: Path) -> dict:
    return dict(read_header(path).get("__metadata__", {}))


def read_shapes(files: list[Path]) -> dict[str, tuple]:
    shapes = {}
    for file in files:
        for key, entry in read_header(file).items():
            if key != "__metadata__":
                shapes[key] = tuple(entry["shape"])
    return shapes


def weight_mismatches(model, shapes: dict[str, tuple], ignore=lambda key: False) -> str:
    """How a file's tensor shapes differ from a model's state dict, as one message ('' when they fit).

    Keys for which ignore(key) is true may be in the file without being in the model (e.g. training-only
    heads); at most 8 keys of each kind are named.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(k for k in set(shapes) - set(expected) if not ignore(k))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != tuple(shapes[k]))

    def show(keys):
        return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

    parts = []
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    if wrong:
        parts.append("shape mismatch: " + show([f"{k} {tuple(shapes[k])} != {expected[k]}" for k in wrong]))
    return "; ".join(parts)
