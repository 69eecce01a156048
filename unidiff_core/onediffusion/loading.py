"""Safe checkpoint loading: safetensors only, straight into the target dtype, strict keys, no network.

Layouts:
* a diffusers-layout folder with `transformer/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`
  (the released OneDiffusion repository);
* a single transformer `.safetensors` file (e.g. a bf16 repack) with the VAE and the text encoder
  given separately. Its config comes from a `config.json` beside it, the file's metadata
  (`config` key), or is inferred from the tensor shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
import os
from pathlib import Path

import torch

from ..common.errors import CheckpointError
from ..common.safetensors_io import (PICKLE_SUFFIXES, check_safetensors, read_shapes, refuse_pickle,
                                     safetensors_metadata, weight_mismatches)
from .config import NextDiTConfig
from .model import NextDiT

TRANSFORMER_WEIGHTS = "diffusion_pytorch_model.safetensors"
TRANSFORMER_INDEX = "diffusion_pytorch_model.safetensors.index.json"


# ------------------------------------------------------------------------------ transformer
def transformer_files(path: Path) -> tuple[list[Path], Path | None]:
    """(weight files, config.json or None) for a folder or a single file."""
    if path.is_file():
        check_safetensors(path)
        config = path.with_suffix(".json") if path.with_suffix(".json").exists() else None
        if config is None and (path.parent / "config.json").exists():
            config = path.parent / "config.json"
        return [path], config
    if not path.is_dir():
        raise CheckpointError(f"transformer checkpoint not found: {path}")
    config = path / "config.json"
    if not config.exists():
        raise CheckpointError(f"{path}: missing config.json of the transformer")
    single, index = path / TRANSFORMER_WEIGHTS, path / TRANSFORMER_INDEX
    if single.exists():
        files = [single]
    elif index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = [path / name for name in sorted(set(weight_map.values()))]
    else:
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        hint = f" (found pickle files {pickles}, which are refused: convert them to safetensors)" if pickles else ""
        raise CheckpointError(f"{path}: no {TRANSFORMER_WEIGHTS}{hint}")
    for file in files:
        check_safetensors(file)
    return files, config


def infer_config(shapes: dict[str, tuple], source: str) -> NextDiTConfig:
    """Rebuild the NextDiT config from tensor shapes (for a bare single-file transformer)."""
    try:
        hidden = shapes["x_embedder.weight"][0]
        in_channels = shapes["x_embedder.weight"][1] // 4
        heads = shapes["layers.0.attention.gate"][0]
        kv_width, caption = shapes["layers.0.attention.wk_y.weight"]
        ffn = shapes["layers.0.feed_forward.w1.weight"][0]
    except KeyError as e:
        raise CheckpointError(f"{source}: not a NextDiT/OneDiffusion transformer (no {e.args[0]})") from None
    depth = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("layers."))
    head_dim = hidden // heads
    multiple_of = 256
    cfg = NextDiTConfig(hidden_size=hidden, in_channels=in_channels, depth=depth, num_heads=heads,
                        num_kv_heads=kv_width // head_dim, caption_channels=caption,
                        qk_norm="layers.0.attention.q_norm.weight" in shapes, multiple_of=multiple_of)
    if cfg.ffn_hidden_size != ffn:
        # Any width the formula can produce: pick the multiplier that gives exactly `ffn`.
        cfg.multiple_of = 1
        base = int(2 * (4 * hidden) / 3)
        cfg.ffn_dim_multiplier = (ffn + 0.5) / base
        if cfg.ffn_hidden_size != ffn:
            raise CheckpointError(f"{source}: cannot infer the FFN width {ffn}; put a config.json beside the file")
    return cfg


def check_keys(model: torch.nn.Module, shapes: dict[str, tuple], source: str) -> None:
    problems = weight_mismatches(model, shapes)
    if problems:
        raise CheckpointError(f"{source}: weights do not match the config ({problems})")


def build_on_meta(cfg: NextDiTConfig, operations=None, attention=None) -> NextDiT:
    with torch.device("meta"):
        return NextDiT(cfg, operations, attention)


def open_transformer(path: str | os.PathLike, config: NextDiTConfig | None = None, operations=None,
                     attention=None) -> tuple[list[Path], NextDiT]:
    """Weight files and a meta-device model whose keys and shapes were checked against them.

    The config comes from `config`, the config.json beside the weights, the file's metadata, or the
    tensor shapes, in that order. operations / attention: a host's layers and attention (see model.py).
    """
    path = Path(path)
    files, config_file = transformer_files(path)
    shapes = read_shapes(files)
    if config is None:
        if config_file is not None:
            config = NextDiTConfig.from_json(config_file)
        else:
            meta = safetensors_metadata(files[0]).get("config")
            config = NextDiTConfig.from_dict(json.loads(meta), str(files[0])) if meta else infer_config(shapes, str(path))
    model = build_on_meta(config, operations, attention)
    check_keys(model, shapes, str(path))
    return files, model


def load_transformer(path: str | os.PathLike, dtype: torch.dtype = torch.float32, device="cpu",
                     config: NextDiTConfig | None = None, operations=None, attention=None) -> NextDiT:
    """Load a NextDiT tensor by tensor straight into `dtype` on `device` (no full fp32 copy in RAM)."""
    from safetensors import safe_open

    files, model = open_transformer(path, config, operations, attention)
    state = {}
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in f.keys():
                state[key] = f.get_tensor(key).to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------------------ VAE and T5
def _check_subfolder(path: Path, what: str, weights: str) -> None:
    if not path.is_dir():
        raise CheckpointError(f"{what} folder not found: {path}")
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: missing config.json of the {what}")
    candidates = [path / weights] + sorted(path.glob("*.safetensors.index.json"))
    if not any(p.exists() for p in candidates):
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        hint = f" (found pickle files {pickles}: refused, convert them to safetensors)" if pickles else ""
        raise CheckpointError(f"{path}: no {weights}{hint}")
    if (path / weights).exists():
        check_safetensors(path / weights)


def load_vae(path: str | os.PathLike, dtype=torch.float32, device="cpu", single_file_config=None):
    """AutoencoderKL from a diffusers folder, or a single .safetensors (original SD3 or diffusers keys); a folder
    whose config.json declares the `LinearPatchCodec` gives that fixed pixel-space codec instead.

    A single file is read with the bundled SD3 VAE config unless `single_file_config` names a folder
    holding another config.json.
    """
    from diffusers import AutoencoderKL

    from .pixel_codec import is_codec_folder, load_codec
    from .vae import VAE

    path = Path(path)
    if path.is_file():
        check_safetensors(path)
        config_dir = Path(single_file_config or Path(__file__).parent / "configs" / "sd3_vae")
        try:
            model = AutoencoderKL.from_single_file(str(path), config=str(config_dir), torch_dtype=dtype,
                                                   local_files_only=True, low_cpu_mem_usage=_has_accelerate())
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise CheckpointError(f"{path}: not a 16-channel SD3 VAE file ({e})") from None
    else:
        _check_subfolder(path, "VAE", "diffusion_pytorch_model.safetensors")
        if is_codec_folder(path):  # a fixed pixel-space codec declared in place of the VAE (small checkpoints)
            try:
                return load_codec(path, dtype=dtype, device=device)
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                raise CheckpointError(f"{path}: cannot load the pixel codec: {e}") from None
        try:
            model = AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True,
                                                  use_safetensors=True, low_cpu_mem_usage=_has_accelerate())
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: cannot load the VAE: {e}") from None
    if model.config.latent_channels != 16:
        raise CheckpointError(f"{path}: the VAE has {model.config.latent_channels} latent channels; "
                              "OneDiffusion needs the 16-channel SD3 VAE")
    return VAE(model.to(device).eval().requires_grad_(False))


def _has_accelerate() -> bool:
    """diffusers' meta-device loading needs accelerate; without it the (small) VAE loads the plain way."""
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def load_text_encoder(encoder_path: str | os.PathLike, tokenizer_path: str | os.PathLike,
                      dtype=torch.float32, device="cpu"):
    from transformers import AutoTokenizer, T5EncoderModel
    from transformers.utils import logging as hf_logging

    from .text import TextEncoder

    encoder_path, tokenizer_path = Path(encoder_path), Path(tokenizer_path)
    _check_subfolder(encoder_path, "text encoder", "model.safetensors")
    check_tokenizer(tokenizer_path)
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
        encoder = T5EncoderModel.from_pretrained(str(encoder_path), dtype=dtype, local_files_only=True,
                                                 use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{encoder_path}: cannot load the T5 text encoder: {e}") from None
    return TextEncoder(tokenizer, encoder.to(device).eval().requires_grad_(False))


@dataclass
class CheckpointParts:
    """Where each part of a checkpoint is: a diffusers-layout folder, or a single transformer file
    with the other parts beside it or given separately."""

    transformer: Path
    vae: Path
    text_encoder: Path
    tokenizer: Path
    scheduler: Path  # folder of scheduler_config.json (may be missing: defaults apply)


def checkpoint_parts(checkpoint: str | os.PathLike, vae=None, text_encoder=None, tokenizer=None) -> CheckpointParts:
    root = Path(checkpoint)
    if not root.exists():
        raise CheckpointError(f"checkpoint not found: {root}")
    refuse_pickle(root)
    single_file = root.is_file()
    if single_file:
        check_safetensors(root)  # a bad file is the first thing to report
    base = root.parent if single_file else root

    def part(override, sub, what):
        if override is not None:
            return Path(override)
        if single_file and not (base / sub).is_dir():
            raise CheckpointError(f"{root} is a single transformer file: give the {what} separately")
        return base / sub

    vae_path = part(vae, "vae", "VAE")
    t5_path = part(text_encoder, "text_encoder", "text encoder")
    tok_path = Path(tokenizer) if tokenizer is not None else (
        t5_path.parent / "tokenizer" if (t5_path.parent / "tokenizer").is_dir() else t5_path)
    return CheckpointParts(transformer=root if single_file else root / "transformer",
                           vae=vae_path, text_encoder=t5_path, tokenizer=tok_path,
                           scheduler=base / "scheduler")


def preflight(checkpoint: str | os.PathLike, vae=None, text_encoder=None, tokenizer=None) -> None:
    """Every check of `UniDiffPipeline.from_pretrained`'s files that needs no weights read: the layout (the
    same sub-folders it would use), pickles, truncated/corrupt safetensors headers, the transformer's keys
    and shapes against its config (built on the meta device), the tokenizer. A host calls it before it
    drops a loaded model for a new one, so a bad checkpoint costs an error, not the model in memory."""
    parts = checkpoint_parts(checkpoint, vae, text_encoder, tokenizer)
    open_transformer(parts.transformer)
    if parts.vae.is_file():
        check_safetensors(parts.vae)
    else:
        _check_subfolder(parts.vae, "VAE", "diffusion_pytorch_model.safetensors")
    _check_subfolder(parts.text_encoder, "text encoder", "model.safetensors")
    check_tokenizer(parts.tokenizer)


def check_tokenizer(path: Path) -> None:
    if not path.is_dir() or not any((path / n).exists() for n in ("spiece.model", "tokenizer.json")):
        raise CheckpointError(f"tokenizer not found: {path} needs spiece.model or tokenizer.json")


def load_scheduler_config(path: Path) -> dict:
    from .schedule import DEFAULT_SCHEDULER_CONFIG

    file = path / "scheduler_config.json"
    if not file.exists():
        return dict(DEFAULT_SCHEDULER_CONFIG)
    return dict(DEFAULT_SCHEDULER_CONFIG, **json.loads(file.read_text()))
