"""Loading MMGen checkpoints without holding them in memory, and converting the released ones.

Accepted:
* the released training checkpoint `0600000.pt` / `0620000.pt`: a torch zip pickle {model, ema, opt, args,
  steps} (11 GB: model + EMA + AdamW state). Read with `torch.load(weights_only=True, mmap=True)`, allowing
  one extra global, `argparse.Namespace` (the legacy `args`); the newer files store `args` as a dict.
  Inference uses `ema`; `model` and `opt` are never touched, so they are never read from disk.
* an EMA `.safetensors` (config from its metadata, a config.json beside it, or the tensor shapes);
* a converted folder: `config.json` (family "mmgen") + `model.safetensors` (`convert` writes it).

Weights are copied tensor by tensor into the model and each source tensor's file pages are dropped
right after (madvise), so peak memory stays near the EMA weights' size.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..common.errors import CheckpointError, InputError
from ..common.safetensors_io import check_safetensors, weight_mismatches
from .config import SIT_MODELS, SIT_SIZES, TINY_MODELS, MMGenConfig, named_config
from .detect import CONFIG_NAME, FAMILY
from .model import MMGenSiT

WEIGHTS_NAME = "model.safetensors"
RELEASE_RESOLUTION = 256
RELEASE_TASKS = 4
_ST_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


# ---------------------------------------------------------------------------------------------- the .pt file
def read_training_checkpoint(path: Path) -> dict:
    """The released dict, memory-mapped: tensors are views of the file until read."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any other global (code could run while unpickling).
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: refused: the pickle needs more than tensors and argparse.Namespace "
                              f"({first}); only MMGen's released checkpoint format is accepted. Convert the weights "
                              "to .safetensors with the code that made them") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({size} bytes; {str(e).splitlines()[0]}); "
                              "the file is truncated or corrupt: download it again and compare its SHA-256") from None
    if not isinstance(checkpoint, Mapping) or "ema" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: no 'ema' weights (found {keys}); expected MMGen's training checkpoint "
                              "{model, ema, opt, args, steps}")
    if "args" not in checkpoint:
        raise CheckpointError(f"{path}: no 'args' (the training arguments name the model); expected MMGen's "
                              "training checkpoint {model, ema, opt, args, steps}")
    return checkpoint


def checkpoint_args(args) -> dict:
    """The training arguments as a dict (legacy argparse.Namespace or the newer dict)."""
    if isinstance(args, argparse.Namespace):
        return dict(vars(args))
    if isinstance(args, Mapping):
        return dict(args)
    raise CheckpointError(f"checkpoint 'args' is a {type(args).__name__}; expected a Namespace or a dict")


def config_from_args(args: dict, shapes: dict, source) -> MMGenConfig:
    """Model name -> sizes and heads; checks the flags the released inference requires; projector widths
    from the shapes."""
    name = args.get("model")
    if name not in SIT_MODELS:
        raise CheckpointError(f"{source}: model {name!r} is not an MMGen SiT (known: {', '.join(SIT_MODELS)})")
    checks = [("resolution", RELEASE_RESOLUTION), ("num_tasks", RELEASE_TASKS), ("is_mmcat_diff", True),
              ("use_decouple_task", True), ("use_taskcond_emb", True)]
    for key, want in checks:
        if args.get(key) != want:
            raise CheckpointError(f"{source}: args.{key} = {args.get(key)!r}; the MMGen release layout needs {want!r}")
    if args.get("use_decouple_latent"):
        raise CheckpointError(f"{source}: per-latent-pixel time embeddings (use_decouple_latent) are not supported")
    if args.get("qk_norm"):
        raise CheckpointError(f"{source}: qk_norm checkpoints are not supported (the released models have none)")
    if args.get("path_type", "linear") != "linear":
        raise CheckpointError(f"{source}: path_type {args.get('path_type')!r} is not supported; only 'linear'")
    z_dims, k = [], 0
    while f"projectors.{k}.4.weight" in shapes:
        z_dims.append(int(shapes[f"projectors.{k}.4.weight"][0]))
        k += 1
    extra = {}
    if z_dims:
        extra.update(z_dims=tuple(z_dims), projector_dim=int(shapes["projectors.0.0.weight"][0]))
    return named_config(name, num_classes=int(args.get("num_classes", 1000)),
                        encoder_depth=int(args.get("encoder_depth", 8)),
                        # exp_sample's default when the args do not say (train.py saves True)
                        fused_attn=bool(args.get("fused_attn", False)), **extra)


