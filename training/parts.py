"""The parts trained or fitted before (or with) the transformer when no pretrained ones are given.

* `fit_codec`: the pixel-space codec's fixed basis = the 16 principal components of 8x8 RGB patches
  of generated frames (a linear space-to-depth map; see unidiff_core/onediffusion/pixel_codec.py).
* `train_refiner`: the codec's decoder refiner, a small conv net that sharpens the linear decode (edges of
  shapes, label maps and stick figures); the encoder, and so the transformer's latents, stay as fitted.
* `train_tokenizer`: a SentencePiece unigram model (T5's tokenizer format, so the reference pipeline
  can load it too) over generated prompts, with every task token as one piece and byte fallback
  for characters it never saw.
* `tiny_t5`: a small T5 encoder trained jointly with the transformer.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import torch

from unidiff_core.onediffusion.pixel_codec import DecoderRefiner, LinearPatchCodec
from unidiff_core.onediffusion.tasks import TASKS

from .data import make_sample
from .data.samples import as_tensor

PATCH = 8
LATENT_CHANNELS = 16
# The words of every prompt a user might type beyond the generator's: letters, digits, punctuation.
EXTRA_TEXT = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()[]<>#-_/+=*&%"


def corpus(tasks: list[str], seeds, size: int = 64):
    """Generated samples of the tasks in turn (seed i -> task i mod len)."""
    for i, seed in enumerate(seeds):
        yield make_sample(tasks[i % len(tasks)], seed, size)


def fit_codec(tasks: list[str], seeds, size: int = 64, per_channel: bool = True) -> LinearPatchCodec:
    """PCA of 8x8 patches (in -1..1) of every image frame of the samples; each channel scaled to unit std
    (`per_channel`), or one global scale to unit std over all channels (UniDiff-Mini's first release)."""
    frames = [as_tensor(v) for s in corpus(tasks, seeds, size) for v in s.frame_values() if not isinstance(v, torch.Tensor)]
    pixels = torch.stack(frames) * 2 - 1
    patches = torch.nn.functional.pixel_unshuffle(pixels.double(), PATCH).permute(0, 2, 3, 1).reshape(-1, 3 * PATCH ** 2)
    mean = patches.mean(0)
    cov = torch.cov((patches - mean).T)
    eigvals, eigvecs = torch.linalg.eigh(cov)
    basis = eigvecs[:, eigvals.argsort(descending=True)[:LATENT_CHANNELS]].T  # (16, 192) orthonormal rows
    basis = basis * torch.where(basis.sum(1, keepdim=True) < 0, -1.0, 1.0).to(basis)  # fixed sign convention
    codec = LinearPatchCodec(basis.float(), mean.float(), PATCH)
    z = codec.encode(pixels.float())
    if per_channel:  # each channel unit variance (see pixel_codec.py for why)
        codec.channel_std.copy_(z.transpose(0, 1).reshape(LATENT_CHANNELS, -1).std(1))
    else:
        codec.scaling_factor = float(1.0 / z.std())
    return codec


def train_refiner(codec: LinearPatchCodec, tasks: list[str], seeds, size: int = 64, width: int = 32, layers: int = 4,
                  steps: int = 1500, batch: int = 16, lr: float = 2e-3, latent_noise: float = 0.05, seed: int = 0,
                  log=None) -> LinearPatchCodec:
    """Fit a DecoderRefiner to the codec (set in place and returned): MSE between the refined decode of a
    frame's latents and the frame, over every image frame of the samples. The latents get Gaussian noise of
    `latent_noise` times their std, because the sampler's latents are never exactly a clean frame's.
    Cosine learning rate, deterministic in `seed`."""
    frames = [as_tensor(v) for s in corpus(tasks, seeds, size) for v in s.frame_values() if not isinstance(v, torch.Tensor)]
    pixels = torch.stack(frames) * 2 - 1
    codec.refiner = None
    with torch.no_grad():
        latents = codec.encode(pixels)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    refiner = DecoderRefiner(codec.latent_channels, codec.patch_size, width, layers)
    opt = torch.optim.AdamW(refiner.parameters(), lr, weight_decay=0.0)
    spread = float(latents.std())
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        pick = torch.randint(len(pixels), (batch,), generator=generator)
        z = latents[pick] + latent_noise * spread * torch.randn(latents[pick].shape, generator=generator)
        with torch.no_grad():
            linear = codec.decode_linear(z)
        loss = torch.nn.functional.mse_loss(refiner(linear, z * codec.scaling_factor), pixels[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log is not None and (step % 250 == 0 or step == steps - 1):
            log(f"decoder refiner step {step + 1}/{steps}: loss {loss.item():.5f}")
    codec.refiner = refiner.eval().requires_grad_(False)
    return codec


def train_tokenizer(tasks: list[str], seeds, folder: Path, size: int = 64) -> Path:
    """spiece.model + tokenizer_config.json (T5Tokenizer) in `folder`."""
    import sentencepiece as spm

    lines = [s.prompt for s in corpus(tasks, seeds, size)] + [EXTRA_TEXT] * 20
    symbols = sorted({spec.token for spec in TASKS.values()} | {f"[[img{i}]]" for i in range(4)})
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=2000, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, user_defined_symbols=symbols,
        byte_fallback=True, character_coverage=1.0, num_threads=1, minloglevel=2)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
        "extra_ids": 0, "additional_special_tokens": [], "model_max_length": 300, "legacy": False}, indent=2) + "\n")
    return folder


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def tiny_t5(vocab_size: int, width: int, layers: int = 2, heads: int = 4, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab_size, d_model=width, d_kv=width // heads, d_ff=2 * width, num_layers=layers,
                      num_heads=heads, feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                      dropout_rate=0.0, pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(config)
