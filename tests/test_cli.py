"""The headless entry point, `python -m unidiff_core run`, end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from tests.conftest import ROOT
from unidiff_core.cli import main


def negative(golden_dir):
    return json.loads((golden_dir / "summary.json").read_text())["t2i"]["kwargs"]["negative_prompt"]


def golden(golden_dir, name):
    return load_file(golden_dir / name / "final_latents.safetensors")["final_latents"]


def test_subprocess_reproduces_golden_depth_estimation(tmp_path, golden_dir, tiny_checkpoint):
    latents = tmp_path / "latents.safetensors"
    cmd = [sys.executable, "-m", "unidiff_core", "run", "--checkpoint", str(tiny_checkpoint),
           "--prompt", "[[depth2image]]", "--image", str(golden_dir / "image2depth_mask01" / "input_0.png"),
           "--denoise-mask", "0,1", "--height", "64", "--width", "64", "--steps", "3", "--cfg", "4",
           "--seed", "0", "--threads", "1", "--out", str(tmp_path / "out"), "--save-latents", str(latents)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ours = load_file(latents)["latents"]
    assert (ours - golden(golden_dir, "image2depth_mask01")).abs().max() <= 1e-4
    png = np.asarray(Image.open(tmp_path / "out" / "frame1_0.png"))
    assert png.shape == (64, 64, 3)


def test_multiview_flags_reproduce_golden(tmp_path, golden_dir, tiny_checkpoint):
    latents = tmp_path / "mv.safetensors"
    code = main(["run", "--checkpoint", str(tiny_checkpoint), "--prompt", "[[multiview]] three views of the same object",
                 "--negative-prompt", negative(golden_dir), "--image", str(golden_dir / "multiview_mask0010" / "input_0.png"),
                 "--denoise-mask", "0,0,1,0", "--azimuths", "0,30", "--elevations", "0,10", "--distance", "1.5",
                 "--height", "64", "--width", "64", "--steps", "3", "--seed", "0", "--threads", "1",
                 "--out", str(tmp_path / "out"), "--save-latents", str(latents)])
    assert code == 0
    assert (load_file(latents)["latents"] - golden(golden_dir, "multiview_mask0010")).abs().max() <= 1e-4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frame2_0.png"]  # rays are not decoded


def test_autosize_case(tmp_path, golden_dir, tiny_checkpoint):
    latents = tmp_path / "a.safetensors"
    code = main(["run", "--checkpoint", str(tiny_checkpoint), "--prompt",
                 "[[semanticmap2image]] <#00FFFF cyan mask: sphere> a sphere", "--negative-prompt", negative(golden_dir),
                 "--image", str(golden_dir / "cond2image_autosize" / "input_0.png"), "--steps", "2", "--seed", "0",
                 "--threads", "1", "--out", str(tmp_path / "out"), "--save-latents", str(latents)])
    assert code == 0
    assert (load_file(latents)["latents"] - golden(golden_dir, "cond2image_autosize")).abs().max() <= 1e-4


def test_tiny_smoke_run_with_batch(tmp_path, capsys):
    latents = tmp_path / "t.safetensors"
    code = main(["run", "--checkpoint", "tiny", "--prompt", "[[text2image]] a dog", "--height", "32", "--width", "48",
                 "--steps", "2", "--batch-size", "2", "--out", str(tmp_path / "o"), "--save-latents", str(latents)])
    assert code == 0
    assert load_file(latents)["latents"].shape == (2, 1, 16, 4, 6)
    assert "output is noise" in capsys.readouterr().err
    assert len(list((tmp_path / "o").glob("*.png"))) == 2


@pytest.mark.parametrize("args, message", [
    (["--height", "70", "--width", "64"], "height=70 is not a positive multiple of 16; use height=64"),
    (["--denoise-mask", "1,0"], "1 given frame(s) but 0 image(s)"),
    (["--height", "64"], "give both --height and --width"),
])
def test_bad_input_is_a_clear_error(tmp_path, capsys, args, message):
    base = ["run", "--checkpoint", "tiny", "--prompt", "x", "--steps", "1", "--out", str(tmp_path)]
    try:
        code = main(base + args)
    except SystemExit as e:
        code, err = 2, str(e)
    else:
        err = capsys.readouterr().err
    assert code == 2 and message in err
    assert not list(tmp_path.glob("*.png"))


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    code = main(["run", "--checkpoint", str(tmp_path / "missing"), "--prompt", "x", "--steps", "1"])
    assert code == 2 and "checkpoint not found" in capsys.readouterr().err
