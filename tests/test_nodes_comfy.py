"""The pack on ComfyUI's real host services, in-process (skipped unless COMFYUI_PATH points at ComfyUI):
model folder registration, the ProgressBar hook with live previews, Cancel, and memory management
through ModelPatcher. Run with ComfyUI's Python (its requirements plus this pack's):

    COMFYUI_PATH=~/.cache/unidiff-comfy/ComfyUI ~/.cache/unidiff-comfy/venv/bin/python -m pytest -q \\
        -p no:cacheprovider tests/test_nodes.py tests/test_nodes_comfy.py tests/test_workflows.py
"""

from __future__ import annotations

import pytest
import torch

from test_nodes import M, host, loader_mod, model, models_dir, sample, text  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(not host.available(), reason="ComfyUI is not on sys.path (set COMFYUI_PATH)")


@pytest.fixture()
def hook():
    """Record ProgressBar calls as main.py's hook would receive them (with the interrupt check it does)."""
    import comfy.utils

    calls = []
    on_call = []

    def record(value, total, preview, node_id=None):
        calls.append((value, total, preview, node_id))
        for fn in on_call:
            fn(len(calls))

    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(record)
    yield calls, on_call
    comfy.utils.set_progress_bar_global_hook(previous)


def test_model_folder_is_registered_with_folder_paths(tmp_path):
    import folder_paths

    host.register_model_folder()
    paths, exts = folder_paths.folder_names_and_paths["unidiff"]
    assert any(p.endswith("unidiff") for p in paths) and {".safetensors"} <= set(exts)
    (tmp_path / "OneDiffusion" / "transformer").mkdir(parents=True)
    (tmp_path / "OneDiffusion" / "transformer" / "config.json").write_text("{}")
    folder_paths.add_model_folder_path("unidiff", str(tmp_path))
    try:
        assert "OneDiffusion" in host.list_checkpoints()
        assert "OneDiffusion" in M["UniDiffLoader"].INPUT_TYPES()["required"]["ckpt_name"][0]
    finally:
        folder_paths.folder_names_and_paths["unidiff"][0].remove(str(tmp_path))


def test_progress_bar_and_live_preview(model, hook):
    from comfy.cli_args import LatentPreviewMethod, args

    calls, _ = hook
    previous = args.preview_method
    args.preview_method = LatentPreviewMethod.Latent2RGB
    try:
        (frames,) = M["UniDiffImageFrame"]().build("image")
        (frames,) = M["UniDiffImageFrame"]().build("depth", frames=frames)
        (latents,) = M["UniDiffSampler"]().sample(model, text("custom", "[[depth2image]] x"), 0, 3, 4.0, 64, 64, 1,
                                                  True, frames, unique_id="7")
    finally:
        args.preview_method = previous
    assert [(v, t, n) for v, t, _, n in calls] == [(1, 3, "7"), (2, 3, "7"), (3, 3, "7")]
    fmt, image, size = calls[-1][2]
    assert fmt == "JPEG" and image.size == (16, 8) and size == 512  # 2 frames of 8x8 latents, latent2rgb
    assert latents.latents.shape == (1, 2, 16, 8, 8)


def test_no_preview_when_previews_are_off(model, hook):
    from comfy.cli_args import LatentPreviewMethod, args

    calls, _ = hook
    assert args.preview_method == LatentPreviewMethod.NoPreviews  # ComfyUI's default
    M["UniDiffSampler"]().sample(model, text("text2image", "x"), 0, 2, 4.0, 64, 64, 1, True, unique_id="3")
    assert [c[2] for c in calls] == [None, None]


def test_cancel_raises_comfyui_interrupt_within_one_step(model, hook):
    import comfy.model_management as mm

    calls, on_call = hook
    on_call.append(lambda n: mm.interrupt_current_processing(True) if n == 2 else None)
    with pytest.raises(mm.InterruptProcessingException):
        M["UniDiffSampler"]().sample(model, text("text2image", "x"), 0, 20, 4.0, 64, 64, 1, True, unique_id="3")
    assert len(calls) == 2 and not mm.processing_interrupted()  # stopped before step 3; flag consumed


def test_parts_are_managed_by_comfyui(model):
    """Each part is a ModelPatcher in ComfyUI's loaded-model list; unload_all_models drops them, the next
    run loads them again and gives the same result."""
    import comfy.model_management as mm

    first = sample(model, text("text2image", "a fox"), steps=2).latents
    loaded = {id(m) for m in mm.loaded_models()}
    for name in ("text_encoder", "transformer", "vae"):
        assert id(model.parts[name].patcher) in loaded, name
        assert type(model.parts[name].patcher.model).__name__.startswith("UniDiff")
    mm.unload_all_models()
    assert not {id(p.patcher) for p in model.parts.values()} & {id(m) for m in mm.loaded_models()}
    again = sample(model, text("text2image", "a fox"), steps=2).latents
    assert torch.equal(first, again)
    assert id(model.parts["transformer"].patcher) in {id(m) for m in mm.loaded_models()}


