"""Bad inputs fail fast with a message that names the input, the value and the fix (no server needed).

* unidiff_core/validation.py, unit by unit;
* every case of tests/bad_inputs.json: its prompt through a stand-in of ComfyUI's validation (the pack's
  VALIDATE_INPUTS + ComfyUI's type/range/combo checks) or executor (the pack's nodes for real, on the tiny
  checkpoint, with every model call counted: a run-time error must come before any model work), its CLI
  command and its core API call. tests/realhost/test_reliability.py posts the same prompts to a real server;
* safe loading (a bad checkpoint is refused without dropping the loaded model, nothing is downloaded,
  pickles are never executed), the tiled retry of an out-of-memory VAE decode, what Cancel frees, and
  atomic output files.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import sys
import weakref
from pathlib import Path

import pytest
import torch

import badinput_harness as bh
from test_nodes import M, Recorder, cancelled_exception, host, loader_mod, model_folders, pack, sample, text
from unidiff_core.common import checks
from unidiff_core.onediffusion import validation
from unidiff_core.onediffusion.tasks import TASKS
from unidiff_core.common.errors import InputError

CASES = bh.load_cases()
BY_KIND = {kind: [c for c in CASES if c["expect"] == kind] for kind in ("invalid", "error")}


def core(name):
    return importlib.import_module(f"{pack.__name__}.unidiff_core.onediffusion.{name}")


def ids(cases):
    return [c["id"] for c in cases]


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """models/ with the tiny checkpoint and the bad ones (tests/badinput_harness.make_checkpoints)."""
    root = tmp_path_factory.mktemp("models")
    (root / "unidiff").mkdir()
    (root / "unidiff" / bh.TINY_NAME).symlink_to(bh.TINY)
    checkpoints = bh.make_checkpoints(root / "unidiff")
    with model_folders(unidiff=[root / "unidiff"], vae=[root / "vae"], text_encoders=[root / "text_encoders"]):
        yield root, checkpoints
    assert not bh.pickle_ran(root / "unidiff"), "a pickle checkpoint was executed"


@pytest.fixture(scope="module")
def tiny_model(models):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    (m,) = M["UniDiffLoader"]().load(bh.TINY_NAME, host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32")
    yield m
    torch.set_num_threads(threads)


@pytest.fixture()
def model_work(monkeypatch):
    """Counts every call into a model: T5 encode, transformer forward, VAE encode/decode."""
    counts = {"text": 0, "transformer": 0, "vae_encode": 0, "vae_decode": 0}

    def counting(cls, name, key):
        original = getattr(cls, name)

        def wrapper(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    counting(core("text").TextEncoder, "encode_one", "text")
    counting(core("model").NextDiT, "forward", "transformer")
    counting(core("vae").VAE, "posterior", "vae_encode")
    counting(core("vae").VAE, "decode", "vae_decode")
    return counts


def on_this_device(case):
    if case.get("device") and host.torch_device().type != case["device"]:
        pytest.skip(f"case for device {case['device']}")


# ------------------------------------------------------------------------------------ the case list
def test_cases_are_well_formed():
    assert len(CASES) >= 25
    assert len(BY_KIND["invalid"]) + len(BY_KIND["error"]) == len(CASES)
    for case in CASES:
        assert set(case) <= {"id", "base", "add", "set", "expect", "text", "after", "cli", "cli_text", "core",
                             "core_text", "device"}, case["id"]
        assert case["text"].strip(), case["id"]
        bh.build_prompt(case)  # the base exists and every reference resolves


@pytest.mark.parametrize("base", sorted({c["base"] for c in CASES}))
def test_every_base_prompt_is_valid(models, base):
    """The unmodified base prompts pass validation: a case fails for its own change only."""
    assert bh.validate_prompt(bh.tiny(bh.load_api(base)), M) == []


@pytest.mark.parametrize("case", BY_KIND["invalid"], ids=ids(BY_KIND["invalid"]))
def test_refused_before_queueing(models, case):
    on_this_device(case)
    errors = bh.validate_prompt(bh.build_prompt(case), M)
    assert any(case["text"] in e for e in errors), errors


@pytest.mark.parametrize("case", BY_KIND["error"], ids=ids(BY_KIND["error"]))
def test_fails_before_model_work(models, tiny_model, model_work, case):
    prompt = bh.build_prompt(case)
    assert bh.validate_prompt(prompt, M) == [], "passes ComfyUI's validation: the node finds it when it runs"
    with pytest.raises(ValueError) as err:
        bh.execute_prompt(prompt, M)
    assert case["text"] in str(err.value), str(err.value)
    if case.get("after") == "sampling":
        assert model_work["vae_decode"] == 0, model_work  # the decoder's check comes before its VAE decode
    else:
        assert not any(model_work.values()), model_work


CLI_CASES = [c for c in CASES if c.get("cli")]
CORE_CASES = [c for c in CASES if c.get("core")]


@pytest.mark.parametrize("case", CLI_CASES, ids=ids(CLI_CASES))
def test_cli_refuses(models, case, tmp_path):
    on_this_device(case)
    code, err = bh.run_cli(case, tmp_path, models[1])
    assert code != 0, err
    assert case.get("cli_text", case["text"]) in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("case", CORE_CASES, ids=ids(CORE_CASES))
def test_core_api_refuses(models, case, tmp_path):
    error = bh.run_core(case, tmp_path, models[1], pack)
    assert error is not None, "no error"
    assert case.get("core_text", case["text"]) in str(error), str(error)


def test_enough_distinct_bad_inputs():
    print(f"{len(CASES)} bad inputs: {len(BY_KIND['invalid'])} refused at POST /prompt, {len(BY_KIND['error'])} "
          f"at run time; {len(CLI_CASES)} also through the CLI, {len(CORE_CASES)} through the core API")
    assert len(CASES) >= 25 and len(CLI_CASES) >= 20 and len(CORE_CASES) >= 20


# ------------------------------------------------------------------------------------ validation.py
def test_messages_name_input_value_and_fix():
    with pytest.raises(InputError) as err:
        checks.size("width", 100)
    assert str(err.value) == "width: not a multiple of 16 (got 100); use 96 or 112"
    assert (err.value.input_name, err.value.value) == ("width", 100)
    assert checks.message(checks.size, "height", 64) is True
    assert checks.message(checks.size, "height", 8) == \
        "height: smaller than the minimum 16 (got 8); use a value from 16 to 4096"
    assert checks.message(checks.size, "width", 4100) == \
        "width: bigger than the maximum 4096 (got 4100); use a value from 16 to 4096"


def test_sizes():
    assert checks.size_pair(0, 0) == (0, 0) and checks.size_pair(64, 48) == (64, 48)
    assert checks.size("width", 0, allow_auto=True) == 0
    for w, h, text_ in [(64, 0, "height: auto (0) but width=64"), (0, 48, "width: auto (0) but height=48"),
                        (65, 64, "width: not a multiple of 16"), (-16, 64, "smaller than the minimum 0"),
                        (4112, 64, "bigger than the maximum 4096"), ("x", 64, "not an integer"),
                        (64.5, 64, "not an integer")]:
        with pytest.raises(InputError, match=re.escape(text_)):
            checks.size_pair(w, h)
    assert checks.nearest_sizes(100) == [96, 112] and checks.nearest_sizes(8) == [16]
    with pytest.raises(InputError, match="multi-view tasks need a square size"):
        validation.square(64, 128)


def test_boxes():
    ok = validation.boxes('[{"label": " cat ", "box": [0, 0.1, 1, 0.9]}]')
    assert ok == [{"label": "cat", "box": [0.0, 0.1, 1.0, 0.9]}]
    assert validation.boxes([{"label": "a", "box": [0, 0, 64, 32]}], units="pixel", canvas=(32, 64))
    assert validation.boxes("", allow_empty=True) == []
    bad = {
        "[{": "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 3)",
        '{"label": "a"}': "a JSON dict, not a list",
        "[]": "no box yet",
        '[["a", 0, 0, 1, 1]]': "boxes[0]: not a box",
        '[{"label": "a", "box": [0, 0, 1]}]': "boxes[0].box: not 4 numbers",
        '[{"label": "a", "box": [0, 0, "x", 1]}]': "boxes[0].box: not 4 numbers",
        '[{"label": "a", "box": [0, 0, NaN, 1]}]': "not 4 finite numbers",
        '[{"label": 3, "box": [0, 0, 1, 1]}]': "boxes[0].label: no label",
        '[{"label": "<a>", "box": [0, 0, 1, 1]}]': "boxes[0].label: no label",
        '[{"label": "a", "box": [-0.1, 0, 1, 1]}]': "reaches outside the image",
        '[{"label": "a", "box": [0.2, 0.2, 0.2, 0.4]}]': "corners not ordered or the box is empty",
    }
    for value, expected in bad.items():
        with pytest.raises(InputError) as err:
            validation.boxes(value)
        assert expected in str(err.value), (value, str(err.value))
    many = [{"label": f"l{i}", "box": [0, 0, 1, 1]} for i in range(21)]
    with pytest.raises(InputError, match="more than 20 boxes"):
        validation.boxes(many)
    with pytest.raises(InputError, match=r"reaches outside the image \(pixels of the 64x32 canvas\)"):
        validation.boxes([{"label": "a", "box": [0, 0, 65, 10]}], units="pixel", canvas=(32, 64))
    assert validation.boxes([{"label": "a", "box": [0, 0, 1.0000001, 1]}])  # the editor's rounding


def test_cameras_and_numbers():
    assert validation.cameras("0, 30, none", "0, 10, none") == ([0.0, 30.0, None], [0.0, 10.0, None])
    assert validation.cameras("0; 30", "5") == ([0.0, 30.0], [5.0, 5.0])
    assert validation.cameras("0, None", "0") == ([0.0, None], [0.0, None])
    assert validation.numbers([0, None, "30"], "azimuths", allow_none=True) == [0.0, None, 30.0]
    for az, el, expected in [("", "0", "azimuths: no view"), ("0, 1e999", "0", "'1e999' is not a number"),
                             ("0, 30", "0, 0, 0", "elevations: 3 value(s) for 2 azimuths"),
                             ("none", "none", "no known camera"), ("0, none", "0, 5", "view 1: only one")]:
        with pytest.raises(InputError, match=re.escape(expected)):
            validation.cameras(az, el)
    with pytest.raises(InputError, match="'none' is not allowed here"):
        validation.numbers("none", "distance")


def test_task_text():
    ok = [("text2image", "a cat", ""), ("image2depth", "", ""), ("image2semanticmap", "", "cat, dog=cyan"),
          ("image2semanticmap", "[[semanticmap2image]] <#FF0000 red mask: cat>", ""), ("custom", "[[x]] y", ""),
          ("text2image", None, None), (None, "", "cat")]
    for task, prompt, labels in ok:
        validation.task_text(task, prompt, labels, TASKS)
    bad = [("text_to_image", "x", "", "task: not one of the choices (got 'text_to_image'); did you mean 'text2image'?"),
           ("text2image", " ", "", "prompt: empty, but task 'text2image' needs a caption"),
           ("image_editing", "", "", "needs an instruction"), ("custom", "", "", "uses the prompt verbatim"),
           ("depth2image", "a", "cat", "labels: task 'depth2image' takes no labels (got 'cat'); clear the labels"),
           ("image2boundingbox", "", " ", "labels: empty, but task 'image2boundingbox' needs the concepts"),
           ("image2semanticmap", "", "cat, cat", "labels: repeats cat"),
           ("image2semanticmap", "", "cat=red, dog=red", "repeat a colour")]
    for task, prompt, labels, expected in bad:
        with pytest.raises(InputError) as err:
            validation.task_text(task, prompt, labels, TASKS)
        assert expected in str(err.value), str(err.value)


def test_masks_dtypes_and_other_widgets():
    assert validation.mask_fits_image((64, 64), (64, 64)) is False
    assert validation.mask_fits_image((32, 40), (64, 80)) is True  # a scaled copy: resized
    assert validation.mask_fits_image((33, 40), (64, 80)) is True  # rounding of a scaled copy
    with pytest.raises(InputError, match=r"mask: does not match the image 80x64 \(got '80x32 \(WxH\)'\)"):
        validation.mask_fits_image((32, 80), (64, 80))
    with pytest.raises(InputError, match="does not match"):
        validation.mask_fits_image((32, 40), (64, 80), allow_scaled=False)
    checks.dtype_on_device("fp32", "cpu")
    checks.dtype_on_device("bf16", "cpu")
    with pytest.raises(InputError, match="dtype: fp16 is not supported on the CPU"):
        checks.dtype_on_device("fp16", "cpu")
    with pytest.raises(InputError, match="dtype: not one of the choices"):
        checks.dtype_on_device("fp8", "cpu")
    validation.canny_options("canny", True, 100, 200)
    validation.canny_options("depth", False, 200, 100)
    with pytest.raises(InputError, match="extract_canny"):
        validation.canny_options("depth", True, 100, 200)
    assert checks.number("x", "3", 0, 5, integer=True) == 3
    with pytest.raises(InputError, match="not a finite number"):
        checks.number("guidance", "nan", 0, 30)


def test_validation_imports_no_torch():
    import subprocess

    code = "import sys, unidiff_core.onediffusion.validation, unidiff_core.common.errors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=bh.ROOT)
    assert out.stdout.strip() == "False", out.stderr


# ------------------------------------------------------------------------------------ VALIDATE_INPUTS of the nodes
def test_validate_inputs_skip_linked_values_and_keep_comfyui_ranges():
    """A linked widget reaches VALIDATE_INPUTS as None (checked when the node runs); a declared widget loses
    ComfyUI's own min/max/combo check, so the node makes it itself."""
    assert M["UniDiffSampler"].VALIDATE_INPUTS(width=None, height=None) is True
    assert M["UniDiffSampler"].VALIDATE_INPUTS(width=64, height=None) is True
    assert "bigger than the maximum 4096" in M["UniDiffSampler"].VALIDATE_INPUTS(width=8192, height=64)
    assert M["UniDiffTextEncode"].VALIDATE_INPUTS(task="text2image", prompt=None, labels="") is True
    assert M["UniDiffLayoutBoxes"].VALIDATE_INPUTS(boxes=None, width=512, height=512) is True
    assert "smaller than the minimum 16" in M["UniDiffLayoutBoxes"].VALIDATE_INPUTS(boxes=None, width=0, height=64)
    assert "not one of the choices" in M["UniDiffConditionMap"].VALIDATE_INPUTS(map_type="normal", extract_canny=False,
                                                                                canny_low=1, canny_high=2)
    assert "bigger than the maximum 255" in M["UniDiffConditionMap"].VALIDATE_INPUTS(
        map_type="canny", extract_canny=True, canny_low=100, canny_high=300)
    assert M["UniDiffMultiViewCameras"].VALIDATE_INPUTS(azimuths="0, 30", elevations=None) is True
    assert "'x' is not a number" in M["UniDiffMultiViewCameras"].VALIDATE_INPUTS(azimuths=None, elevations="x")
    assert M["UniDiffLoader"].VALIDATE_INPUTS(dtype="auto") is True
    assert "not one of the choices" in M["UniDiffLoader"].VALIDATE_INPUTS(dtype="float8")
    # every VALIDATE_INPUTS argument is an input of the node, with a default (ComfyUI passes only those it has)
    import inspect

    for name, cls in M.items():
        fn = getattr(cls, "VALIDATE_INPUTS", None)
        if fn is None:
            continue
        spec = cls.INPUT_TYPES()
        declared = {**spec.get("required", {}), **spec.get("optional", {})}
        for arg, param in inspect.signature(fn).parameters.items():
            assert arg in declared and param.default is None, (name, arg)