def infer_config(shapes: dict, source) -> MMGenConfig:
    """Config from tensor shapes alone; the head count comes from the (depth, width) of a known model."""
    if "x_embedder.proj.weight" not in shapes or "pos_embed" not in shapes:
        raise CheckpointError(f"{source}: not MMGen SiT weights (no x_embedder.proj.weight / pos_embed)")
    hidden, in_ch, patch, _ = shapes["x_embedder.proj.weight"]
    depth = len({k.split(".")[1] for k in shapes if k.startswith("blocks.")})
    names = [n for n in SIT_MODELS if n.endswith(f"/{patch}")]
    for name in names:
        size = TINY_MODELS.get(name) or SIT_SIZES[name.split("/")[0]]
        if size[:2] == (depth, hidden):
            z = {"z_dims": (int(shapes["projectors.0.4.weight"][0]),),
                 "projector_dim": int(shapes["projectors.0.0.weight"][0])} if "projectors.0.4.weight" in shapes else {}
            return named_config(name, num_classes=int(shapes["y_embedder.embedding_table.weight"][0]) - 1, **z)
    raise CheckpointError(f"{source}: depth {depth}, width {hidden}, patch {patch} match no known SiT model; "
                          f"put a config.json (with model_name and num_heads) beside the weights")


def check_shapes(model: torch.nn.Module, shapes: dict, source, config: MMGenConfig) -> None:
    """Every weight the model needs is there with the config's shape; nothing unknown besides the projectors."""
    problems = weight_mismatches(model, shapes, ignore=lambda key: key.startswith("projectors."))
    if problems:
        raise CheckpointError(f"{source}: the weights do not fit the config {config.model_name} (depth "
                              f"{config.depth}, width {config.hidden_size}, patch {config.patch_size}): "
                              f"{problems}. Fix the config (model name) or use the matching weights")


# ------------------------------------------------------------------------------- page release and copying
_LIBC = None


def _drop_pages(tensor: torch.Tensor) -> None:
    """Tell the kernel we are done with a memory-mapped tensor's pages (they leave this process's RSS)."""
    global _LIBC
    if os.name != "posix":
        return
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        page = mmap.PAGESIZE
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        lo, hi = (start + page - 1) // page * page, end // page * page
        if hi > lo:
            _LIBC.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 4)  # MADV_DONTNEED
    except (OSError, AttributeError):
        pass


def _fill(model: torch.nn.Module, tensors, drop_pages: bool) -> None:
    """Copy (name, tensor) pairs into the model's parameters, converting dtype and device per tensor."""
    params = dict(model.state_dict(keep_vars=True))
    for name, tensor in tensors:
        target = params.get(name)
        if target is None:  # projectors when they are skipped
            continue
        with torch.no_grad():
            target.copy_(tensor)
        if drop_pages:
            _drop_pages(tensor)


# ------------------------------------------------------------------------------------------ safetensors
def safetensors_header(path: Path) -> tuple[dict, int]:
    """(header, data offset) of a safetensors file that passed the common truncation/pickle checks."""
    check_safetensors(path)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)), 8 + n


def iter_safetensors(path: Path, header: dict, offset: int):
    """(name, tensor) one at a time, read with plain file reads (no mapping of the whole file)."""
    with open(path, "rb") as f:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] not in _ST_DTYPES:
                raise CheckpointError(f"{path}: tensor {name} has dtype {info['dtype']}; expected F32/BF16/F16")
            start, end = info["data_offsets"]
            out = torch.empty(info["shape"], dtype=_ST_DTYPES[info["dtype"]])
            f.seek(offset + start)
            view = memoryview(out.view(-1).view(torch.uint8).numpy()) if out.numel() else memoryview(b"")
            if out.numel() and f.readinto(view) != end - start:
                raise CheckpointError(f"{path}: truncated while reading {name}; download the file again")
            yield name, out