def test_only_the_transformer_streams(model):
    """The transformer is built from comfy.ops layers, so ComfyUI may load it partially; diffusers' VAE and
    transformers' T5 cannot run with weights elsewhere and get a patcher that loads them whole."""
    assert model.parts["transformer"].streams
    assert type(model.parts["transformer"].patcher).__name__ == "ModelPatcher"
    for name in ("text_encoder", "vae"):
        assert not model.parts[name].streams
        assert type(model.parts[name].patcher).__name__ == "WholeModelPatcher"


def test_fp8_transformer_loads_whole(models_dir):
    """FP8Linear keeps its weights in buffers that no ComfyUI layer casts: that transformer loads whole."""
    try:
        (fp8,) = M["UniDiffLoader"]().load("tiny-onediffusion", host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32",
                                           "fp8_e4m3")
        assert not fp8.parts["transformer"].streams
        assert type(fp8.parts["transformer"].patcher).__name__ == "WholeModelPatcher"
        assert torch.isfinite(sample(fp8, text("text2image", "a red cube"), steps=1).latents).all()
    finally:
        loader_mod.clear_cache()  # later tests reload the fp32 model


def test_partially_offloaded_transformer_gives_the_same_result(model, monkeypatch):
    """ComfyUI offloads most of the transformer to make room (what it does under --lowvram or when VRAM is
    short): its layers then cast their weights per call, and the sampler's result does not change."""
    import comfy.model_management as mm
    import comfy.ops

    first = sample(model, text("text2image", "a fox"), steps=2).latents
    patcher = model.parts["transformer"].patcher
    freed = patcher.partially_unload(patcher.offload_device, memory_to_free=patcher.model_size() // 2)
    assert freed > 0 and patcher.model.model_lowvram
    streamed = {id(m) for m in patcher.model.modules() if getattr(m, "comfy_cast_weights", False)}
    assert streamed
    cast = set()
    original = comfy.ops.cast_bias_weight

    def counting(s, *args, **kwargs):
        cast.add(id(s))
        return original(s, *args, **kwargs)

    monkeypatch.setattr(comfy.ops, "cast_bias_weight", counting)
    # On the CPU ComfyUI always reloads whole; keep the partial load for this run, as on a short GPU.
    monkeypatch.setattr(mm, "load_models_gpu", lambda *a, **k: None)
    again = sample(model, text("text2image", "a fox"), steps=2).latents
    assert cast == streamed  # every offloaded layer fetched its weights per call
    assert torch.equal(first, again)
    monkeypatch.undo()
    mm.unload_all_models()


def test_vae_and_text_encoder_are_never_offloaded_in_part(model):
    """Asked to free a little of the VAE's memory, ComfyUI unloads it whole (a partial offload would leave
    layers that cannot reach their weights)."""
    import comfy.model_management as mm

    sample(model, text("text2image", "a fox"), steps=1)
    patcher = model.parts["vae"].patcher
    assert patcher.partially_unload(patcher.offload_device, memory_to_free=1) == 0
    mm.unload_all_models()
    assert not {id(p.patcher) for p in model.parts.values()} & {id(m) for m in mm.loaded_models()}


def test_lora_node_patches_a_clone_of_the_transformers_model_patcher(models_dir, model):
    """ComfyUI's way: the LoRA model's transformer part has a cloned ModelPatcher carrying one weight patch per
    adapted layer; the loaded model's patcher has none, and loading one or the other swaps the weights."""
    from lora_common import TINY_LORA_NAME

    (one,) = M["UniDiffLoRA"]().apply(model, TINY_LORA_NAME, 1.0)
    base, patched = model.parts["transformer"].patcher, one.parts["transformer"].patcher
    assert patched is not base and patched.is_clone(base) and not base.patches
    assert len(patched.patches) == 18 and all(k.startswith("inner.layers.") for k in patched.patches)
    assert one.pipeline is model.pipeline and one.parts["vae"] is model.parts["vae"]
    def weight():  # ComfyUI may swap the Parameter object itself when it patches: read it afresh
        return model.pipeline.transformer.layers[0].attention.wq.weight.detach().clone()

    model.ready("transformer")
    plain = weight()
    one.ready("transformer")
    assert not torch.equal(weight(), plain)  # ComfyUI patched the shared module for the LoRA model
    model.ready("transformer")
    assert torch.equal(weight(), plain)  # ... and restored it for the loaded one
