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


def write_model_index(folder: Path, size: int | None = None) -> None:
    """model_index.json: the parts' classes, and the defaults the checkpoint declares (its native size; the
    empty negative prompt it was trained with as the dropped prompt)."""
    defaults = {"height": size, "width": size} if size else {}
    (Path(folder) / "model_index.json").write_text(json.dumps({
        "_class_name": "OneDiffusionPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5Tokenizer"],
        "vae": ["unidiff_core", "LinearPatchCodec"], "unidiff_defaults": dict(defaults, negative_prompt=""),
    }, indent=2) + "\n")


def publish(run_checkpoint, target, size: int) -> Path:
    """Copy a run's checkpoint to its place in the repository (e.g. models/UniDiff-Mini), declaring its size."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        if (target / part).exists():
            shutil.rmtree(target / part)
        shutil.copytree(Path(run_checkpoint) / part, target / part)
    shutil.copy(Path(run_checkpoint) / "training.json", target / "training.json")
    write_model_index(target, size)
    return target


def export_checkpoint(folder, transformer, text_encoder, tokenizer_dir, codec, card: dict | None = None,
                      size: int | None = None) -> Path:
    """Write every part; an existing folder is replaced only once the new one is complete. `size` is declared
    as the checkpoint's native size, with the empty negative prompt the model was trained with (dropout)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_transformer(transformer, tmp / "transformer")
    (codec if hasattr(codec, "save_pretrained") else codec.model).save_pretrained(tmp / "vae")  # codec or VAE
    text_encoder.save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
    shutil.copytree(Path(tokenizer_dir), tmp / "tokenizer")
    (tmp / "scheduler").mkdir()
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        dict(_class_name="FlowMatchEulerDiscreteScheduler", **DEFAULT_SCHEDULER_CONFIG), indent=2) + "\n")
    write_model_index(tmp, size)
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


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="copy a trained run's checkpoint into the repository")
    p.add_argument("--run", required=True, help="run folder of training.train (its checkpoint/ is copied)")
    p.add_argument("--to", required=True, help="target folder, e.g. models/UniDiff-Mini")
    p.add_argument("--size", type=int, required=True, help="native size to declare (the recipe's size)")
    a = p.parse_args()
    print(publish(Path(a.run) / "checkpoint", a.to, a.size))
