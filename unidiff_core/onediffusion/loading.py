"""Safe checkpoint loading: safetensors only, straight into the target dtype, strict keys, no network.

Layouts:
* a diffusers-layout folder with `transformer/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`
  (the released OneDiffusion repository);
* a single transformer `.safetensors` file (e.g. a bf16 repack) with the VAE and the text encoder
  given separately. Its config comes from a `config.json` beside it, the file's metadata
  (`config` key), or is inferred from the tensor shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path

import torch

from ..common.errors import CheckpointError, Interrupted
from ..common.safetensors_io import (PICKLE_SUFFIXES, check_safetensors, parse_json, read_json, read_shapes,
                                     refuse_pickle, safetensors_metadata, weight_mismatches)
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
        files = index_files(index)
    else:
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        hint = f" (found pickle files {pickles}, which are refused: convert them to safetensors)" if pickles else ""
        raise CheckpointError(f"{path}: no {TRANSFORMER_WEIGHTS}{hint}")
    for file in files:
        check_safetensors(file)
    return files, config


def index_files(index: Path) -> list[Path]:
    """The shard files a `*.safetensors.index.json` names in its weight_map (each inside the index's folder)."""
    fix = "re-download the index with its shards"
    weight_map = read_json(index, "shard index", fix).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"{index}: a shard index needs a weight_map {{tensor name: shard file}} (got "
                              f"{str(weight_map)[:80]}); {fix}")
    files = []
    for name in sorted(set(weight_map.values())):
        file = index.parent / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{index}: shard {name!r} is outside the checkpoint folder; {fix}")
        files.append(file)
    return files


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
            config = NextDiTConfig.from_dict(parse_json(meta, files[0], "config in the metadata", "re-save the file"),
                                             str(files[0])) if meta else infer_config(shapes, str(path))
    layers = len({k.split(".")[1] for k in shapes if k.startswith("layers.")})
    if layers != config.depth:  # before building: a config's depth sizes the work
        low, high = sorted((layers, config.depth))
        keys = f"layers.{low}.*" + (f" ... layers.{high - 1}.*" if high - low > 1 else "")
        raise CheckpointError(f"{path}: weights do not match the config ({'missing' if config.depth > layers else 'unexpected'} "
                              f"keys: {keys}: the config has depth {config.depth}, the weights hold {layers} "
                              "layers); use the config.json that came with these weights")
    model = build_on_meta(config, operations, attention)
    check_keys(model, shapes, str(path))
    return files, model


def check_interrupt(interrupt) -> None:
    """Cancel while loading: `interrupt()` True stops the load (nothing half-loaded is kept)."""
    if interrupt is not None and interrupt():
        raise Interrupted("loading was cancelled")


def load_transformer(path: str | os.PathLike, dtype: torch.dtype = torch.float32, device="cpu",
                     config: NextDiTConfig | None = None, operations=None, attention=None,
                     interrupt=None) -> NextDiT:
    """Load a NextDiT tensor by tensor straight into `dtype` on `device` (no full fp32 copy in RAM).
    `interrupt()` is asked before each tensor: True stops the load (Interrupted)."""
    from safetensors import safe_open

    files, model = open_transformer(path, config, operations, attention)
    state = {}
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in f.keys():
                check_interrupt(interrupt)
                state[key] = f.get_tensor(key).to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------------------ VAE and T5
# Sanity limits of the config fields that size the VAE and the T5 encoder (diffusers / transformers build
# whatever a config.json declares): far above the real ones (SD3 VAE: 4 blocks of <= 512 channels; T5-XL:
# 24 layers, d_model 2048, d_ff 5120), far below what would tie a loader up. Field -> (lowest, highest);
# a list field is checked item by item.
VAE_LIMITS = {"block_out_channels": (1, 8192), "layers_per_block": (1, 64), "latent_channels": (1, 1024),
              "in_channels": (1, 64), "out_channels": (1, 64), "norm_num_groups": (1, 1024),
              "sample_size": (1, 1 << 16)}
T5_LIMITS = {"num_layers": (1, 256), "num_decoder_layers": (0, 256), "d_model": (1, 65536), "d_ff": (1, 1 << 18),
             "d_kv": (1, 4096), "num_heads": (1, 1024), "vocab_size": (1, 1 << 21),
             "relative_attention_num_buckets": (1, 4096), "relative_attention_max_distance": (1, 1 << 20)}
MAX_LIST = 16  # block_out_channels and the like: a handful of stages


def check_config(path: Path, what: str, limits: dict) -> dict:
    """A part's config.json read by the one reader, each field that sizes work checked against `limits`."""
    fix = f"re-download {path.parent.name}/config.json"
    config = read_json(path, f"{what} config", fix)
    for key, (low, high) in limits.items():
        if key not in config or config[key] is None:
            continue
        value = config[key]
        items = value if isinstance(value, list) else [value]
        if not (isinstance(value, list) and 0 < len(value) <= MAX_LIST or not isinstance(value, list)) or \
                not all(type(v) is int for v in items):
            raise CheckpointError(f"{path}: {key} = {str(value)[:60]} is not "
                                  + ("a list of integers" if isinstance(value, list) else "an integer") + f"; {fix}")
        if not all(low <= v <= high for v in items):
            raise CheckpointError(f"{path}: {key} = {str(value)[:60]} is outside the sane range {low}..{high} for "
                                  f"a {what}; {fix}")
    return config


