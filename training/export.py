"""Write a trained model in the exact OneDiffusion folder layout, so the pack's loader and pipeline run it.

    checkpoint/
      transformer/  config.json + diffusion_pytorch_model.safetensors (NextDiT)
      vae/          config.json + diffusion_pytorch_model.safetensors (here the fixed pixel codec)
      text_encoder/ config.json + model.safetensors (T5 encoder)
      tokenizer/    spiece.model + tokenizer_config.json (T5Tokenizer)
      scheduler/    scheduler_config.json
      model_index.json
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from unidiff_core.onediffusion.schedule import DEFAULT_SCHEDULER_CONFIG


def save_transformer(model, folder: Path, dtype=torch.float32) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = dict(_class_name="NextDiT", **model.config.to_dict())
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))


def export_checkpoint(folder, transformer, text_encoder, tokenizer_dir, codec, card: dict | None = None) -> Path:
    """Write every part; an existing folder is replaced only once the new one is complete."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_transformer(transformer, tmp / "transformer")
    codec.save_pretrained(tmp / "vae")
    text_encoder.save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
    (tmp / "tokenizer").mkdir(parents=True)
    for name in ("spiece.model", "tokenizer_config.json"):
        shutil.copy(Path(tokenizer_dir) / name, tmp / "tokenizer" / name)
    (tmp / "scheduler").mkdir()
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        dict(_class_name="FlowMatchEulerDiscreteScheduler", **DEFAULT_SCHEDULER_CONFIG), indent=2) + "\n")
    (tmp / "model_index.json").write_text(json.dumps({
        "_class_name": "OneDiffusionPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5Tokenizer"],
        "vae": ["unidiff_core", "LinearPatchCodec"]}, indent=2) + "\n")
    if card:
        (tmp / "training.json").write_text(json.dumps(card, indent=2) + "\n")
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old)
    else:
        tmp.rename(folder)
    return folder
