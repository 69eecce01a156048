"""LoRA: the file format round trip, bad files, merging (strength 0 = the base exactly, strength 1 = the deltas
merged by hand), --lora in the CLI, a 3-step LoRA training that writes a loadable adapter, and the user folder
format for fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lora_common import tiny_lora_weights, write_tiny_lora
from unidiff_core.cli import main as cli_main
from unidiff_core.common.errors import CheckpointError, InputError
from unidiff_core.onediffusion.loading import load_transformer
from unidiff_core.onediffusion.lora import (TARGET_MODULES, deltas, load_lora, merge_loras, read_lora, save_lora,
                                            target_modules)

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "golden" / "tiny-onediffusion"
RECIPE = ROOT / "training" / "recipes" / "tiny.json"


@pytest.fixture(scope="module")
def transformer():
    return load_transformer(TINY / "transformer")


@pytest.fixture()
def lora_file(tmp_path):
    return write_tiny_lora(tmp_path / "tiny.safetensors")


# ------------------------------------------------------------------------------------ file format
def test_round_trip_keeps_every_matrix_rank_alpha_and_metadata(tmp_path, transformer):
    weights = tiny_lora_weights(rank=3, seed=1)
    path = save_lora(tmp_path / "x.safetensors", weights, 3, 6.0, metadata={"base": "tiny", "steps": 7})
    lora = load_lora(path, transformer)
    assert (lora.rank, lora.alpha, lora.scale) == (3, 6.0, 2.0)
    assert set(lora.weights) == set(weights) == set(target_modules(transformer))
    for module, (a, b) in weights.items():
        assert torch.equal(lora.weights[module][0], a) and torch.equal(lora.weights[module][1], b)
    assert lora.metadata["base"] == "tiny" and lora.metadata["steps"] == "7" and lora.metadata["format"] == "unidiff-lora"
    keys = set(load_file(str(path)))
    assert "layers.0.attention.wq.lora_A.weight" in keys and "layers.1.feed_forward.w2.lora_B.weight" in keys
    # the default targets: attention (self and caption) and feed-forward linears of every block
    assert {m.rsplit(".", 1)[-1] for m in lora.weights} == set(TARGET_MODULES)


def _rewrite(path, change_tensors=None, change_meta=None):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    if change_tensors:
        change_tensors(tensors)
    if change_meta:
        change_meta(meta)
    save_file(tensors, str(path), metadata=meta)
    return path


WQ_A, WQ_B = "layers.0.attention.wq.lora_A.weight", "layers.0.attention.wq.lora_B.weight"


@pytest.mark.parametrize("case, tensors, meta, words", [
    ("unknown layer", lambda t: t.update({"layers.9.attention.wq.lora_A.weight": t[WQ_A].clone(),
                                          "layers.9.attention.wq.lora_B.weight": t[WQ_B].clone()}), None,
     ["layers.9.attention.wq.lora_A.weight", "no linear layer", "LoRA made for this checkpoint"]),
    ("shape mismatch", lambda t: t.update({WQ_A: torch.zeros(2, 7)}), None,
     ["layers.0.attention.wq.lora_A.weight", "shape mismatch", "96x7", "96x96"]),
    ("missing B", lambda t: t.pop(WQ_B), None, ["layers.0.attention.wq.lora_A.weight", "has no", "lora_B"]),
    ("unknown key", lambda t: t.update({"layers.0.attention.wq.dora_scale": torch.ones(3)}), None,
     ["unknown key 'layers.0.attention.wq.dora_scale'"]),
    ("rank mismatch", lambda t: t.update({WQ_A: torch.zeros(3, 96), WQ_B: torch.zeros(96, 3)}), None,
     ["layers.0.attention.wq", "rank 2"]),
    ("not finite", lambda t: t[WQ_A].fill_(float("nan")), None, [WQ_A, "NaN"]),
    ("integer tensor", lambda t: t.update({WQ_A: t[WQ_A].to(torch.int32)}), None, [WQ_A, "not a float dtype"]),
    ("other format", None, lambda m: m.update(format="kohya"), ["not a UniDiff LoRA file", "'kohya'"]),
    ("bad rank", None, lambda m: m.update(rank="two"), ["rank='two'", "not an integer"]),
])
def test_bad_lora_files_name_the_file_the_key_and_the_fix(lora_file, transformer, case, tensors, meta, words):
    _rewrite(lora_file, tensors, meta)
    with pytest.raises(CheckpointError) as err:
        load_lora(lora_file, transformer)
    message = str(err.value)
    assert str(lora_file) in message, message
    for word in words:
        assert word in message, (case, message)


def test_the_committed_real_host_lora_is_the_one_the_tests_write(tmp_path):
    from lora_common import TINY_LORA_FIXTURE

    fresh = read_lora(write_tiny_lora(tmp_path / "fresh.safetensors"))
    committed = read_lora(TINY_LORA_FIXTURE)
    assert committed.metadata == fresh.metadata and set(committed.weights) == set(fresh.weights)
    assert all(torch.equal(committed.weights[m][i], fresh.weights[m][i]) for m in fresh.weights for i in (0, 1))


def test_a_pickle_or_a_missing_file_is_refused(tmp_path, transformer):
    with pytest.raises(CheckpointError, match="not found"):
        read_lora(tmp_path / "nothing.safetensors")
    (tmp_path / "x.pt").write_bytes(b"\x80\x02")
    with pytest.raises(CheckpointError, match="pickle"):
        read_lora(tmp_path / "x.pt")


# ------------------------------------------------------------------------------------ merging
def test_strength_one_adds_alpha_over_rank_b_times_a_and_zero_changes_nothing(lora_file):
    base = load_transformer(TINY / "transformer")
    lora = read_lora(lora_file)
    merged = merge_loras(load_transformer(TINY / "transformer"), [(lora, 1.0)])
    for module, (a, b) in lora.weights.items():
        key = module + ".weight"
        expected = base.state_dict()[key] + 2.0 * (b @ a)  # alpha 4 / rank 2
        assert torch.equal(merged.state_dict()[key], expected), key
    untouched = [k for k in base.state_dict() if k[:-len(".weight")] not in lora.weights]
    assert untouched and all(torch.equal(merged.state_dict()[k], base.state_dict()[k]) for k in untouched)
    same = merge_loras(load_transformer(TINY / "transformer", dtype=torch.bfloat16), [(lora, 0.0)])
    bf16 = load_transformer(TINY / "transformer", dtype=torch.bfloat16)
    assert all(torch.equal(v, bf16.state_dict()[k]) for k, v in same.state_dict().items())
    half = deltas(lora, 0.5)
    assert torch.allclose(half["layers.0.attention.wq.weight"], 0.5 * 2.0 * lora.weights["layers.0.attention.wq"][1]
                          @ lora.weights["layers.0.attention.wq"][0])
    with pytest.raises(InputError, match="strength"):
        deltas(lora, float("nan"))


def test_an_fp8_model_is_refused_with_the_fix(lora_file):
    from unidiff_core.onediffusion.fp8 import quantize_fp8

    model = quantize_fp8(load_transformer(TINY / "transformer"))
    with pytest.raises(CheckpointError, match="default weight format"):
        load_lora(lora_file, model)


def _cli_latents(tmp_path, tag, *extra):
    out = tmp_path / tag
    code = cli_main(["run", "--checkpoint", str(TINY), "--task", "text2image", "--caption", "a red circle",
                     "--steps", "2", "--height", "32", "--width", "32", "--threads", "1", "--out", str(out),
                     "--save-latents", str(out / "latents.safetensors"), *extra])
    assert code == 0
    return load_file(str(out / "latents.safetensors"))["latents"]


def test_cli_lora_strength_zero_is_bit_identical_and_one_equals_the_merge_by_hand(tmp_path, lora_file):
    from unidiff_core.onediffusion.pipeline import UniDiffPipeline
    from unidiff_core.onediffusion.requests import TaskInputs
    from unidiff_core.onediffusion.tasks import build_request

    torch.set_num_threads(1)
    plain = _cli_latents(tmp_path, "plain")
    assert torch.equal(_cli_latents(tmp_path, "zero", "--lora", f"{lora_file}:0"), plain)
    full = _cli_latents(tmp_path, "one", "--lora", str(lora_file))
    assert not torch.allclose(full, plain, atol=1e-3)  # the LoRA changes the result
    pipe = UniDiffPipeline.from_pretrained(TINY)
    lora = read_lora(lora_file)
    with torch.no_grad():
        for key, delta in deltas(lora, 1.0).items():
            pipe.transformer.get_parameter(key).add_(delta)
    request = build_request("text2image", TaskInputs(caption="a red circle", height=32, width=32, steps=2))
    by_hand = pipe.generate(**request.generate_kwargs(), seed=0).latents
    assert torch.equal(full, by_hand)
    # two LoRAs, repeatable: half of one twice = the whole once (up to rounding)
    twice = _cli_latents(tmp_path, "twice", "--lora", f"{lora_file}:0.5", "--lora", f"{lora_file}:0.5")
    assert torch.allclose(twice, full, atol=1e-4)


def test_cli_lora_errors(tmp_path, lora_file, capsys):
    with pytest.raises(SystemExit):
        cli_main(["run", "--checkpoint", "tiny", "--lora", f"{lora_file}:nan"])
    err = capsys.readouterr().err
    assert "argument --lora" in err and ":nan': not a finite number" in err, err
    bad = tmp_path / "other.safetensors"
    save_lora(bad, {"layers.0.attention.wq": (torch.zeros(2, 5), torch.zeros(96, 2))}, 2, 2.0)
    code = cli_main(["run", "--checkpoint", str(TINY), "--task", "text2image", "--caption", "x", "--steps", "1",
                     "--height", "32", "--width", "32", "--out", str(tmp_path), "--lora", str(bad)])
    assert code == 2 and "shape mismatch" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ training
def test_three_lora_steps_write_an_adapter_that_loads_and_leave_the_base_frozen(tmp_path, transformer):
    from training.train import load_recipe, train

    recipe = load_recipe(RECIPE, steps=3)
    summary = train(recipe, tmp_path, init=TINY, progress=False, lora={"rank": 2, "alpha": 2.0, "name": "smoke"})
    path = tmp_path / "lora" / "smoke.safetensors"
    assert summary["lora"]["file"] == "lora/smoke.safetensors" and path.is_file()
    assert not (tmp_path / "checkpoint").exists()  # a LoRA run writes the adapter, not a whole checkpoint
    lora = load_lora(path, transformer)
    assert (lora.rank, lora.alpha) == (2, 2.0) and set(lora.weights) == set(target_modules(transformer))
    assert lora.metadata["base"] == "tiny-onediffusion" and lora.metadata["steps"] == "3"
    # peft starts B at zero: after 3 steps it has moved, so the adapter changes the weights
    assert any(float(b.abs().max()) > 0 for _, b in lora.weights.values())
    trained = summary["lora"]["parameters"]
    assert trained == sum(a.numel() + b.numel() for a, b in lora.weights.values())
    assert trained < 0.2 * sum(p.numel() for p in transformer.parameters())


# ------------------------------------------------------------------------------------ user folders
def _folder(root: Path, n=3, size=32, task_folder=None, captions=True):
    from PIL import Image

    (root / "images").mkdir(parents=True)
    lines = []
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"{i:04d}.png")
        lines.append(f"{i:04d}.png: a teal circle number {i}")
        if task_folder:
            (root / task_folder).mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / task_folder / f"{i:04d}.png")
    if captions:
        (root / "captions.txt").write_text("\n".join(lines) + "\n")
    return root


def test_a_folder_becomes_requests_of_the_task_table(tmp_path):
    from training.data.folder import FolderData
    from unidiff_core.onediffusion.requests import TaskInputs
    from unidiff_core.onediffusion.tasks import build_request

    data = FolderData(_folder(tmp_path / "t2i"), "text2image", 32)
    assert len(data) == 3
    s = data.make_sample("text2image", 4, 32)  # seed 4 -> item 4 % 3 = 1
    assert s.prompt == build_request("text2image", TaskInputs(caption="a teal circle number 1")).prompt
    assert list(s.targets) == [0] and s.targets[0].shape == (32, 32, 3) and s.request.denoise_mask == [1]
    depth = FolderData(_folder(tmp_path / "d", task_folder="depth"), "image2depth", 32)
    s = depth.make_sample("image2depth", 0, 32)
    assert s.request.denoise_mask == [0, 1] and list(s.targets) == [1]
    assert np.allclose(np.asarray(s.frame_values()[0]), depth.items[0][1]["images"])  # the photo is given
    assert np.allclose(s.targets[1][..., 0], s.targets[1][..., 2])  # the grey depth map as RGB
    cond = FolderData(tmp_path / "d", "depth2image", 32).make_sample("depth2image", 0, 32)
    assert cond.request.denoise_mask == [1, 0] and cond.prompt.startswith("[[depth2image]]")


def test_per_image_caption_files_work_too(tmp_path):
    from training.data.folder import FolderData

    root = _folder(tmp_path / "f", captions=False)
    for i in range(3):
        (root / "images" / f"{i:04d}.txt").write_text(f"a pink square {i}\n")
    assert FolderData(root, "text2image", 32).make_sample("text2image", 2, 32).prompt.endswith("a pink square 2")


def _bad_size(root):
    from PIL import Image

    Image.new("RGB", (40, 32)).save(root / "images" / "0001.png")


@pytest.mark.parametrize("task, prepare, words", [
    ("text2image", lambda r: (r / "captions.txt").write_text("0000.png: one\n0001.png: two\n"),
     ["0002.png", "has no caption", "0002.png: <caption>"]),
    ("text2image", lambda r: (r / "captions.txt").write_text("0000.png a red circle\n"),
     ["captions.txt:1", "not 'file name: caption'"]),
    ("text2image", lambda r: (r / "captions.txt").write_text("0009.png: x\n"), ["0009.png", "names no image"]),
    ("text2image", lambda r: (r / "images" / "0000.txt").write_text("again"), ["0000.txt", "second caption"]),
    ("text2image", _bad_size, ["0001.png", "40x32", "is not 32x32", "resize it to 32x32"]),
    ("image2depth", lambda r: None, ["no depth/ folder", "image2depth"]),
    ("image2depth", lambda r: ((r / "depth").mkdir(), (r / "images" / "0001.png").rename(r / "depth" / "0001.png"),
                              (r / "images" / "0000.png").rename(r / "depth" / "0000.png")),
     ["0002.png", "has no depth picture", "depth/0002.png"]),
    ("inpainting", lambda r: None, ["--task", "cannot be trained from a folder", "text2image"]),
])
def test_bad_folders_name_the_file_and_the_fix(tmp_path, task, prepare, words):
    from training.data.folder import FolderData

    root = _folder(tmp_path / "bad")
    prepare(root)
    with pytest.raises(InputError) as err:
        FolderData(root, task, 32)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_condition_file_without_an_image_is_named(tmp_path):
    from PIL import Image

    from training.data.folder import FolderData

    root = _folder(tmp_path / "x", task_folder="canny")
    Image.new("RGB", (32, 32)).save(root / "canny" / "extra.png")
    with pytest.raises(InputError, match="extra.png: .*no image of the same name"):
        FolderData(root, "canny2image", 32)


def test_trainer_fine_tunes_a_lora_on_a_folder(tmp_path):
    from training.train import main

    root = _folder(tmp_path / "mine")
    main(["--recipe", str(RECIPE), "--init", str(TINY), "--out", str(tmp_path / "run"), "--data", str(root),
          "--task", "text2image", "--lora-rank", "2", "--steps", "2", "--no-progress"])
    lora = read_lora(tmp_path / "run" / "lora" / "run.safetensors")
    assert lora.metadata["task"] == "text2image" and lora.metadata["data"] == "mine (3 text2image samples)"
    rows = (tmp_path / "run" / "losses.csv").read_text().splitlines()[1:]
    assert rows and all(",text2image," in r for r in rows)
    with pytest.raises(SystemExit):  # a bad folder is a usage error with the fix, before any training
        main(["--recipe", str(RECIPE), "--init", str(TINY), "--out", str(tmp_path / "r2"), "--data",
              str(tmp_path / "nothing"), "--task", "text2image", "--lora-rank", "2"])
    assert json.loads(json.dumps(lora.metadata))  # text only


# ------------------------------------------------------------------------------------ memory of a 2.8B LoRA run
def test_lora_memory_counts_the_real_model_on_the_meta_device_and_peft_agrees():
    from training.lora_memory import parameter_counts
    from training.peft_lora import add_lora
    from unidiff_core.onediffusion.config import REAL_CONFIG, NextDiTConfig
    from unidiff_core.onediffusion.loading import build_on_meta
    from unidiff_core.onediffusion.model import NextDiT

    counts = parameter_counts(16)
    meta = build_on_meta(NextDiTConfig(**REAL_CONFIG))
    assert counts["transformer"] == sum(p.numel() for p in meta.parameters())
    assert 2.7e9 < counts["transformer"] < 2.9e9  # "2.8B" (the paper's figure)
    assert counts["target_layers"] == 16 * len(TARGET_MODULES)
    # the LoRA count is what peft really trains (on the tiny config, where a model can be built)
    tiny = NextDiTConfig.from_json(TINY / "transformer" / "config.json")
    model = NextDiT(tiny)
    add_lora(model, 3, 3.0)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == parameter_counts(3, tiny)["lora"]


def test_lora_memory_activation_fit_predicts_a_fourth_measurement():
    from training.lora_memory import activation_bytes, measure_block
    from unidiff_core.onediffusion.config import NextDiTConfig

    tiny = NextDiTConfig.from_json(TINY / "transformer" / "config.json")
    fit = measure_block(2, 16, tiny, tokens=(8, 16, 32))
    check = measure_block(2, 16, tiny, tokens=(24, 40, 48))
    for n, measured in zip(check["tokens"], check["saved_bytes"]):
        assert abs(activation_bytes(fit, n) - measured) < 1.0, (n, measured)
    assert fit["per_token_pair"] > 0 and fit["per_token"] > 0  # the N x N attention terms and the rest


# ------------------------------------------------------------------------------------ the Mini demo's data and metric
def test_lora_demo_folder_and_metric(tmp_path):
    from training.data.folder import FolderData
    from training.data.scenes import COLORS
    from training.lora_demo import COLORS_WITH_WORD, WORD, word_sample, word_scenes, write_folder
    from training.metrics import attribute_scores

    assert WORD not in COLORS  # a word the generator (and so Mini) never used
    data = FolderData(write_folder(tmp_path / "teal", 5, 64), "text2image", 64)
    assert len(data) == 5 and all(WORD in caption for _, _, caption in data.items)
    mixed = FolderData(write_folder(tmp_path / "mixed", 5, 64, replay=3), "text2image", 64)  # prior preservation
    assert len(mixed) == 8 and sum(WORD in caption for _, _, caption in mixed.items) == 5
    for _, scene in word_scenes(10, 4):
        sample = word_sample(scene, 64)
        assert WORD in sample.prompt and sample.prompt.startswith("[[text2image]]")
        truth = sample.truth
        # the ground truth scores 1 with the word's colour known to the detector, 0 for a flat background
        assert attribute_scores(sample.targets[0], scene, truth["rendered"], COLORS_WITH_WORD, WORD)["attr_acc"] == 1.0
        flat = np.broadcast_to(sample.targets[0][:1, :1], sample.targets[0].shape)
        assert attribute_scores(flat, scene, truth["rendered"], COLORS_WITH_WORD, WORD)["attr_acc"] == 0.0


def test_gradient_checkpointing_gives_the_same_loss_and_lora_gradients(transformer):
    import copy

    from training.peft_lora import add_lora
    from training.train import checkpointed_blocks, flow_loss

    torch.manual_seed(0)
    model = copy.deepcopy(transformer)
    add_lora(model, 2, 2.0)
    for name, p in model.named_parameters():
        if ".lora_B." in name:
            torch.nn.init.normal_(p, std=0.1)  # B starts at zero: make the adapters matter
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(2, 2, 16, 4, 4, generator=g), torch.randn(2, 2, 16, 4, 4, generator=g)
    states, mask = torch.randn(2, 5, 32, generator=g), torch.ones(2, 5, dtype=torch.long)
    generate = torch.tensor([True, False])
    sigma = torch.tensor([[0.7, 0.0], [0.3, 0.0]])
    timesteps = sigma * 1000

    def grads(hook):
        model.zero_grad()
        model.blocks_hook = hook
        loss = flow_loss(model, states, mask, x0, generate, sigma, timesteps, noise)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    plain_loss, plain = grads(None)
    ckpt_loss, ckpt = grads(checkpointed_blocks)
    assert torch.equal(plain_loss, ckpt_loss)
    assert plain.keys() == ckpt.keys() and all(torch.allclose(plain[n], ckpt[n], atol=1e-6) for n in plain)
    assert all(float(v.abs().max()) > 0 for n, v in plain.items() if ".lora_A." in n)
