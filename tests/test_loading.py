"""Checkpoint loading: layouts, dtypes, and a clear error for every kind of broken checkpoint."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from unidiff_core.common.errors import CheckpointError
from unidiff_core.onediffusion.loading import load_transformer
from unidiff_core.onediffusion.pipeline import UniDiffPipeline


@pytest.fixture()
def ckpt(tmp_path, tiny_checkpoint):
    """A writable copy of the tiny checkpoint."""
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


WEIGHTS = "transformer/diffusion_pytorch_model.safetensors"


def test_loads_diffusers_folder_in_each_dtype(tiny_checkpoint):
    for dtype in (torch.float32, torch.bfloat16):
        m = load_transformer(tiny_checkpoint / "transformer", dtype=dtype)
        assert {p.dtype for p in m.parameters()} == {dtype}
        assert not any(p.is_meta for p in m.parameters())


def test_single_file_transformer_with_separate_parts(tmp_path, ckpt, golden_pipeline):
    single = tmp_path / "onediffusion_bf16.safetensors"
    state = {k: v.to(torch.bfloat16) for k, v in load_file(ckpt / WEIGHTS).items()}
    save_file(state, single)  # no config beside it: the config is inferred from the shapes
    pipe = UniDiffPipeline.from_pretrained(single, dtype="bf16", vae=ckpt / "vae", text_encoder=ckpt / "text_encoder",
                                           tokenizer=ckpt / "tokenizer")
    assert pipe.transformer.config.hidden_size == 96 and pipe.transformer.config.num_kv_heads == 2
    assert pipe.dtype == torch.bfloat16
    ref = golden_pipeline.transformer.state_dict()
    for k, v in pipe.transformer.state_dict().items():
        assert torch.equal(v, ref[k].to(torch.bfloat16)), k


def test_single_file_without_parts_is_an_error(tmp_path, ckpt):
    single = tmp_path / "alone" / "model.safetensors"
    single.parent.mkdir()
    shutil.copy(ckpt / WEIGHTS, single)
    with pytest.raises(CheckpointError, match="give the VAE separately"):
        UniDiffPipeline.from_pretrained(single)


def test_missing_checkpoint_and_subfolders(tmp_path, ckpt):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        UniDiffPipeline.from_pretrained(tmp_path / "nope")
    shutil.rmtree(ckpt / "vae")
    with pytest.raises(CheckpointError, match="VAE folder not found"):
        UniDiffPipeline.from_pretrained(ckpt)


def test_missing_weights_file(ckpt):
    (ckpt / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="no diffusion_pytorch_model.safetensors"):
        load_transformer(ckpt / "transformer")


def test_truncated_file_names_the_file(ckpt):
    path = ckpt / WEIGHTS
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as e:
        load_transformer(ckpt / "transformer")
    assert str(path) in str(e.value)


def test_corrupt_header(ckpt):
    path = ckpt / WEIGHTS
    data = bytearray(path.read_bytes())
    data[8:40] = b"\xff" * 32
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_transformer(ckpt / "transformer")


def test_pickle_files_are_refused(ckpt, tmp_path):
    (ckpt / WEIGHTS).unlink()
    torch.save({"x": torch.zeros(1)}, ckpt / "transformer" / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle"):
        load_transformer(ckpt / "transformer")
    ckpt_file = tmp_path / "model.ckpt"
    torch.save({"x": torch.zeros(1)}, ckpt_file)
    with pytest.raises(CheckpointError, match="pickle"):
        load_transformer(ckpt_file)
    disguised = tmp_path / "model.safetensors"
    torch.save({"x": torch.zeros(1)}, disguised)  # a zip/pickle file with the wrong name
    with pytest.raises(CheckpointError, match="pickle"):
        load_transformer(disguised)


def test_config_that_does_not_match_the_weights_lists_keys(ckpt):
    cfg_path = ckpt / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["depth"] = 3
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"missing keys: layers\.2\."):
        load_transformer(ckpt / "transformer")
    cfg["depth"], cfg["hidden_size"] = 2, 120
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_transformer(ckpt / "transformer")


def test_unexpected_keys_are_listed(ckpt):
    path = ckpt / WEIGHTS
    state = load_file(path)
    state["extra.weight"] = torch.zeros(2)
    save_file(state, path)
    with pytest.raises(CheckpointError, match="unexpected keys: extra.weight"):
        load_transformer(ckpt / "transformer")


def test_unknown_config_key_is_an_error(ckpt):
    cfg_path = ckpt / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["hiden_size"] = 3
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown NextDiT config keys"):
        load_transformer(ckpt / "transformer")


def test_fp16_on_cpu_is_refused_with_a_fix(tiny_checkpoint):
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        UniDiffPipeline.from_pretrained(tiny_checkpoint, dtype="fp16")


def test_vae_from_a_single_file(tiny_checkpoint):
    from unidiff_core.onediffusion.loading import load_vae

    vae_dir = tiny_checkpoint / "vae"
    vae = load_vae(vae_dir / "diffusion_pytorch_model.safetensors", single_file_config=vae_dir)
    ref = load_file(vae_dir / "diffusion_pytorch_model.safetensors")
    state = vae.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ref.items())
    assert vae.scaling_factor == 1.5305


def test_bundled_sd3_vae_config_builds_the_sd3_vae():
    from diffusers import AutoencoderKL

    from unidiff_core.onediffusion import loading

    config = AutoencoderKL.load_config(str(loading.Path(loading.__file__).parent / "configs" / "sd3_vae"))
    assert config["latent_channels"] == 16 and config["scaling_factor"] == 1.5305
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(config)
    assert sum(p.numel() for p in vae.parameters()) == 83_819_683  # the SD3 VAE (16 latent channels)
