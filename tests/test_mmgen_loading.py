"""MMGen checkpoints: the released .pt (Namespace or dict args), the EMA safetensors, a converted folder;
and each way a checkpoint can be wrong."""

import argparse
import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.mmgen_common import EMA, training_args, write_released_pt
from unidiff_core.common.errors import CheckpointError, InputError
from unidiff_core.families import family_of
from unidiff_core.mmgen.loading import convert, load_model


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def released_pt(tmp_path_factory):
    return write_released_pt(tmp_path_factory.mktemp("ckpt") / "0600000.pt")


def test_released_pt_loads_the_ema_weights(released_pt):
    model = load_model(released_pt)
    ema = load_file(EMA)
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())  # ema, not model (+0.25)
    assert model.config.model_name == "SiT-T/2" and model.config.num_heads == 4 and model.config.fused_attn
    assert model.projectors is None  # skipped for inference
    assert same_weights(model, load_model(EMA))


def test_plain_dict_args_load_too(tmp_path):
    path = write_released_pt(tmp_path / "dict.pt", args_as_dict=True)
    assert same_weights(load_model(path), load_model(EMA))


def test_plain_weights_only_refuses_the_released_namespace(released_pt):
    """Why the loader allows exactly argparse.Namespace."""
    with pytest.raises(pickle.UnpicklingError, match="argparse.Namespace"):
        torch.load(released_pt, weights_only=True)


class Evil:
    def __reduce__(self):
        return (print, ("this would run",))


def test_a_pickle_with_other_globals_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"ema": load_file(EMA), "args": argparse.Namespace(**training_args()), "hook": Evil()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: the pickle needs more than tensors"):
        load_model(path)


def test_truncated_pt_is_named(released_pt, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(released_pt.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable torch checkpoint .*truncated or corrupt"):
        load_model(path)


def test_truncated_safetensors_is_named(tmp_path):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(EMA.read_bytes()[:200_000])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: truncated"):
        load_model(path)


def test_config_weight_mismatch_is_named(tmp_path):
    # the args name a different architecture than the weights have
    path = write_released_pt(tmp_path / "wrong.pt", args={**training_args(), "model": "SiT-T/4"})
    with pytest.raises(CheckpointError, match=r"wrong\.pt: the weights do not fit the config SiT-T/4 .*shape mismatch"):
        load_model(path)
    # a tensor missing from the weights
    ema = load_file(EMA)
    del ema["blocks.1.attn.qkv.weight"]
    path = write_released_pt(tmp_path / "missing.pt", ema=ema)
    with pytest.raises(CheckpointError, match=r"missing keys: blocks\.1\.attn\.qkv\.weight"):
        load_model(path)


def test_unknown_model_name_and_flags_are_named(tmp_path):
    path = write_released_pt(tmp_path / "name.pt", args={**training_args(), "model": "DiT-XL/2"})
    with pytest.raises(CheckpointError, match=r"model 'DiT-XL/2' is not an MMGen SiT \(known: SiT-XL/2"):
        load_model(path)
    path = write_released_pt(tmp_path / "tasks.pt", args={**training_args(), "num_tasks": 1})
    with pytest.raises(CheckpointError, match=r"args\.num_tasks = 1; the MMGen release layout needs 4"):
        load_model(path)


def test_missing_ema_is_named(tmp_path):
    path = tmp_path / "noema.pt"
    torch.save({"model": load_file(EMA), "args": training_args()}, path)
    with pytest.raises(CheckpointError, match=r"no 'ema' weights"):
        load_model(path)


def test_convert_writes_the_ema_alone(released_pt, tmp_path):
    out = convert(released_pt, tmp_path / "fp32")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["config.json", "model.safetensors"]
    weights = load_file(out / "model.safetensors")
    assert not any(k.startswith("projectors.") for k in weights) and len(weights) == 49
    assert json.loads((out / "config.json").read_text())["family"] == "mmgen"
    assert same_weights(load_model(out), load_model(released_pt))
    assert family_of(out).name == "mmgen" and family_of(out / "model.safetensors").name == "mmgen"
    with pytest.raises(CheckpointError, match="has no projector heads"):
        load_model(out, projectors=True)


def test_convert_bf16(released_pt, tmp_path):
    out = convert(released_pt, tmp_path / "bf16", dtype="bf16")
    weights = load_file(out / "model.safetensors")
    assert all(v.dtype == torch.bfloat16 for v in weights.values())
    model = load_model(out, dtype=torch.bfloat16)
    ema = load_file(EMA)
    assert all(torch.equal(v, ema[k].to(torch.bfloat16)) for k, v in model.state_dict().items())
    with pytest.raises(InputError, match="dtype: not a conversion dtype"):
        convert(released_pt, tmp_path / "x", dtype="fp8")


def test_safetensors_config_from_shapes_when_no_metadata(tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file(load_file(EMA), str(path))  # no metadata, no config.json
    model = load_model(path)
    assert model.config.num_heads == 4 and model.config.depth == 2
    assert same_weights(model, load_model(EMA))


def test_family_detection():
    assert family_of(EMA).name == "mmgen"
    from tests.conftest import TINY_CHECKPOINT

    assert family_of(TINY_CHECKPOINT).name == "onediffusion"


def test_a_header_length_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    """The EMA file's header length begins with the byte 0x80, like a pickle's first byte."""
    assert EMA.read_bytes()[:1] == b"\x80"
    from unidiff_core.common.safetensors_io import check_safetensors

    check_safetensors(EMA)
    disguised = tmp_path / "pickle.safetensors"
    torch.save({"x": torch.zeros(1)}, disguised, _use_new_zipfile_serialization=False)  # starts with 0x80
    with pytest.raises(CheckpointError, match="pickle/zip file named .safetensors"):
        check_safetensors(disguised)