def _check_subfolder(path: Path, what: str, weights: str, limits: dict) -> None:
    if not path.is_dir():
        raise CheckpointError(f"{what} folder not found: {path}")
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: missing config.json of the {what}")
    check_config(path / "config.json", what, limits)
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if not (path / weights).exists() and not indexes:
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        hint = f" (found pickle files {pickles}: refused, convert them to safetensors)" if pickles else ""
        raise CheckpointError(f"{path}: no {weights}{hint}")
    if (path / weights).exists():
        check_safetensors(path / weights)
    else:
        for file in index_files(indexes[0]):
            check_safetensors(file)


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
        except Exception as e:  # noqa: BLE001  (diffusers raises many types for one broken file)
            raise CheckpointError(f"{path}: not a 16-channel SD3 VAE file ({type(e).__name__}: {str(e)[:300]})") from None
    else:
        _check_subfolder(path, "VAE", "diffusion_pytorch_model.safetensors", VAE_LIMITS)
        if is_codec_folder(path):  # a fixed pixel-space codec declared in place of the VAE (small checkpoints)
            try:
                return load_codec(path, dtype=dtype, device=device)
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                raise CheckpointError(f"{path}: cannot load the pixel codec: {e}") from None
        try:
            model = AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True,
                                                  use_safetensors=True, low_cpu_mem_usage=_has_accelerate())
        except Exception as e:  # noqa: BLE001  (diffusers raises many types for one broken file)
            raise CheckpointError(f"{path}: cannot load the VAE ({type(e).__name__}: {str(e)[:300]}); re-download "
                                  "vae/") from None
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
    _check_subfolder(encoder_path, "text encoder", "model.safetensors", T5_LIMITS)
    check_tokenizer(tokenizer_path)
    hf_logging.disable_progress_bar()
    try:  # the tokenizer and the encoder separately: an error blames the part that failed
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
    except Exception as e:  # noqa: BLE001  (transformers raises many types for one broken file)
        raise CheckpointError(f"{tokenizer_path}: cannot load the tokenizer ({type(e).__name__}: {str(e)[:200]}); "
                              "re-download the tokenizer files (spiece.model, tokenizer.json, tokenizer_config.json)"
                              ) from None
    try:
        encoder = T5EncoderModel.from_pretrained(str(encoder_path), dtype=dtype, local_files_only=True,
                                                 use_safetensors=True)
    except Exception as e:  # noqa: BLE001  (transformers raises many types for one broken file)
        raise CheckpointError(f"{encoder_path}: cannot load the T5 text encoder ({type(e).__name__}: "
                              f"{str(e)[:300]}); re-download text_encoder/") from None
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
        _check_subfolder(parts.vae, "VAE", "diffusion_pytorch_model.safetensors", VAE_LIMITS)
    _check_subfolder(parts.text_encoder, "text encoder", "model.safetensors", T5_LIMITS)
    check_tokenizer(parts.tokenizer)
    load_scheduler_config(parts.scheduler)


TOKENIZER_FIX = "re-download the tokenizer files (spiece.model, tokenizer.json, tokenizer_config.json)"


def check_tokenizer(path: Path) -> None:
    """The tokenizer folder and its files, each read by the library that owns it; a broken file is named (the
    tokenizer is blamed, not the text encoder)."""
    if not path.is_dir() or not any((path / n).exists() for n in ("spiece.model", "tokenizer.json")):
        raise CheckpointError(f"tokenizer not found: {path} needs spiece.model or tokenizer.json")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (path / name).exists():
            read_json(path / name, f"tokenizer file {name}", TOKENIZER_FIX)
    if (path / "tokenizer.json").exists():
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001  (the Rust library raises plain Exception)
            raise CheckpointError(f"{path / 'tokenizer.json'}: not a readable tokenizer ({str(e)[:160]}); "
                                  f"{TOKENIZER_FIX}") from None
    if (path / "spiece.model").exists():
        import sentencepiece

        try:
            sentencepiece.SentencePieceProcessor(model_file=str(path / "spiece.model"))
        except (OSError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"{path / 'spiece.model'}: not a readable SentencePiece model ({str(e)[:160]}); "
                                  f"{TOKENIZER_FIX}") from None


def load_scheduler_config(path: Path) -> dict:
    from .schedule import DEFAULT_SCHEDULER_CONFIG

    file = path / "scheduler_config.json"
    if not file.exists():
        return dict(DEFAULT_SCHEDULER_CONFIG)
    fix = "re-download scheduler/ (or delete scheduler_config.json: the defaults apply)"
    config = dict(DEFAULT_SCHEDULER_CONFIG, **read_json(file, "scheduler config", fix))
    for key, default in DEFAULT_SCHEDULER_CONFIG.items():  # the fields the schedule reads: their types
        value = config[key]
        ok = isinstance(value, bool) if isinstance(default, bool) else (
            type(value) in (int, float) and (type(default) is float or type(value) is int))
        if not ok:
            raise CheckpointError(f"{file}: {key} = {str(value)[:60]!r} is not {type(default).__name__}; {fix}")
    if not 1 <= config["num_train_timesteps"] <= 1_000_000 or config["max_image_seq_len"] == config["base_image_seq_len"]:
        raise CheckpointError(f"{file}: num_train_timesteps must be 1..1000000 and max_image_seq_len differ from "
                              f"base_image_seq_len (got {config['num_train_timesteps']}, {config['max_image_seq_len']}, "
                              f"{config['base_image_seq_len']}); {fix}")
    return config