# ------------------------------------------------------------------------------------ loading safety
def test_bad_checkpoint_keeps_the_loaded_model(models, tiny_model, caplog):
    """A bad checkpoint fails in the loader's preflight, before the loaded model is dropped; asking for the
    good one again reuses it (no second load)."""
    with caplog.at_level(logging.INFO, logger="UniDiff"):
        for name, expected in [("truncated", "truncated"), ("mismatch", "weights do not match the config"),
                               ("no_vae", "VAE folder not found"), ("evil.safetensors", "pickle/zip file"),
                               ("corrupt", "corrupt safetensors header")]:
            with pytest.raises(ValueError, match=expected):
                M["UniDiffLoader"]().load(name, host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32")
        again = M["UniDiffLoader"]().load(bh.TINY_NAME, host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32")[0]
    assert again is tiny_model
    assert not [r for r in caplog.records if "loading checkpoint" in r.getMessage()], "reloaded"
    assert not bh.pickle_ran(models[0] / "unidiff")
    with pytest.raises(ValueError, match="not a name inside"):
        host.resolve("unidiff", "../unidiff/" + bh.TINY_NAME)
    with pytest.raises(ValueError, match="not a name inside"):
        host.resolve("unidiff", "/etc/passwd")
    assert "evil.ckpt" not in host.list_checkpoints() and "evil.safetensors" in host.list_checkpoints()


def test_loader_logs_each_real_load(models, caplog):
    loader_mod.clear_cache()
    try:
        with caplog.at_level(logging.INFO, logger="UniDiff"):
            first = M["UniDiffLoader"]().load(bh.TINY_NAME, host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "bf16")[0]
            second = M["UniDiffLoader"]().load(bh.TINY_NAME, host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "bf16")[0]
        assert first is second
        loads = [r.getMessage() for r in caplog.records if "loading checkpoint" in r.getMessage()]
        assert loads == [f"UniDiff: loading checkpoint {bh.TINY_NAME} (bf16) ..."]
    finally:
        loader_mod.clear_cache()


def test_nothing_is_downloaded(monkeypatch):
    """Loading a checkpoint opens no network connection (local files only)."""
    import socket

    from unidiff_core.onediffusion.pipeline import UniDiffPipeline

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during loading: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    pipe = UniDiffPipeline.from_pretrained(bh.TINY)
    assert pipe.transformer is not None


def test_pickles_are_refused_by_content_and_by_name(tmp_path):
    from unidiff_core.onediffusion.loading import CheckpointError, check_safetensors, preflight

    bad = bh.make_checkpoints(tmp_path)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: pickle checkpoints \(\.ckpt\) can run arbitrary code"):
        preflight(bad["evil.ckpt"])
    zipped = tmp_path / "zipped.safetensors"
    torch.save({"w": torch.zeros(2)}, zipped)  # torch's zip format under a safetensors name
    with pytest.raises(CheckpointError, match="zipped.safetensors: this is a pickle/zip file"):
        check_safetensors(zipped)
    assert not bh.pickle_ran(tmp_path)


# ------------------------------------------------------------------------------------ VAE out of memory
def test_vae_decode_out_of_memory_retries_tiled(golden_pipeline, monkeypatch):
    """The first (whole-image) decode raises OutOfMemoryError: the VAE retries in tiles and the result
    matches the untiled decode within the tile-seam blending."""
    vae = golden_pipeline.vae
    model = vae.model
    latents = torch.randn(1, 16, 24, 24, generator=torch.Generator().manual_seed(0))
    saved = (model.tile_sample_min_size, model.tile_latent_min_size)
    model.tile_sample_min_size, model.tile_latent_min_size = 128, 16  # 24x24 latents: 4 overlapping tiles
    try:
        whole = vae.decode(latents)
        model.enable_tiling()
        tiled = vae.decode(latents)  # what a tiled decode gives (no OOM)
        model.disable_tiling()
        original, original_tiled = type(model).decode, type(model).tiled_decode
        calls, tiled_calls = [], []

        def decode(self, z, *args, **kwargs):
            calls.append(self.use_tiling)
            if len(calls) == 1:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return original(self, z, *args, **kwargs)

        def tiled_decode(self, z, *args, **kwargs):
            tiled_calls.append(tuple(z.shape))
            return original_tiled(self, z, *args, **kwargs)

        monkeypatch.setattr(type(model), "decode", decode)
        monkeypatch.setattr(type(model), "tiled_decode", tiled_decode)
        out = vae.decode(latents)
    finally:
        model.disable_tiling()
        model.tile_sample_min_size, model.tile_latent_min_size = saved
    assert calls == [False, True] and model.use_tiling is False  # retried with tiling, then tiling off again
    assert tiled_calls == [(1, 16, 24, 24)], tiled_calls  # the retry decoded in tiles
    assert out.shape == whole.shape == (1, 192, 192, 3)
    assert torch.equal(out, tiled)  # the retry's result is the tiled decode
    assert not torch.equal(tiled, whole) and (out - whole).abs().mean() < 0.05  # close to the whole decode


def test_vae_decode_keeps_a_callers_tiling(golden_pipeline, monkeypatch):
    model = golden_pipeline.vae.model
    original = type(model).decode
    raised = []

    def decode(self, z, *args, **kwargs):
        if not raised:
            raised.append(1)
            raise torch.OutOfMemoryError("simulated")
        return original(self, z, *args, **kwargs)

    monkeypatch.setattr(type(model), "decode", decode)
    model.enable_tiling()
    try:
        golden_pipeline.vae.decode(torch.zeros(1, 16, 8, 8))
        assert model.use_tiling is True
    finally:
        model.disable_tiling()


# ------------------------------------------------------------------------------------ Cancel frees the run
def test_cancel_frees_what_the_run_held(tiny_model, monkeypatch):
    """After Cancel nothing of the run stays alive, even while the exception is still held (ComfyUI keeps
    it until the prompt ends): the latents of the last step are freed at once."""
    bar = Recorder()
    seen = []

    def callback_latents(step, total, latents):
        seen.append(weakref.ref(latents))

    pipe = tiny_model.pipeline
    generate = pipe.generate

    def spying_generate(*args, callback=None, **kwargs):
        def both(step, total, latents, denoised):
            callback_latents(step, total, latents)
            callback(step, total, latents, denoised)
        return generate(*args, callback=both, **kwargs)

    monkeypatch.setattr(pipe, "generate", spying_generate)
    monkeypatch.setattr(host, "interrupted", lambda: len(bar.calls) >= 2)
    with pytest.raises(cancelled_exception()) as excinfo:
        sample(tiny_model, text("text2image", "a cat"), steps=10, size=64, progress=bar)
    assert len(bar.calls) == 2 and len(seen) == 2
    assert excinfo.value is not None  # still held here
    assert all(ref() is None for ref in seen), "the interrupted run's latents are still referenced"
    monkeypatch.setattr(host, "interrupted", lambda: False)
    # and the next run works normally, on the same model
    lat = sample(tiny_model, text("text2image", "a cat"), steps=2, size=64)
    assert lat.latents.shape == (1, 1, 16, 8, 8)


# ------------------------------------------------------------------------------------ atomic output files
def test_cli_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    """A write that fails half-way (disk full, Ctrl-C) leaves neither the file nor its temporary."""
    from PIL import Image

    from unidiff_core.cli import atomic_write

    target = tmp_path / "out" / "frame0_0.png"

    def failing_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, lambda tmp: Image.new("RGB", (4, 4)).save(tmp, format="PNG"))
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.undo()
    target.write_bytes(b"old complete file")
    with contextlib.suppress(RuntimeError):
        atomic_write(target, lambda tmp: (Path(tmp).write_bytes(b"partial"), (_ for _ in ()).throw(RuntimeError))[1])
    assert target.read_bytes() == b"old complete file" and len(list((tmp_path / "out").iterdir())) == 1


def test_cancel_seen_by_the_progress_hook_frees_the_run_too(tiny_model, monkeypatch):
    """ComfyUI's progress hook raises its InterruptProcessingException from inside the step callback; the
    sampler drops the run's frames for that exception as well (and re-raises it unchanged)."""

    class Stop(Exception):
        pass

    seen = []

    class Hook(Recorder):
        def update_absolute(self, value, total=None, preview=None):
            super().update_absolute(value, total, preview)
            if value == 2:
                raise Stop("Cancel")

    pipe = tiny_model.pipeline
    generate = pipe.generate

    def spying_generate(*args, callback=None, **kwargs):
        def both(step, total, latents, denoised):
            seen.append(weakref.ref(latents))
            callback(step, total, latents, denoised)
        return generate(*args, callback=both, **kwargs)

    monkeypatch.setattr(pipe, "generate", spying_generate)
    monkeypatch.setattr(host, "is_interrupt", lambda e: isinstance(e, Stop))
    with pytest.raises(Stop) as excinfo:
        sample(tiny_model, text("text2image", "a cat"), steps=10, size=64, progress=Hook())
    assert excinfo.value is not None and len(seen) == 2
    assert all(ref() is None for ref in seen), "the interrupted run's latents are still referenced"
