"""The MMGen command line contract, replayed on the visible reference cases:

    python -m unidiff_core run --checkpoint PATH --vae VAE_DIR --task T [--class-label N] [--image IN.png]
        --steps N --cfg S --seed N --batch-size B --t-blend-start T --dtype fp32 --save-latents OUT.safetensors
"""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from tests.conftest import ROOT
from tests.mmgen_common import (EMA, EXTRA_CASES, T4_EMA, TOL, VAE, case, checkpoint_of, final_latents,
                                training_args, write_released_pt)
from unidiff_core.cli import main


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The three accepted forms of the same weights."""
    root = tmp_path_factory.mktemp("mmgen")
    pt = write_released_pt(root / "0600000.pt")
    assert main(["convert", str(pt), str(root / "MMGen")]) == 0
    return {"pt": pt, "safetensors": EMA, "folder": root / "MMGen"}


def contract(name, checkpoint, latents, out):
    c = case(name)
    argv = ["run", "--checkpoint", str(checkpoint), "--vae", str(VAE), "--task", c["task"],
            "--class-label", str(c["class_label"])]
    if c["image"] is not None:
        argv += ["--image", str(c["image"])]
    argv += ["--steps", str(c["steps"]), "--cfg", str(c["cfg"]), "--seed", str(c["seed"]), "--batch-size",
             str(c["batch_size"]), "--t-blend-start", str(c["t_blend"]), "--dtype", "fp32",
             "--save-latents", str(latents), "--out", str(out), "--threads", "1"]
    return argv


@pytest.mark.parametrize("name, form", [("category_cfg4", "pt"), ("category_nocfg_b2", "safetensors"),
                                        ("rgb2x", "folder"), ("depth2x_cfg1.8", "pt")])
def test_cli_reproduces_each_visible_case(tmp_path, checkpoints, name, form):
    latents = tmp_path / "latents.safetensors"
    assert main(contract(name, checkpoints[form], latents, tmp_path / "out")) == 0
    ours = load_file(latents)["latents"]
    ref = final_latents(name)
    assert ours.shape == ref.shape == (case(name)["batch_size"], 16, 32, 32)
    assert (ours - ref).abs().max() <= TOL
    for modality in ("rgb", "depth", "normal", "mask"):
        png = np.asarray(Image.open(tmp_path / "out" / f"{modality}_0.png"))
        assert png.shape == (256, 256, 3) and png.dtype == np.uint8
    assert np.load(tmp_path / "out" / "depth_0.npy").shape == (256, 256)


def test_subprocess_run(tmp_path, checkpoints):
    latents = tmp_path / "latents.safetensors"
    proc = subprocess.run([sys.executable, "-m", "unidiff_core"] + contract("depth2x_cfg1.8", checkpoints["pt"],
                                                                           latents, tmp_path / "out"),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (load_file(latents)["latents"] - final_latents("depth2x_cfg1.8")).abs().max() <= TOL
    assert '"family": "mmgen"' in proc.stdout


def test_t_blend_start_zero_is_an_input_error(tmp_path, checkpoints, capsys):
    argv = contract("rgb2x", checkpoints["safetensors"], tmp_path / "l.safetensors", tmp_path / "out")
    argv[argv.index("--t-blend-start") + 1] = "0"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: --t-blend-start: must be above 0" in err and "(got 0.0)" in err and "0.005" in err
    assert not (tmp_path / "l.safetensors").exists() and not (tmp_path / "out").exists()  # nothing written


def test_mmgen_rejects_onediffusion_flags_and_needs_a_task(tmp_path, capsys):
    base = ["run", "--checkpoint", str(EMA), "--vae", str(VAE), "--steps", "1", "--out", str(tmp_path)]
    assert main(base + ["--task", "category", "--prompt", "a cat"]) == 2
    assert "--prompt: OneDiffusion options, not used by an MMGen checkpoint" in capsys.readouterr().err
    assert main(base) == 2
    assert "--task: an MMGen checkpoint needs a task" in capsys.readouterr().err
    assert main(base + ["--task", "image2depth"]) == 2
    assert "not an MMGen task" in capsys.readouterr().err


def test_convert_refuses_a_non_pt(tmp_path, capsys):
    assert main(["convert", str(EMA), str(tmp_path / "x")]) == 2
    assert "convert reads the released training checkpoint (.pt)" in capsys.readouterr().err


def test_sampler_flag(tmp_path, checkpoints):
    """MMGen's default is the reference's SDE even though OneDiffusion's --sampler default is euler."""
    latents = tmp_path / "ode.safetensors"
    argv = contract("rgb2x", checkpoints["safetensors"], latents, tmp_path / "out")
    assert main(argv + ["--sampler", "euler"]) == 0
    ode = load_file(latents)["latents"]
    assert (ode - final_latents("rgb2x")).abs().max() > 1e-2
    assert (ode[:, :4] - final_latents("rgb2x")[:, :4]).abs().max() <= TOL  # the held RGB slot


def test_fp16_on_the_cpu_is_refused_before_loading(tmp_path, capsys):
    argv = ["run", "--checkpoint", str(EMA), "--vae", str(VAE), "--task", "category", "--steps", "1",
            "--dtype", "fp16", "--device", "cpu", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--dtype: fp16 is not supported on the CPU" in capsys.readouterr().err


def test_tasks_listing_has_the_mmgen_modes(capsys):
    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    for name in ("category", "rgb2x", "depth2x", "normal2x", "mask2x"):
        assert f"  {name:<10} token" in text


@pytest.mark.parametrize("name", EXTRA_CASES)
def test_cli_reproduces_the_extra_cases(tmp_path, checkpoints, name):
    if checkpoint_of(name) == T4_EMA:
        ckpt = write_released_pt(tmp_path / "0620000.pt", ema=load_file(T4_EMA), args=training_args(T4_EMA))
    else:
        ckpt = checkpoints["pt"]
    latents = tmp_path / "latents.safetensors"
    assert main(contract(name, ckpt, latents, tmp_path / "out")) == 0
    assert (load_file(latents)["latents"] - final_latents(name)).abs().max() <= TOL