# ------------------------------------------------------------------------------------------ entry points
def load_model(path, dtype=torch.float32, device="cpu", projectors: bool = False,
               fused_attn: bool | None = None) -> MMGenSiT:
    """An MMGen SiT in eval mode from any accepted form (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        config, tensors_of, shapes = _folder(path)
    elif path.suffix.lower() in (".pt", ".pth"):
        config, tensors_of, shapes = _training(path)
    elif path.suffix.lower() == ".safetensors":
        config, tensors_of, shapes = _safetensors(path)
    else:
        raise CheckpointError(f"{path}: expected the released .pt, an EMA .safetensors or a converted folder")
    if fused_attn is not None:
        config = MMGenConfig.from_dict({**config.to_dict(), "fused_attn": fused_attn})
    if projectors and "projectors.0.0.weight" not in shapes:
        raise CheckpointError(f"{path}: has no projector heads (a converted file drops them)")
    with torch.device("meta"):
        model = MMGenSiT(config, projectors=projectors)
    check_shapes(model, shapes, path, config)
    model = model.to_empty(device=device).to(dtype)
    tensors, drop = tensors_of()
    _fill(model, tensors, drop)
    return model.eval().requires_grad_(False)


def _training(path: Path):
    checkpoint = read_training_checkpoint(path)
    ema = checkpoint["ema"]
    shapes = {k: tuple(v.shape) for k, v in ema.items()}
    config = config_from_args(checkpoint_args(checkpoint["args"]), shapes, path)
    return config, lambda: (iter(ema.items()), True), shapes


def _safetensors(path: Path, config: MMGenConfig | None = None):
    header, offset = safetensors_header(path)
    shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    meta = header.get("__metadata__") or {}
    if config is None:
        config = _config_from_metadata(meta, shapes, path)
    if config is None and (path.parent / CONFIG_NAME).is_file():
        config = _read_config(path.parent / CONFIG_NAME)
    if config is None:
        config = infer_config(shapes, path)
    return config, lambda: (iter_safetensors(path, header, offset), False), shapes


def _config_from_metadata(meta: dict, shapes: dict, path: Path) -> MMGenConfig | None:
    try:
        if "config" in meta:
            return MMGenConfig.from_dict(json.loads(meta["config"]))
        if "mmgen_ref" in meta:  # an EMA copy with the training args
            return config_from_args(json.loads(meta["mmgen_ref"])["args"], shapes, path)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable MMGen config in the file's metadata ({e})") from None
    return None


def _read_config(path: Path) -> MMGenConfig:
    try:
        data = json.loads(path.read_text())
        data.pop("family", None)
        return MMGenConfig.from_dict(data.get("config", data))
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable MMGen config ({e}); write it again with `convert`") from None


def _folder(path: Path):
    if not (path / CONFIG_NAME).is_file():
        raise CheckpointError(f"{path}: no {CONFIG_NAME}; a converted MMGen folder has {CONFIG_NAME} + {WEIGHTS_NAME}")
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{path}: no {WEIGHTS_NAME}; convert the released checkpoint again")
    return _safetensors(weights, _read_config(path / CONFIG_NAME))


def convert(src, out, dtype: str = "fp32") -> Path:
    """Released .pt -> OUT/{config.json, model.safetensors}: the EMA weights alone (no projectors, no
    optimizer state), fp32 or bf16."""
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(dtype)
    if torch_dtype is None:
        raise InputError("dtype", dtype, "not a conversion dtype", "use fp32 or bf16")
    src, out = Path(src), Path(out)
    if src.suffix.lower() not in (".pt", ".pth"):
        raise CheckpointError(f"{src}: convert reads the released training checkpoint (.pt)")
    checkpoint = read_training_checkpoint(src)
    ema = checkpoint["ema"]
    shapes = {k: tuple(v.shape) for k, v in ema.items()}
    args = checkpoint_args(checkpoint["args"])
    config = config_from_args(args, shapes, src)
    with torch.device("meta"):
        model = MMGenSiT(config, projectors=False)
    check_shapes(model, shapes, src, config)
    names = list(model.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": json.dumps(config.to_dict()), "family": FAMILY, "source": src.name,
            "steps": str(checkpoint.get("steps", ""))}

    # Streamed: each EMA tensor is read, written and its pages dropped before the next.
    _write_streaming(out / WEIGHTS_NAME, names, ema, torch_dtype, meta)
    (out / CONFIG_NAME).write_text(json.dumps({"family": FAMILY, "config": config.to_dict(),
                                               "source": src.name, "steps": checkpoint.get("steps"),
                                               "dtype": dtype}, indent=2) + "\n")
    return out


def _write_streaming(path: Path, names: list, ema, dtype, metadata: dict) -> None:
    header, offset = {"__metadata__": metadata}, 0
    size = torch.tensor([], dtype=dtype).element_size()
    for name in names:
        nbytes = ema[name].numel() * size
        header[name] = {"dtype": _ST_NAMES[dtype], "shape": list(ema[name].shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(len(blob).to_bytes(8, "little"))
            f.write(blob)
            for name in names:
                src = ema[name]
                f.write(src.to(dtype).contiguous().view(-1).view(torch.uint8).numpy())
                _drop_pages(src)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
