"""MMGen's SiT: the released config on the meta device, the forward oracle, the VAE oracle."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.mmgen_common import EMA, FIXTURES, TOL, VAE
from unidiff_core.mmgen.config import RELEASE_PARAMS, named_config, release_config
from unidiff_core.mmgen.loading import load_model
from unidiff_core.mmgen.model import MMGenSiT, sincos_pos_embed_2d

# (key, shape) rows of the released SiT-XL/2 state dict
RELEASED_SHAPES = {
    "pos_embed": (1, 256, 1152), "x_embedder.proj.weight": (1152, 16, 2, 2), "t_embedder.mlp.0.weight": (1152, 256),
    "t_embedder.mlp.2.weight": (576, 1152), "t_embedder.mlp_fused.0.weight": (1152, 2304),
    "t_embedder.mlp_fused.2.weight": (1152, 1152), "y_embedder.embedding_table.weight": (1001, 1152),
    "blocks.27.attn.qkv.weight": (3456, 1152), "blocks.0.attn.proj.bias": (1152,), "blocks.3.mlp.fc1.weight": (4608, 1152),
    "blocks.3.mlp.fc2.weight": (1152, 4608), "blocks.27.adaLN_modulation.1.weight": (6912, 1152),
    "projectors.0.0.weight": (2048, 1152), "projectors.0.2.weight": (2048, 2048), "projectors.0.4.weight": (768, 2048),
    "taskcond_embedder.embedding_table.weight": (5, 1152), "lis_final_layer.3.linear.weight": (16, 1152),
    "lis_final_layer.0.adaLN_modulation.1.weight": (2304, 1152),
}


@pytest.fixture(scope="module")
def ema_model():
    torch.set_num_threads(1)
    return load_model(EMA, projectors=True)


def test_release_config_on_meta_has_the_released_parameters_and_keys():
    with torch.device("meta"):
        model = MMGenSiT(release_config())
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == RELEASE_PARAMS == 694_647_936
    assert len(state) == 315
    for key, shape in RELEASED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    with torch.device("meta"):
        no_proj = MMGenSiT(release_config(), projectors=False)
    assert sum(p.numel() for p in no_proj.parameters()) == 686_516_608
    assert not any(k.startswith("projectors.") for k in no_proj.state_dict())


def test_pos_embed_formula_equals_the_stored_table():
    stored = load_file(EMA)["pos_embed"]
    assert torch.equal(torch.from_numpy(sincos_pos_embed_2d(64, 16))[None], stored)
    assert sincos_pos_embed_2d(1152, 16).shape == (256, 1152)


def test_forward_oracle(ema_model):
    o = load_file(FIXTURES / "forward_tiny.safetensors")
    with torch.no_grad():
        out, zs = ema_model(o["x"], o["t"], o["y"], o["task"], return_zs=True)
        t_emb = ema_model.t_embedder(o["t"])
        no_task = ema_model(o["x"][:1], o["t"][:1], o["y"][:1])
    assert (out - o["out"]).abs().max() <= TOL
    assert (zs[0] - o["zs0"]).abs().max() <= TOL
    assert (t_emb - o["t_embedder_out"]).abs().max() <= TOL
    assert (no_task - o["out_row0_without_task_arg"]).abs().max() <= TOL  # no token = token 0
    assert out.abs().max() > 1  # a real output (a zero-initialised model would give zeros)


def test_explicit_attention_path_matches_fused(ema_model):
    explicit = load_model(EMA, fused_attn=False)
    o = load_file(FIXTURES / "forward_tiny.safetensors")
    with torch.no_grad():
        a = ema_model(o["x"], o["t"], o["y"], o["task"])
        b = explicit(o["x"], o["t"], o["y"], o["task"])
    assert not explicit.config.fused_attn and (a - b).abs().max() <= 1e-5


def test_time_input_must_have_one_value_per_channel(ema_model):
    x = torch.zeros(1, 16, 32, 32)
    with pytest.raises(ValueError, match="one time per latent channel"):
        ema_model(x, torch.ones(1), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"x must be \(B, 16, 32, 32\)"):
        ema_model(torch.zeros(1, 16, 16, 16), torch.ones(1, 16, 1, 1), torch.tensor([0]))


def test_modality_times_are_embedded_per_modality(ema_model):
    """Times differing only inside one modality's channels change the output; the channel mean is per modality."""
    x = torch.randn(1, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.full((1, 16, 1, 1), 0.5)
    t2 = t.clone()
    t2[0, 4:8] = 0.1
    with torch.no_grad():
        assert (ema_model(x, t, torch.tensor([1])) - ema_model(x, t2, torch.tensor([1]))).abs().max() > 1e-3


def test_vae_oracle():
    from unidiff_core.mmgen.vae import MMGenVAE

    vae = MMGenVAE.from_pretrained(VAE)
    o = load_file(FIXTURES / "vae_tiny.safetensors")
    mean, std = vae.posterior(o["encode.input"])
    assert (mean - o["encode.mean"]).abs().max() <= TOL and (std - o["encode.std"]).abs().max() <= TOL
    with torch.no_grad():
        decoded = vae.model.decode(o["decode.input"]).sample
    assert (decoded - o["decode.output"]).abs().max() <= TOL
    # the latent is a posterior sample scaled by 0.18215, the noise a draw of the given generator
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    z = vae.encode(o["encode.input"], generator=torch.Generator().manual_seed(3))
    assert (z - (o["encode.mean"] + o["encode.std"] * eps) * 0.18215).abs().max() <= TOL


def test_vae_decode_truncates_to_uint8():
    from unidiff_core.mmgen.vae import MMGenVAE

    vae = MMGenVAE.from_pretrained(VAE)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    pixels = vae.decode(z)
    with torch.no_grad():
        ref = vae.model.decode(z / torch.full((1, 4, 1, 1), 0.18215)).sample
    expected = ((ref + 1) / 2 * 255).clamp(0, 255).permute(0, 2, 3, 1)
    assert pixels.dtype == torch.uint8 and pixels.shape == (1, 64, 64, 3)
    assert np.array_equal(pixels.numpy(), np.floor(expected.numpy()).astype(np.uint8))
    assert not np.array_equal(pixels.numpy(), np.round(expected.numpy()).astype(np.uint8))


def test_tiny_names_pick_the_heads():
    assert named_config("SiT-T/2").num_heads == 4 and named_config("SiT-XL/2").num_heads == 16
    assert named_config("SiT-B/4").patch_size == 4
    with pytest.raises(KeyError):
        named_config("SiT-Q/2")
