"""The multi-task trainer: one script for one CPU process or many GPUs (Hugging Face accelerate).

    python -m training.train --recipe training/recipes/mini.json --out runs/mini          # CPU, 1 process
    torchrun --nproc_per_node 2 -m training.train --recipe ... --out runs/mini  # CPU, 2 single-thread processes
    accelerate launch -m training.train --recipe training/recipes/mini.json --out runs/mini   # GPUs / nodes
    python -m training.train ... --resume                        # go on from runs/mini/state
    ... --resume --window-minutes 10                             # train in windows (e.g. a lent GPU)
    python -m training.train --init models/UniDiff-Mini --lora-rank 8 --out runs/teal   # LoRA fine-tuning
    python -m training.train --init CKPT --data my_folder --task text2image --out runs/mine  # your own data

Each optimizer step draws `micro_batches` tasks by the recipe's weights; a micro-batch is
`batch_size` samples of one task (one frame layout). The loss is flow matching on the generated
frames only, with a noise level per frame (shared by the generated frames of a sample with
probability `shared_sigma`); condition frames stay clean and are shown at the timestep the sampler
shows them (the last of a schedule of 10-60 steps). The noising path is the core's
(`unidiff_core.common.flow`), prompts and layouts the task table's (via `training.data`).

Writes to --out: parts/ (codec and tokenizer, made once), state/ (resumable), losses.csv, losses.png,
checkpoint/ (EMA weights, OneDiffusion layout); with --lora-rank instead of checkpoint/ the adapter
lora/<name>.safetensors (the pack's LoRA format, unidiff_core/onediffusion/lora.py): peft adapters on the
transformer's attention and feed-forward linears, everything else (the T5 encoder too) frozen.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unidiff_core.common import flow
from unidiff_core.common.errors import InputError
from unidiff_core.onediffusion.config import NextDiTConfig
from unidiff_core.onediffusion.lora import save_lora
from unidiff_core.onediffusion.model import NextDiT
from unidiff_core.onediffusion.pixel_codec import load_codec
from unidiff_core.onediffusion.schedule import DEFAULT_SCHEDULER_CONFIG, make_schedule, shift_mu

from . import parts
from .data import TRAIN_SEEDS, make_sample
from .data.folder import FolderData
from .data.samples import LABEL_SHIFT_TASKS, VARIABLE_COUNTS, as_tensor
from .data.scenes import rng_for
from .export import export_checkpoint
from .matmul_precision import operations_for

CSV_FIELDS = ("step", "task", "loss", "lr", "elapsed_s")


# ------------------------------------------------------------------------------ recipe
def load_recipe(path, only_task: str | None = None, **overrides) -> dict:
    """The recipe file with the given overrides; `only_task` trains that generated task alone."""
    recipe = json.loads(Path(path).read_text())
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    if only_task is not None:
        recipe["tasks"] = {only_task: 1.0}
    generated = __import__("training.data", fromlist=["TASK_BUILDERS"]).TASK_BUILDERS
    unknown = set(recipe["tasks"]) - set(generated)
    if unknown:
        raise ValueError(f"recipe {path}: no data generator for tasks {sorted(unknown)}; "
                         f"use one of {sorted(generated)}")
    bad_shifts = {t: v for t, v in recipe.get("task_sigma_shift", {}).items()
                  if t not in generated or not isinstance(v, (int, float)) or not v > 0}
    if bad_shifts:
        raise ValueError(f"recipe {path}: task_sigma_shift {bad_shifts} needs generated task names and factors > 0 "
                         f"(1 keeps the sampler's shift); tasks: {sorted(generated)}")
    bad_pairs = set(recipe.get("label_pairs", ())) - set(LABEL_SHIFT_TASKS)
    if bad_pairs:
        raise ValueError(f"recipe {path}: label_pairs {sorted(bad_pairs)}: only {list(LABEL_SHIFT_TASKS)} have labels "
                         "whose colours can be moved")
    return recipe


def pick_task(recipe: dict, step: int, micro: int) -> tuple[str, int | None]:
    """The task of a micro-batch (weighted, deterministic in step) and its view (or reference) count."""
    rng = rng_for(recipe["seed"] * 1_000_003 + step * 64 + micro, "task")
    names = list(recipe["tasks"])
    weights = np.array([recipe["tasks"][n] for n in names], dtype=float)
    task = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    if task not in VARIABLE_COUNTS:
        return task, None
    lo, hi = VARIABLE_COUNTS[task]
    return task, int(rng.integers(lo, hi + 1))


def sample_seed(recipe: dict, step: int, micro: int, index: int, process: int, processes: int) -> int:
    flat = ((step * recipe["micro_batches"] + micro) * recipe["batch_size"] + index) * processes + process
    return TRAIN_SEEDS.start + (recipe["seed"] * 7_919_000 + flat) % len(TRAIN_SEEDS)


# ------------------------------------------------------------------------------ EMA
class EMA:
    """Exponential moving average of the trained parameters (fp32), with the usual warm-up of the decay.
    Frozen ones (a LoRA run's base weights) are not copied: they do not move."""

    def __init__(self, modules, decay: float):
        self.decay = decay
        self.steps = 0
        self.shadow = {key: p.detach().float().clone() for key, p in self._trained(modules)}

    @staticmethod
    def _trained(modules):
        return [(f"{i}.{k}", p) for i, m in enumerate(modules) for k, p in m.named_parameters() if p.requires_grad]

    @torch.no_grad()
    def update(self, modules) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for key, p in self._trained(modules):
            self.shadow[key].mul_(d).add_(p.detach().float(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, modules) -> None:
        for key, p in self._trained(modules):
            p.copy_(self.shadow[key].to(p.dtype))

    def state_dict(self):
        return {"decay": self.decay, "steps": self.steps, "shadow": self.shadow}

    def load_state_dict(self, state):
        self.decay, self.steps, self.shadow = state["decay"], state["steps"], state["shadow"]


# ------------------------------------------------------------------------------ batches
class Batcher:
    """Samples of one task -> latents, masks and prompts (the codec encodes the image frames)."""

    def __init__(self, recipe: dict, codec, scheduler_config: dict, source=make_sample):
        """source(task, seed, size, views=...) -> TrainSample: the generator, or a user folder's samples."""
        self.recipe, self.codec, self.scheduler_config, self.source = recipe, codec, scheduler_config, source
        self._schedules: dict = {}

    def condition_timestep(self, steps: int, generated_tokens: int) -> float:
        key = (steps, generated_tokens)
        if key not in self._schedules:
            timesteps, _, _ = make_schedule(steps, generated_tokens, self.scheduler_config)
            self._schedules[key] = float(flow.condition_timestep(timesteps))
        return self._schedules[key]

    @torch.no_grad()
    def encode(self, value) -> torch.Tensor:
        tensor = as_tensor(value)
        if tensor.shape[0] == 3:  # an image frame
            mean, _ = self.codec.posterior(tensor[None] * 2 - 1)  # the pixel codec or a VAE (posterior mean)
            return mean[0].float().cpu() * self.codec.scaling_factor
        return tensor  # a ray latent

    def make(self, task: str, views, seeds: list[int]):
        size = self.recipe["size"]
        if task in self.recipe.get("label_pairs", ()):
            # Counterfactual pairs: each odd sample is the previous one's photo with every label's colour moved on,
            # so only the prompt tells the two target maps apart and the loss pays for ignoring the labels.
            samples = [self.source(task, seeds[i - 1], size, views=views, label_shift=1) if i % 2 else
                       self.source(task, s, size, views=views) for i, s in enumerate(seeds)]
        else:
            samples = [self.source(task, s, size, views=views) for s in seeds]
        masks = {tuple(s.request.denoise_mask) for s in samples}
        assert len(masks) == 1, f"{task}: mixed frame layouts in one batch {masks}"
        generate = torch.tensor(samples[0].request.denoise_mask, dtype=torch.bool)
        x0 = torch.stack([torch.stack([self.encode(v) for v in s.frame_values()]) for s in samples])
        return samples, x0, generate

    def noise_levels(self, rng: np.random.Generator, batch: int, generate: torch.Tensor, tokens_per_frame: int,
                     step: int = 0, task: str | None = None):
        """(sigma (B, F), timesteps (B, F)): logit-normal sigmas (a `sigma_uniform` share of samples uniform,
        from step `sigma_uniform_from_step` on) shifted like the sampler's schedule for generated frames, times
        the recipe's `task_sigma_shift` of the task; the schedule's condition timestep for given frames."""
        frames = len(generate)
        generated_tokens = int(generate.sum()) * tokens_per_frame
        # A task whose output is a few numbers spread over every token (camera rays) stays readable from its
        # noised frame up to sigma ~0.9: only a larger shift trains it where the answer must come from the images.
        task_shift = self.recipe.get("task_sigma_shift", {}).get(task, 1.0)
        shift = math.exp(shift_mu(generated_tokens, self.scheduler_config)) * task_shift
        u = 1 / (1 + np.exp(-rng.normal(size=(batch, frames))))
        if step >= self.recipe.get("sigma_uniform_from_step", 0):
            # logit-normal rarely reaches sigma ~ 1, where sampling starts: mix in uniform draws
            uniform = rng.random(batch) < self.recipe.get("sigma_uniform", 0.0)
            u[uniform] = rng.random((int(uniform.sum()), frames))
        shared = rng.random(batch) < self.recipe["shared_sigma"]
        u[shared] = u[shared, :1]
        sigma = shift * u / (1 + (shift - 1) * u)
        lo, hi = self.recipe["schedule_steps"]
        t_cond = [self.condition_timestep(int(rng.integers(lo, hi + 1)), generated_tokens) for _ in range(batch)]
        sigma = torch.from_numpy(sigma).float()
        timesteps = flow.model_timestep(sigma)
        timesteps[:, ~generate] = torch.tensor(t_cond, dtype=torch.float32)[:, None]
        sigma[:, ~generate] = 0.0
        return sigma, timesteps


@dataclass
class MicroBatch:
    """One task's `batch_size` samples as the loss takes them (CPU tensors)."""

    task: str
    x0: torch.Tensor  # (B, F, C, h, w) clean latents
    generate: torch.Tensor  # (F,) bool: frames with a loss
    sigma: torch.Tensor  # (B, F)
    timesteps: torch.Tensor  # (B, F)
    noise: torch.Tensor  # like x0
    tokens: object  # the tokenizer's output: input_ids, attention_mask


def frame_tokens(recipe: dict, cfg: NextDiTConfig) -> int:
    """Transformer tokens of one frame at the recipe's size (latents are 1/8 of the pixels)."""
    return (recipe["size"] // 8 // cfg.patch_size[1]) * (recipe["size"] // 8 // cfg.patch_size[2])


def micro_batch(recipe: dict, batcher: Batcher, tokenizer, step: int, micro: int, process: int, processes: int,
                tokens_per_frame: int) -> MicroBatch:
    """Micro-batch `micro` of optimizer step `step` in process `process`: the recipe's task, its samples, prompt
    dropout, noise levels and noise, all drawn from the step's seeds (the same batch on any machine)."""
    task, views = pick_task(recipe, step, micro)
    seeds = [sample_seed(recipe, step, micro, b, process, processes) for b in range(recipe["batch_size"])]
    samples, x0, generate = batcher.make(task, views, seeds)
    rng = rng_for(seeds[0], "noise")
    prompts = ["" if rng.random() < recipe["prompt_dropout"] else s.prompt for s in samples]
    sigma, timesteps = batcher.noise_levels(rng, len(samples), generate, tokens_per_frame, step, task)
    noise = torch.from_numpy(rng.standard_normal(x0.shape, dtype=np.float32))
    tokens = tokenizer(prompts, padding="longest", max_length=300, truncation=True, return_tensors="pt")
    return MicroBatch(task, x0, generate, sigma, timesteps, noise, tokens)


def flow_loss(transformer, states, mask, x0, generate, sigma, timesteps, noise):
    """Mean squared velocity error over the generated frames (given frames enter clean, carry no loss)."""
    s = sigma.to(x0)[:, :, None, None, None]
    x = torch.where(generate.to(x0.device)[None, :, None, None, None], flow.noisy(x0, noise, s), x0)
    v = transformer(x, timesteps.to(x0.device), encoder_hidden_states=states, encoder_attention_mask=mask)
    err = (v.float() - flow.velocity(x0, noise).float()).pow(2).mean(dim=(2, 3, 4))  # (B, F)
    return (err * generate.to(err)).sum(1).div(generate.sum()).mean()


# ------------------------------------------------------------------------------ parts
def prepare_parts(recipe: dict, run: Path, accelerator) -> tuple[Path, Path]:
    """The codec and the tokenizer, fitted once (main process) from seeds of their own."""
    parts_dir = run / "parts"
    vae_dir, tok_dir = parts_dir / "vae", parts_dir / "tokenizer"
    if accelerator.is_main_process and not (tok_dir / "spiece.model").exists():
        tasks = list(recipe["tasks"])
        # Seeds from the top of the training range, away from the trainer's own draws.
        top = TRAIN_SEEDS.stop
        codec = parts.fit_codec(tasks, range(top - recipe["codec_samples"], top), recipe["size"],
                                per_channel=recipe.get("codec_per_channel", False))
        if recipe.get("refiner"):
            add_refiner(codec, recipe, log=accelerator.print)
        codec.save_pretrained(vae_dir)
        parts.train_tokenizer(tasks, range(top - 10 * recipe["tokenizer_prompts"], top, 10), tok_dir, recipe["size"])
    accelerator.wait_for_everyone()
    return vae_dir, tok_dir


def add_refiner(codec, recipe: dict, log=None):
    """The recipe's decoder refiner (`"refiner": {"width", "layers", "steps", "samples"}`) fitted to `codec`, from
    the top of the training seed range like the codec itself: the same refiner for the same codec and recipe."""
    settings = dict(recipe["refiner"])
    samples = int(settings.pop("samples", 2000))
    top = TRAIN_SEEDS.stop
    return parts.train_refiner(codec, list(recipe["tasks"]), range(top - samples, top), recipe["size"], log=log,
                               seed=recipe["seed"], **settings)


def build_models(recipe: dict, tokenizer):
    torch.manual_seed(recipe["seed"])
    cfg = NextDiTConfig(**recipe["transformer"])
    transformer = NextDiT(cfg, operations=operations_for(recipe.get("matmul_dtype", "float32")))
    with torch.no_grad():  # start as the zero velocity: stable early steps (DiT practice)
        transformer.final_layer.linear.weight.zero_()
        transformer.final_layer.linear.bias.zero_()
    t = recipe["text_encoder"]
    if t["width"] != cfg.caption_channels:
        raise ValueError(f"text_encoder width {t['width']} must equal the transformer's caption_channels "
                         f"{cfg.caption_channels}")
    text = parts.tiny_t5(len(tokenizer), t["width"], t["layers"], t["heads"], seed=recipe["seed"] + 1)
    return transformer, text


def lr_at(recipe: dict, step: int, elapsed_s: float = 0.0) -> float:
    """Linear warm-up, then cosine to 10%. Progress is the larger of the step and the time fraction, so a
    time-bounded run on a slow or busy machine still anneals before its budget ends."""
    warm, total = recipe["warmup_steps"], recipe["steps"]
    if step < warm:
        return (step + 1) / warm
    progress = max((step - warm) / max(1, total - warm), elapsed_s / (recipe["max_minutes"] * 60))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def main_process_clock(accelerator, *seconds: float) -> list[float]:
    """The main process's readings of the given clocks, on every process. The processes stop, save their state
    and set the learning rate by these: each going by its own clock let one leave the loop at the time budget
    while another waited in the next step's gradient exchange, for ever."""
    if accelerator.num_processes == 1:
        return list(seconds)
    from accelerate.utils import broadcast

    return broadcast(torch.tensor(seconds, dtype=torch.float64), from_process=0).tolist()


# ------------------------------------------------------------------------------ plot
def plot_losses(csv_path: Path, png_path: Path, window: int = 50) -> None:
    """Per-task moving means of the loss against the step, log scale, drawn with PIL (no plotting library)."""
    from PIL import Image, ImageDraw

    from unidiff_core.onediffusion.palette import PALETTE, hex_to_rgb

    rows = list(csv.DictReader(open(csv_path)))
    if not rows:
        return
    by_task: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append((int(r["step"]), max(float(r["loss"]), 1e-4)))
    curves = {}
    for task, pts in sorted(by_task.items()):
        steps, losses = np.array(pts).T
        k = max(1, min(window, len(losses) // 5))
        curves[task] = (steps[k - 1:], np.convolve(np.log10(losses), np.ones(k) / k, mode="valid"))
    w, h, left, right, top, bottom = 1000, 560, 60, 230, 20, 40
    x_max = max(float(c[0].max()) for c in curves.values()) or 1.0
    y_lo = min(float(c[1].min()) for c in curves.values())
    y_hi = max(float(c[1].max()) for c in curves.values())
    y_lo, y_hi = np.floor(y_lo * 10) / 10, np.ceil(y_hi * 10) / 10 + 1e-6
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)

    def xy(step, logloss):
        return (left + (w - left - right) * step / x_max, top + (h - top - bottom) * (y_hi - logloss) / (y_hi - y_lo))

    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for tick in np.arange(y_lo, y_hi, 0.1 if y_hi - y_lo < 1.2 else 0.2):
        y = xy(0, tick)[1]
        draw.line([left, y, w - right, y], fill=(225, 225, 225))
        draw.text((4, y - 6), f"{10 ** tick:.2f}", fill="black")
    for frac in np.linspace(0, 1, 6):
        x = left + (w - left - right) * frac
        draw.text((x - 10, h - bottom + 6), f"{int(x_max * frac)}", fill="black")
    draw.text((left, h - 16), "step        (y: flow-matching loss, log scale, moving mean)", fill="black")
    for i, (task, (steps, values)) in enumerate(curves.items()):
        colour = hex_to_rgb(PALETTE[i % len(PALETTE)][0])
        points = [xy(s_, v) for s_, v in zip(steps, values)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        draw.line([w - right + 10, top + 12 + 22 * i, w - right + 30, top + 12 + 22 * i], fill=colour, width=3)
        draw.text((w - right + 36, top + 6 + 22 * i), task, fill="black")
    img.save(png_path)


# ------------------------------------------------------------------------------ main
def load_for_finetuning(checkpoint):
    """(transformer, text encoder, tokenizer, codec or VAE, tokenizer folder) of a checkpoint, trainable."""
    from transformers import AutoTokenizer, T5EncoderModel

    from unidiff_core.onediffusion.loading import checkpoint_parts, load_transformer, load_vae

    found = checkpoint_parts(checkpoint)
    transformer = load_transformer(found.transformer).requires_grad_(True)
    text = T5EncoderModel.from_pretrained(str(found.text_encoder), local_files_only=True, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(found.tokenizer), local_files_only=True)
    return transformer, text, tokenizer, load_vae(found.vae), found.tokenizer


def checkpointed_blocks(x, run_block, depth: int):
    """NextDiT.blocks_hook for gradient checkpointing: each block's activations are recomputed in the backward
    pass instead of kept (memory of one block's activations instead of all; about a third more compute)."""
    from torch.utils.checkpoint import checkpoint

    for i in range(depth):
        x = checkpoint(run_block, i, x, use_reentrant=False)
    return x


def accumulating(accelerator, modules, skip_sync: bool):
    """Inside it, the backward pass adds to the gradients without all-reducing them (DDP's no_sync): with several
    micro-batches a step, the processes then exchange and average the summed gradients once, after the last."""
    stack = contextlib.ExitStack()
    if skip_sync:
        for module in modules:
            stack.enter_context(accelerator.no_sync(module))
    return stack


def train(recipe: dict, out: Path, resume: bool = False, progress: bool = True, window_minutes: float | None = None,
          init: str | Path | None = None, lora: dict | None = None, data: FolderData | None = None,
          gradient_checkpointing: bool = False) -> dict:
    """lora: {"rank", "alpha", "name"} trains peft adapters only (needs `init`) and writes lora/<name>.safetensors;
    data: a user folder's samples of one task instead of the generator (recipe["tasks"] must be that task)."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    torch.set_num_threads(int(recipe["threads"]))
    use_cpu = not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=recipe["mixed_precision"], cpu=use_cpu)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (lora is not None or data is not None) and init is None:
        raise ValueError("LoRA and folder training fine-tune a checkpoint: give --init CHECKPOINT")
    if data is not None and set(recipe["tasks"]) != {data.task}:
        raise ValueError(f"the recipe's tasks {sorted(recipe['tasks'])} must be the folder's task {data.task}")
    if init is not None:  # fine-tune: every part from an existing OneDiffusion-format checkpoint
        transformer, text, tokenizer, codec, tok_dir = load_for_finetuning(init)
    else:
        vae_dir, tok_dir = prepare_parts(recipe, out, accelerator)
        codec = load_codec(vae_dir)
        tokenizer = parts.load_tokenizer(tok_dir)
        transformer, text = build_models(recipe, tokenizer)
    adapted = []
    if lora is not None:
        from .peft_lora import add_lora

        if recipe["mixed_precision"] == "bf16":  # frozen weights in bf16 (half the memory); adapters stay fp32
            transformer.to(torch.bfloat16)
            text.to(torch.bfloat16)
        adapted = add_lora(transformer, lora["rank"], lora["alpha"])
        text.requires_grad_(False).eval()
    if gradient_checkpointing:
        transformer.blocks_hook = checkpointed_blocks
    groups = [{"params": [p for p in transformer.parameters() if p.requires_grad], "lr": recipe["lr"]}]
    if lora is None:
        groups.append({"params": list(text.parameters()), "lr": recipe["text_lr"]})
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=recipe["weight_decay"])
    base_lrs = [g["lr"] for g in opt.param_groups]
    if lora is None:
        transformer, text, opt = accelerator.prepare(transformer, text, opt)
    else:  # the frozen encoder is not prepared: nothing of it trains (DDP refuses a module without gradients)
        transformer, opt = accelerator.prepare(transformer, opt)
        text = text.to(accelerator.device)
    raw = [accelerator.unwrap_model(transformer), accelerator.unwrap_model(text)]
    trained_modules = [transformer, text] if lora is None else [transformer]
    ema = EMA(raw, recipe["ema_decay"])
    accelerator.register_for_checkpointing(ema)

    state_dir, meta_file = out / "state", out / "state" / "progress.json"
    start_step, trained_s = 0, 0.0
    if resume and meta_file.exists():
        accelerator.load_state(str(state_dir))
        meta = json.loads(meta_file.read_text())
        start_step, trained_s = meta["step"], meta["trained_s"]
        accelerator.print(f"resumed at step {start_step} ({trained_s / 60:.1f} min trained)")
    codec = codec.to(accelerator.device)
    if data and recipe.get("label_pairs"):
        raise ValueError(f"label_pairs {recipe['label_pairs']} move the generator's label colours; a --data folder "
                         "has its own maps: drop label_pairs from the recipe")
    batcher = Batcher(recipe, codec, DEFAULT_SCHEDULER_CONFIG, source=data.make_sample if data else make_sample)
    cfg = raw[0].config
    tokens_per_frame = frame_tokens(recipe, cfg)
    csv_path = out / "losses.csv"
    new_csv = not csv_path.exists() or start_step == 0
    log = open(csv_path, "w" if new_csv else "a", newline="")
    writer = csv.DictWriter(log, CSV_FIELDS)
    if new_csv:
        writer.writeheader()

    def save_state(step):
        accelerator.save_state(str(state_dir))
        if accelerator.is_main_process:
            meta_file.write_text(json.dumps({"step": step, "trained_s": trained_s + time.time() - t0}))

    budget = recipe["max_minutes"] * 60
    t0, last_save = time.time(), time.time()
    bar = tqdm(total=recipe["steps"], initial=start_step, disable=not (progress and accelerator.is_main_process),
               mininterval=10, dynamic_ncols=True)
    step, recent = start_step, []
    transformer.train()
    text.train(lora is None)
    window = float("inf") if window_minutes is None else window_minutes * 60

    while True:
        elapsed_s, since_save_s = main_process_clock(accelerator, trained_s + time.time() - t0, time.time() - last_save)
        if not (step < recipe["steps"] and elapsed_s < budget and elapsed_s - trained_s < window):
            break
        if since_save_s > recipe["save_every_minutes"] * 60:
            save_state(step)
            last_save = time.time()
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * lr_at(recipe, step, elapsed_s)
        logged = step % recipe["log_every"] == 0
        for micro in range(recipe["micro_batches"]):
            batch = micro_batch(recipe, batcher, tokenizer, step, micro, accelerator.process_index,
                                accelerator.num_processes, tokens_per_frame)
            task, tokens, device = batch.task, batch.tokens, accelerator.device
            last = micro == recipe["micro_batches"] - 1
            with accumulating(accelerator, trained_modules, not last):
                with accelerator.autocast():
                    with torch.set_grad_enabled(lora is None):  # a frozen encoder keeps no activations
                        states = text(input_ids=tokens.input_ids.to(device),
                                      attention_mask=tokens.attention_mask.to(device))[0]
                    loss = flow_loss(transformer, states, tokens.attention_mask.to(device), batch.x0.to(device),
                                     batch.generate, batch.sigma, batch.timesteps, batch.noise.to(device))
                accelerator.backward(loss / recipe["micro_batches"])
            # The processes meet only where they must: the gradients once a step, the loss on logged steps.
            value = float(accelerator.gather(loss.detach()[None]).mean()) if logged else float(loss.detach())
            recent.append(value)
            if accelerator.is_main_process and logged:
                writer.writerow({"step": step, "task": task, "loss": f"{value:.5f}", "lr": f"{opt.param_groups[0]['lr']:.6f}",
                                 "elapsed_s": f"{trained_s + time.time() - t0:.1f}"})
        accelerator.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(raw)
        step += 1
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(recent[-40:]):.4f}")
            log.flush()
    bar.close()
    log.close()
    save_state(step)
    elapsed = trained_s + time.time() - t0
    summary = {"recipe": recipe["name"], "steps": step, "train_minutes": round(elapsed / 60, 2),
               "samples_seen": step * recipe["micro_batches"] * recipe["batch_size"] * accelerator.num_processes,
               "processes": accelerator.num_processes, "threads": recipe["threads"],
               "mixed_precision": recipe["mixed_precision"], "matmul_dtype": recipe.get("matmul_dtype", "float32"),
               "seed": recipe["seed"],
               "train_seeds": [TRAIN_SEEDS.start, TRAIN_SEEDS.stop], "init": str(init) if init else None,
               "data": f"{data.root.name} ({len(data)} {data.task} samples)" if data else None,
               "gradient_checkpointing": gradient_checkpointing}
    if lora is not None:
        summary["lora"] = {"rank": int(lora["rank"]), "alpha": float(lora["alpha"]), "modules": len(adapted),
                           "parameters": sum(p.numel() for g in opt.param_groups for p in g["params"]),
                           "file": str(Path("lora") / f"{lora['name']}.safetensors")}
    if accelerator.is_main_process:
        plot_losses(csv_path, out / "losses.png")
        final = [accelerator.unwrap_model(transformer), accelerator.unwrap_model(text)]
        backup = [{k: v.clone() for k, v in m.named_parameters() if v.requires_grad} for m in final]
        ema.copy_to(final)
        if lora is None:
            export_checkpoint(out / "checkpoint", final[0], final[1], tok_dir, codec.to("cpu"), card=summary,
                              size=recipe["size"])
        else:
            from .peft_lora import lora_weights

            cfg = final[0].config
            save_lora(out / summary["lora"]["file"], lora_weights(final[0]), lora["rank"], lora["alpha"],
                      metadata={"base": Path(init).name, "hidden_size": cfg.hidden_size, "depth": cfg.depth,
                                "steps": step, "task": ",".join(recipe["tasks"]),
                                "data": summary["data"] or "generated"})
        with torch.no_grad():
            for m, b in zip(final, backup):
                for k, p in m.named_parameters():
                    if k in b:
                        p.copy_(b[k])
    accelerator.wait_for_everyone()
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default=str(Path(__file__).parent / "recipes" / "mini.json"))
    p.add_argument("--out", required=True, help="run folder (parts, state, losses, checkpoint)")
    p.add_argument("--resume", action="store_true", help="go on from <out>/state when it exists")
    p.add_argument("--init", help="fine-tune: start from this OneDiffusion-format checkpoint (e.g. models/UniDiff-Mini) "
                                  "instead of new weights; its transformer config, T5, tokenizer and VAE/codec are kept")
    p.add_argument("--steps", type=int, help="override the recipe's step count")
    p.add_argument("--max-minutes", type=float, help="override the recipe's training-time budget (all sessions)")
    p.add_argument("--window-minutes", type=float,
                   help="stop this session after N minutes (state saved; go on later with --resume)")
    p.add_argument("--threads", type=int, help="override the recipe's thread count")
    p.add_argument("--seed", type=int, help="override the recipe's seed: other training samples and task draws "
                                            "(a further run from --init sees new data)")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], help="override the recipe's precision")
    p.add_argument("--no-progress", action="store_true")
    ft = p.add_argument_group("fine-tuning (with --init)")
    ft.add_argument("--lora-rank", type=int, help="train a LoRA of this rank (peft) instead of all weights: adapters "
                                                  "on the transformer's attention and feed-forward linears, the T5 "
                                                  "encoder frozen; writes <out>/lora/<name>.safetensors")
    ft.add_argument("--lora-alpha", type=float, help="LoRA alpha (default: the rank, i.e. scale 1)")
    ft.add_argument("--lora-name", help="file name of the LoRA (default: the --out folder's name)")
    ft.add_argument("--data", help="a folder of your own images, captions and conditions (docs/training.md, "
                                   "'Your own data') instead of the generated tasks; needs --task")
    p.add_argument("--task", help="train this task alone: with --data, the task the folder trains (e.g. text2image "
                   "or depth2image); without, the generated task (a focused trial, training/recipes/focused.json)")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate (LoRA runs usually want ~1e-3)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute each block's activations in the backward pass (less memory, ~1/3 more compute)")
    a = p.parse_args(argv)
    if a.data is not None and a.task is None:
        p.error("--data needs --task: the task the folder trains, e.g. --task depth2image")
    try:
        recipe = load_recipe(a.recipe, only_task=a.task if a.data is None else None, steps=a.steps,
                             max_minutes=a.max_minutes, threads=a.threads, mixed_precision=a.mixed_precision,
                             lr=a.lr, seed=a.seed)
    except ValueError as e:
        p.error(str(e))
    lora = data = None
    if a.lora_rank is not None:
        if a.lora_rank < 1:
            p.error(f"--lora-rank must be at least 1, got {a.lora_rank}")
        lora = {"rank": a.lora_rank, "alpha": a.lora_alpha if a.lora_alpha is not None else float(a.lora_rank),
                "name": a.lora_name or Path(a.out).resolve().name}
    if a.data is not None:
        recipe["tasks"] = {a.task: 1.0}
        try:
            data = FolderData(a.data, a.task, recipe["size"])
        except InputError as e:  # the folder's problem and its fix, without a traceback
            p.error(str(e))
    summary = train(recipe, Path(a.out), resume=a.resume, progress=not a.no_progress, window_minutes=a.window_minutes,
                    init=a.init, lora=lora, data=data, gradient_checkpointing=a.gradient_checkpointing)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary, not one per process
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
