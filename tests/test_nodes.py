"""ComfyUI nodes without ComfyUI: the classic-API contract of every node, host fallbacks, and every node
run on the tiny checkpoint (reference parity through the nodes, ComfyUI tensor conventions, progress,
previews, Cancel, error messages)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
PACK_NAME = "comfyui_unidiff"

# With COMFYUI_PATH (a ComfyUI folder) the pack runs on the real host services (tests/test_nodes_comfy.py
# adds checks of them); without it (CI) on the fallbacks. This must happen before the pack is imported.
COMFYUI_PATH = os.environ.get("COMFYUI_PATH", "")
if COMFYUI_PATH and os.path.isfile(os.path.join(COMFYUI_PATH, "folder_paths.py")) and COMFYUI_PATH not in sys.path:
    sys.path.append(COMFYUI_PATH)  # append: ComfyUI's top-level `nodes`, `utils` must not shadow anything
    from comfy.cli_args import args as _comfy_args

    _comfy_args.cpu = True  # outside main.py no CLI is parsed; never look for a GPU in tests


sys.path.insert(0, str(ROOT / "example_workflows"))
from make_workflows import load_pack  # noqa: E402  (imports the pack as a package, as ComfyUI does)

pack = load_pack(PACK_NAME)
host = importlib.import_module(f"{PACK_NAME}.nodes.host")
sampler_mod = importlib.import_module(f"{PACK_NAME}.nodes.sampler")
loader_mod = importlib.import_module(f"{PACK_NAME}.nodes.loader")
common = importlib.import_module(f"{PACK_NAME}.nodes.common")
Interrupted = importlib.import_module(f"{PACK_NAME}.unidiff_core.common.errors").Interrupted
M = pack.NODE_CLASS_MAPPINGS


def cancelled_exception():
    """What Cancel raises: ComfyUI's InterruptProcessingException inside ComfyUI, else the engine's."""
    return host.model_management().InterruptProcessingException if host.available() else Interrupted


# ------------------------------------------------------------------------------------ fixtures
@contextlib.contextmanager
def model_folders(**folders):
    """Point the model folders (unidiff, vae, text_encoders) at these dirs: ComfyUI's folder_paths when
    ComfyUI is present, the pack's fallback table otherwise."""
    fp = host.folder_paths()
    if fp is None:
        saved = {k: list(v) for k, v in host.FALLBACK_FOLDERS.items()}
        host.FALLBACK_FOLDERS.update({k: [str(d) for d in v] for k, v in folders.items()})
        try:
            yield
        finally:
            host.FALLBACK_FOLDERS.clear()
            host.FALLBACK_FOLDERS.update(saved)
        return
    saved = {k: fp.folder_names_and_paths.get(k) for k in folders}
    for name, dirs in folders.items():
        exts = saved[name][1] if saved[name] else set(host.WEIGHT_SUFFIXES)
        fp.folder_names_and_paths[name] = ([str(d) for d in dirs], exts)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                fp.folder_names_and_paths.pop(name, None)
            else:
                fp.folder_names_and_paths[name] = value


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A models/ root with the tiny checkpoint as models/unidiff/tiny-onediffusion, and the tiny MMGen as
    models/unidiff/MMGen (converted) with its VAE as models/vae/sd-vae-ft-mse."""
    # by its file name (tests/ is on sys.path): with COMFYUI_PATH on sys.path, ComfyUI's own tests/ package
    # shadows this folder as `tests`
    from lora_common import TINY_LORA_NAME, write_tiny_lora
    from mmgen_common import VAE as MMGEN_VAE, write_released_pt
    from unidiff_core.mmgen.loading import convert

    root = tmp_path_factory.mktemp("models")
    (root / "unidiff").mkdir()
    (root / "unidiff" / "tiny-onediffusion").symlink_to(GOLDEN / "tiny-onediffusion")
    convert(write_released_pt(root / "0600000.pt"), root / "unidiff" / "MMGen")
    (root / "vae").mkdir()
    (root / "vae" / "tiny_vae").symlink_to(GOLDEN / "tiny-onediffusion" / "vae")
    (root / "vae" / "sd-vae-ft-mse").symlink_to(MMGEN_VAE)
    (root / "text_encoders").mkdir()
    (root / "text_encoders" / "tiny_t5").symlink_to(GOLDEN / "tiny-onediffusion" / "text_encoder")
    write_tiny_lora(root / "loras" / TINY_LORA_NAME)
    with model_folders(unidiff=[root / "unidiff"], vae=[root / "vae"], text_encoders=[root / "text_encoders"],
                       loras=[root / "loras"]):
        yield root


@pytest.fixture(scope="module")
def model(models_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the goldens were made with one thread
    (m,) = M["UniDiffLoader"]().load("tiny-onediffusion", host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32")
    yield m
    torch.set_num_threads(threads)


def image(path) -> torch.Tensor:
    from PIL import Image

    return common.to_image(Image.open(path))


def text(task, prompt="", negative="", use_task_negative=True, labels=""):
    return M["UniDiffTextEncode"]().encode(task, prompt, negative, use_task_negative, labels)[0]


def sample(model, text_spec, frames=None, steps=3, size=64, seed=0, batch=1, guidance=4.0, **kw):
    return sampler_mod.run_sampler(model, text_spec, seed, steps, guidance, size, size, batch, True, frames, **kw)


def golden(case):
    from safetensors.torch import load_file

    return load_file(GOLDEN / case / "final_latents.safetensors")["final_latents"]


def check_image(t, batch=None):
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.device.type == "cpu"
    assert t.ndim == 4 and t.shape[-1] == 3, t.shape
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    if batch is not None:
        assert t.shape[0] == batch


def check_mask(t, batch=None):
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.ndim == 3, getattr(t, "shape", t)
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    if batch is not None:
        assert t.shape[0] == batch


# ------------------------------------------------------------------------------------ classic API contract
# The public contract: node names, input names/types in order (saved workflows store widget values by
# position) and output types. Change only by adding inputs at the end or adding nodes.
PUBLIC_API = {
    "UniDiffLoader": (["ckpt_name:COMBO", "vae_name:COMBO", "text_encoder_name:COMBO", "dtype:COMBO",
                       "weight_format:COMBO"],
                      ["UNIDIFF_MODEL"]),
    "UniDiffTextEncode": (["task:COMBO", "prompt:STRING", "negative_prompt:STRING", "use_task_negative:BOOLEAN",
                           "labels:STRING"], ["UNIDIFF_TEXT"]),
    "UniDiffImageFrame": (["what:COMBO", "frames:UNIDIFF_FRAMES", "image:IMAGE"], ["UNIDIFF_FRAMES"]),
    "UniDiffInpaintFrame": (["image:IMAGE", "mask:MASK", "fill:COMBO", "composite:BOOLEAN", "feather:INT",
                             "frames:UNIDIFF_FRAMES"], ["UNIDIFF_FRAMES", "IMAGE"]),
    "UniDiffLayoutBoxes": (["boxes:STRING", "width:INT", "height:INT", "frames:UNIDIFF_FRAMES", "image:IMAGE"],
                           ["UNIDIFF_FRAMES", "IMAGE"]),
    "UniDiffReferenceImages": (["image_1:IMAGE", "caption_1:STRING", "caption_2:STRING", "caption_3:STRING",
                                "subject:STRING", "frames:UNIDIFF_FRAMES", "image_2:IMAGE", "image_3:IMAGE"],
                               ["UNIDIFF_FRAMES"]),
    "UniDiffConditionMap": (["image:IMAGE", "map_type:COMBO", "extract_canny:BOOLEAN", "canny_low:INT",
                             "canny_high:INT", "frames:UNIDIFF_FRAMES"], ["UNIDIFF_FRAMES", "IMAGE"]),
    "UniDiffMultiViewCameras": (["azimuths:STRING", "elevations:STRING", "distance:FLOAT", "focal:FLOAT",
                                 "frames:UNIDIFF_FRAMES", "images:IMAGE"], ["UNIDIFF_FRAMES"]),
    "UniDiffSampler": (["model:UNIDIFF_MODEL", "text:UNIDIFF_TEXT", "seed:INT", "steps:INT", "guidance:FLOAT",
                        "width:INT", "height:INT", "batch_size:INT", "crop:BOOLEAN", "frames:UNIDIFF_FRAMES",
                        "step_cache:FLOAT", "sampler:COMBO"],
                       ["UNIDIFF_LATENTS"]),
    "UniDiffDecodeImages": (["model:UNIDIFF_MODEL", "latents:UNIDIFF_LATENTS"], ["IMAGE", "IMAGE"]),
    "UniDiffDecodeDepth": (["model:UNIDIFF_MODEL", "latents:UNIDIFF_LATENTS"], ["IMAGE", "IMAGE", "MASK"]),
    "UniDiffDecodeSegmentation": (["model:UNIDIFF_MODEL", "latents:UNIDIFF_LATENTS", "tolerance:FLOAT",
                                   "min_area:INT", "label:STRING"], ["MASK", "IMAGE", "STRING"]),
    "UniDiffDecodeBoxes": (["model:UNIDIFF_MODEL", "latents:UNIDIFF_LATENTS", "tolerance:FLOAT", "min_area:INT"],
                           ["STRING", "MASK", "IMAGE"]),
    "UniDiffDecodeMultiView": (["model:UNIDIFF_MODEL", "latents:UNIDIFF_LATENTS"], ["IMAGE", "IMAGE"]),
    "UniDiffDecodeCameras": (["latents:UNIDIFF_LATENTS"], ["STRING"]),
    "UniDiffExampleImage": (["image:COMBO"], ["IMAGE", "MASK"]),
    "UniDiffMMGenTask": (["task:COMBO", "class_label:STRING", "t_blend_start:FLOAT", "sampler:COMBO"],
                         ["UNIDIFF_TEXT"]),
    "UniDiffMMGenFrame": (["image:IMAGE", "modality:COMBO"], ["UNIDIFF_FRAMES"]),
    "UniDiffMMGenDecode": (["model:UNIDIFF_MODEL", "latents:UNIDIFF_LATENTS", "region:INT", "tolerance:FLOAT"],
                           ["IMAGE", "IMAGE", "MASK", "IMAGE", "IMAGE", "MASK"]),
    "UniDiffLoRA": (["model:UNIDIFF_MODEL", "lora_name:COMBO", "strength:FLOAT"], ["UNIDIFF_MODEL"]),
}


def declared_inputs(cls) -> list[str]:
    spec = cls.INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            out.append(f"{name}:{'COMBO' if isinstance(entry[0], list) else entry[0]}")
    return out


def test_public_api_is_stable():
    assert set(M) == set(PUBLIC_API)
    for name, (inputs, outputs) in PUBLIC_API.items():
        assert declared_inputs(M[name]) == inputs, name
        assert list(M[name].RETURN_TYPES) == outputs, name


@pytest.mark.parametrize("name", sorted(PUBLIC_API))
def test_classic_node_contract(name, models_dir):
    cls = M[name]
    assert cls.__name__ == name and name.startswith("UniDiff")
    assert pack.NODE_DISPLAY_NAME_MAPPINGS[name]
    assert cls.CATEGORY.startswith("UniDiff/") and cls.DESCRIPTION
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}
    fn = getattr(cls, cls.FUNCTION)
    params = inspect.signature(fn).parameters
    declared = [n for section in ("required", "optional", "hidden") for n in spec.get(section, {})]
    assert set(declared) == set(params) - {"self"}, f"{name}: inputs {declared} != parameters {list(params)}"
    for section in ("optional", "hidden"):  # absent from kwargs when unconnected: need defaults
        for n in spec.get(section, {}):
            assert params[n].default is not inspect.Parameter.empty, f"{name}.{n} needs a default"
    assert isinstance(cls.RETURN_TYPES, tuple)
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS)
    for section in ("required", "optional"):
        for n, entry in spec.get(section, {}).items():
            opts = entry[1] if len(entry) > 1 else {}
            assert opts.get("tooltip"), f"{name}.{n} has no tooltip"
            if isinstance(entry[0], list):
                assert entry[0], f"{name}.{n}: empty combo"
                assert opts.get("default", entry[0][0]) in entry[0], f"{name}.{n}: default not in combo"
            elif entry[0] in ("INT", "FLOAT"):
                assert opts["min"] <= opts["default"] <= opts["max"], f"{name}.{n}: default out of range"
                assert isinstance(opts["default"], int if entry[0] == "INT" else float)
            elif entry[0] == "STRING":
                assert opts.get("dynamicPrompts") is False, f"{name}.{n}: dynamic prompts would rewrite {{a|b}}"


def test_pack_imports_without_comfyui_and_without_torch():
    """ComfyUI startup imports the pack: no heavy import, no ComfyUI import at module level."""
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('p', {str(ROOT / '__init__.py')!r}, "
            f"submodule_search_locations=[{str(ROOT)!r}])\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
            "heavy = [k for k in ('torch', 'diffusers', 'transformers', 'comfy', 'folder_paths') if k in sys.modules]\n"
            "print(len(m.NODE_CLASS_MAPPINGS), heavy, m.WEB_DIRECTORY)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(PUBLIC_API)), "[]", "./js"], out.stdout


def test_layout_boxes_node_matches_the_box_editor():
    """js/unidiff_layout_boxes.js edits the widgets boxes/width/height (in this order) and reads `image`."""
    spec = M["UniDiffLayoutBoxes"].INPUT_TYPES()
    assert list(spec["required"]) == ["boxes", "width", "height"]
    assert spec["optional"]["image"][0] == "IMAGE"
    js = (ROOT / "js" / "unidiff_layout_boxes.js").read_text()
    assert 'const NODE_CLASS = "UniDiffLayoutBoxes"' in js


# ------------------------------------------------------------------------------------ host fallbacks
def test_model_folders_list_diffusers_folders_and_single_files(tmp_path):
    unidiff = tmp_path / "unidiff"
    (unidiff / "OneDiffusion" / "transformer").mkdir(parents=True)
    (unidiff / "OneDiffusion" / "transformer" / "config.json").write_text("{}")
    (unidiff / "OneDiffusion" / "vae").mkdir()
    (unidiff / "repacks").mkdir()
    (unidiff / "repacks" / "onediffusion_bf16.safetensors").write_bytes(b"")
    (unidiff / "notes.txt").write_text("x")
    (unidiff / "empty_folder").mkdir()
    vae = tmp_path / "vae"
    (vae / "sd3_vae").mkdir(parents=True)
    (vae / "sd3_vae" / "config.json").write_text("{}")
    (vae / "sd3_vae.safetensors").write_bytes(b"")
    with model_folders(unidiff=[unidiff], vae=[vae], text_encoders=[tmp_path / "missing"]):
        assert host.list_checkpoints() == ["OneDiffusion", "repacks/onediffusion_bf16.safetensors"]
        assert host.list_vaes() == [host.FROM_CHECKPOINT, "sd3_vae", "sd3_vae.safetensors"]
        assert host.list_text_encoders() == [host.FROM_CHECKPOINT]
        assert host.resolve("unidiff", "repacks/onediffusion_bf16.safetensors") == str(
            unidiff / "repacks" / "onediffusion_bf16.safetensors")
        with pytest.raises(FileNotFoundError, match="not found in the unidiff model folder"):
            host.resolve("unidiff", "nope")
        with pytest.raises(ValueError, match="not a name inside"):
            host.resolve("unidiff", "../vae/sd3_vae")


def test_host_fallbacks_without_comfyui():
    if host.available():
        pytest.skip("ComfyUI is on sys.path: tests/test_nodes_comfy.py checks the real services")
    assert host.torch_device().type in ("cpu", "cuda")
    assert host.intermediate_device().type == "cpu" and host.auto_dtype("cpu") == "fp32"
    assert host.latent_previewer() is None and host.interrupted() is False
    bar = host.progress_bar(3)
    bar.update_absolute(2, 3, None)
    with pytest.raises(Interrupted):
        host.raise_interrupted(Interrupted("stop"))
    defaults = pipeline_class().OPERATIONS
    assert host.operations(defaults, torch.bfloat16, torch.bfloat16) is defaults  # the core's own layers
    assert host.attention() is None  # the core's SDPA


def pipeline_class():
    return importlib.import_module(f"{PACK_NAME}.unidiff_core.onediffusion.pipeline").UniDiffPipeline


def test_model_parts_are_the_pipelines_modules(model):
    """The Loader manages whatever torch modules the pipeline names (a family's own parts), each whole
    on the compute device after ready()."""
    modules = model.pipeline.modules()
    assert set(model.parts) == set(modules) == {"text_encoder", "transformer", "vae"}
    assert all(model.parts[name].module is module for name, module in modules.items())
    pipe = model.ready("transformer")
    assert pipe is model.pipeline and pipe.transformer.device == model.parts["transformer"].load_device


# ------------------------------------------------------------------------------------ loader
def test_loader_caches_the_pipeline(model):
    again = M["UniDiffLoader"]().load("tiny-onediffusion", host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32")[0]
    assert again is model
    assert model.pipeline.transformer.dtype == torch.float32 and repr(model) == "UniDiffModel('tiny-onediffusion', fp32)"
    auto = M["UniDiffLoader"]().load("tiny-onediffusion", host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "auto")[0]
    assert auto is model  # auto is fp32 on the CPU: the same key


def test_loader_separate_vae_and_text_encoder_and_errors(models_dir, model):
    other = M["UniDiffLoader"]().load("tiny-onediffusion", "tiny_vae", "tiny_t5", "bf16")[0]
    try:
        assert other is not model and other.pipeline.transformer.dtype == torch.bfloat16
        assert other.pipeline.vae.dtype == torch.float32  # the VAE stays fp32
    finally:
        loader_mod.clear_cache()
    with pytest.raises(FileNotFoundError, match="'missing' not found"):
        M["UniDiffLoader"]().load("missing", host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32")
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        M["UniDiffLoader"]().load("tiny-onediffusion", host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp16")


# ------------------------------------------------------------------------------------ parity through the nodes
def test_text2image_matches_the_reference(model):
    spec = text("text2image", "a photo of a small cat sitting on a wooden table")
    lat = sample(model, spec)
    assert lat.request.prompt == "[[text2image]] a photo of a small cat sitting on a wooden table"
    assert (lat.latents - golden("t2i")).abs().max() <= 1e-4


def test_image2depth_matches_the_reference(model):
    (frames,) = M["UniDiffImageFrame"]().build("image", image=image(GOLDEN / "image2depth_mask01" / "input_0.png"))
    lat = sample(model, text("image2depth"), frames)
    assert lat.request.prompt == "[[depth2image]]" and lat.request.negative_prompt == ""
    assert (lat.latents - golden("image2depth_mask01")).abs().max() <= 1e-4
    depth, color, depth_map = M["UniDiffDecodeDepth"]().decode(model, lat)
    check_image(depth, 1), check_image(color, 1), check_mask(depth_map, 1)
    assert depth.shape[1:3] == depth_map.shape[1:] == (64, 64)
    assert float(depth_map.min()) == 0.0 and float(depth_map.max()) == 1.0  # min-max normalised
    assert torch.allclose(depth[..., 0], 1 - depth_map, atol=1e-6)  # grey: near white


def test_depth2image_matches_the_reference(model):
    frames, cond = M["UniDiffConditionMap"]().build(image(GOLDEN / "cond2image_mask10" / "input_0.png"), "depth",
                                                    False, 100, 200)
    check_image(cond, 1)
    lat = sample(model, text("depth2image", "a red cube and a blue sphere on a white floor"), frames)
    assert (lat.latents - golden("cond2image_mask10")).abs().max() <= 1e-4


def test_faceid_matches_the_reference(model):
    (frames,) = M["UniDiffReferenceImages"]().build(
        image(GOLDEN / "faceid_mask100" / "input_0.png"), "a woman with long dark hair", "a woman wearing a floral "
        "dress", "ignored: no image_3", "", image_2=image(GOLDEN / "faceid_mask100" / "input_1.png"))
    lat = sample(model, text("faceid", "a woman smiling at the camera"), frames)
    assert lat.request.prompt == ("[[faceid]] [[img0]] a woman smiling at the camera [[img1]] a woman with long "
                                  "dark hair [[img2]] a woman wearing a floral dress")
    assert (lat.latents - golden("faceid_mask100")).abs().max() <= 1e-4


def test_image2multiview_matches_the_reference_and_decodes_views_and_cameras(model):
    (frames,) = M["UniDiffMultiViewCameras"]().build("0, 30", "0, 10", 1.5, 1.3887,
                                                     images=image(GOLDEN / "multiview_mask0010" / "input_0.png"))
    lat = sample(model, text("image2multiview", "three views of the same object"), frames)
    assert lat.request.denoise_mask == [0, 0, 1, 0]
    assert (lat.latents - golden("multiview_mask0010")).abs().max() <= 1e-4
    views, generated = M["UniDiffDecodeMultiView"]().decode(model, lat)
    check_image(views, 2), check_image(generated, 1)
    (cams,) = M["UniDiffDecodeCameras"]().decode(lat)
    cams = json.loads(cams)
    assert [c["view"] for c in cams] == [0, 1] and cams[1]["azimuth"] == pytest.approx(30, abs=1e-3)
    assert cams[1]["elevation"] == pytest.approx(10, abs=1e-3)


# ------------------------------------------------------------------------------------ every node on the tiny model
def test_batch_items_equal_single_runs_with_seed_plus_b(model):
    spec = text("text2image", "a blue bird")
    both = sample(model, spec, steps=2, seed=5, batch=2)
    second = sample(model, spec, steps=2, seed=6, batch=1)
    assert torch.allclose(both.latents[1:], second.latents, atol=1e-5)
    images, composite = M["UniDiffDecodeImages"]().decode(model, both)
    check_image(images, 2), check_image(composite, 2)


def test_inpainting_frame_and_composite(model):
    img = torch.rand(1, 48, 80, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 24, 40)
    mask[:, 6:18, 10:30] = 1.0  # half size: the node resizes the mask to the image
    frames, cond = M["UniDiffInpaintFrame"]().build(img, mask, "black", True, 4)
    check_image(cond, 1)
    assert cond.shape[1:3] == (48, 80) and float(cond[0, 24, 40].max()) == 0.0
    lat = sample(model, text("inpainting", "a cat"), frames, steps=2)
    assert lat.request.prompt == "[[image_inpainting]] a cat"
    images, composite = M["UniDiffDecodeImages"]().decode(model, lat)
    check_image(images, 1), check_image(composite, 1)
    assert composite.shape[1:3] == (48, 80)  # pasted into the original
    keep = torch.ones(48, 80, dtype=torch.bool)
    keep[12:36, 20:60] = False
    assert torch.allclose(composite[0][keep], img[0][keep], atol=1.5 / 255)
    with pytest.raises(ValueError, match="nothing to repaint"):
        M["UniDiffInpaintFrame"]().build(img, torch.zeros(1, 48, 80), "black", True, 4)


def test_layout_boxes_to_image(model):
    boxes = json.dumps([{"label": "cat", "box": [0.1, 0.2, 0.5, 0.9]}, {"label": "dog", "box": [0.5, 0.1, 0.9, 0.6]}])
    frames, box_map = M["UniDiffLayoutBoxes"]().build(boxes, 64, 48)
    check_image(box_map, 1)
    assert box_map.shape[1:3] == (48, 64)
    assert box_map[0, 30, 10].tolist() == [1.0, 0.0, 0.0] and box_map[0, 10, 50].tolist() == [0.0, 1.0, 0.0]
    lat = sample(model, text("boundingbox2image", "pets"), frames, steps=2)
    assert lat.request.prompt == ("[[boundingbox2image]] <#FF0000 red boundingbox: cat> "
                                  "<#00FF00 lime boundingbox: dog> pets")
    check_image(M["UniDiffDecodeImages"]().decode(model, lat)[0], 1)
    with pytest.raises(ValueError, match="not valid JSON"):
        M["UniDiffLayoutBoxes"]().build("[{", 64, 64)


def test_segmentation_and_boxes_decoders(model):
    (frames,) = M["UniDiffImageFrame"]().build("image", image=torch.rand(1, 64, 64, 3))
    lat = sample(model, text("image2semanticmap", labels="cat, dog=cyan"), frames, steps=2, batch=2)
    assert lat.request.prompt == "[[semanticmap2image]] <#FF0000 red mask: cat> <#00FFFF cyan mask: dog>"
    masks, overlay, labels = M["UniDiffDecodeSegmentation"]().decode(model, lat, 80.0, 16, "")
    check_mask(masks, 4), check_image(overlay, 2)
    assert json.loads(labels) == ["cat", "dog"] and set(masks.unique().tolist()) <= {0.0, 1.0}
    only_dog = M["UniDiffDecodeSegmentation"]().decode(model, lat, 80.0, 16, "dog")[0]
    assert torch.equal(only_dog, masks[2:])
    with pytest.raises(ValueError, match="not among the labels"):
        M["UniDiffDecodeSegmentation"]().decode(model, lat, 80.0, 16, "bird")

    lat = sample(model, text("image2boundingbox", labels="cat"), frames, steps=2)
    boxes, masks, overlay = M["UniDiffDecodeBoxes"]().decode(model, lat, 80.0, 16)
    assert isinstance(json.loads(boxes), list)
    check_mask(masks, 1), check_image(overlay, 1)
    with pytest.raises(ValueError, match="no semantic map"):
        M["UniDiffDecodeSegmentation"]().decode(model, lat, 80.0, 16, "")


def test_condition_map_extracts_canny_edges(model):
    photo = torch.zeros(1, 64, 64, 3)
    photo[:, 16:48, 16:48] = 1.0
    frames, edges = M["UniDiffConditionMap"]().build(photo, "canny", True, 100, 200)
    check_image(edges, 1)
    assert float(edges.max()) == 1.0 and float(edges[0, 32, 32].max()) == 0.0  # edges, not the filled square
    lat = sample(model, text("canny2image", "a box"), frames, steps=2)
    assert lat.request.prompt == "[[canny2image]] a box"
    with pytest.raises(ValueError, match="map_type 'canny' but task 'depth2image' takes a depth"):
        sample(model, text("depth2image", "x"), frames, steps=2)


def test_text2multiview_and_camera_estimation(model):
    (frames,) = M["UniDiffMultiViewCameras"]().build("0, 90", "0, 10", 1.5, 1.3887)
    lat = sample(model, text("text2multiview", "an owl"), frames, steps=2)
    assert lat.request.denoise_mask == [1, 0, 1, 0]
    check_image(M["UniDiffDecodeMultiView"]().decode(model, lat)[0], 2)

    (one,) = M["UniDiffImageFrame"]().build("image", image=torch.rand(1, 64, 64, 3))
    (two,) = M["UniDiffImageFrame"]().build("image", image=torch.rand(1, 64, 64, 3), frames=one)
    (frames,) = M["UniDiffMultiViewCameras"]().build("0, none", "0, none", 1.5, 1.3887, frames=two)
    lat = sample(model, text("camera_estimation"), frames, steps=2)
    assert lat.request.denoise_mask == [0, 0, 0, 1]
    cams = json.loads(M["UniDiffDecodeCameras"]().decode(lat)[0])
    assert [c["given"] for c in cams] == [True, False] and all(k in cams[1] for k in ("azimuth", "rotation"))
    with pytest.raises(ValueError, match="no generated image frame"):
        M["UniDiffDecodeImages"]().decode(model, lat)


def test_custom_frames_generate_an_image_and_its_depth(model):
    (frames,) = M["UniDiffImageFrame"]().build("image")
    (frames,) = M["UniDiffImageFrame"]().build("depth", frames=frames)
    lat = sample(model, text("custom", "[[depth2image]] a room"), frames, steps=2)
    assert lat.request.prompt == "[[depth2image]] a room" and lat.request.whats == ["image", "depth"]
    images, _ = M["UniDiffDecodeImages"]().decode(model, lat)
    check_image(images, 2)
    check_mask(M["UniDiffDecodeDepth"]().decode(model, lat)[2], 1)


def test_example_image_node():
    names = M["UniDiffExampleImage"].INPUT_TYPES()["required"]["image"][0]
    assert "garden.png" in names and "garden_inpaint.png" in names
    img, mask = M["UniDiffExampleImage"]().load("garden.png")
    check_image(img, 1), check_mask(mask, 1)
    assert float(mask.max()) == 0.0  # no alpha: nothing masked
    img, mask = M["UniDiffExampleImage"]().load("garden_inpaint.png")
    assert mask.shape == img.shape[:3] and 0 < float(mask.mean()) < 0.5  # the transparent hole = 1
    assert "mini/inpainting.png" in names  # subfolders are listed by their path (the Mini twins' inputs)
    img, mask = M["UniDiffExampleImage"]().load("mini/inpainting.png")
    assert img.shape == (1, 64, 64, 3) and 0 < float(mask.mean()) < 0.5


# ------------------------------------------------------------------------------------ progress, preview, Cancel
class Recorder:
    def __init__(self):
        self.calls = []

    def update_absolute(self, value, total=None, preview=None):
        self.calls.append((value, total, preview))


def test_progress_and_preview_of_every_generated_frame(model):
    from PIL import Image

    seen = []

    def previewer(latent):
        seen.append(tuple(latent.shape))
        return Image.new("RGB", (latent.shape[-1] * 8, latent.shape[-2] * 8))

    (frames,) = M["UniDiffImageFrame"]().build("image")
    (frames,) = M["UniDiffImageFrame"]().build("depth", frames=frames)
    bar = Recorder()
    sample(model, text("custom", "[[depth2image]] x"), frames, steps=3, progress=bar, previewer=previewer)
    assert [(v, t) for v, t, _ in bar.calls] == [(1, 3), (2, 3), (3, 3)]
    fmt, strip, size = bar.calls[0][2]
    assert fmt == "JPEG" and strip.size == (128, 64) and size == 512  # two 64x64 frames side by side
    assert seen == [(1, 16, 8, 8)] * 6


def test_cancel_stops_within_one_step(model, monkeypatch):
    bar = Recorder()
    monkeypatch.setattr(host, "interrupted", lambda: len(bar.calls) >= 2)
    with pytest.raises(cancelled_exception()):
        sample(model, text("text2image", "x"), steps=10, progress=bar)
    assert len(bar.calls) == 2  # stopped before step 3


# ------------------------------------------------------------------------------------ errors name the fix
@pytest.mark.parametrize("case, message", [
    ("generated_frame_in_task", "only works with task 'custom'"),
    ("two_images", "takes one image, got 2"),
    ("labels_on_depth", "task 'image2depth' does not take labels"),
    ("custom_without_frames", "connect frames"),
    ("half_size", "set both, or both to 0"),
    ("boxes_on_depth", "does not take boxes (from UniDiff Layout Boxes)"),
    ("elevations", "2 value(s) for 3 azimuths"),
    ("unknown_task", "unknown task"),
    ("map_for_text2image", "does not take image (from UniDiff Condition Map)"),
    ("no_boxes", "no box yet"),
])
def test_errors_name_the_fix(model, case, message):
    photo = torch.rand(2, 64, 64, 3)
    with pytest.raises(ValueError) as err:
        if case == "generated_frame_in_task":
            sample(model, text("image2depth"), M["UniDiffImageFrame"]().build("image")[0])
        elif case == "two_images":
            sample(model, text("image2depth"), M["UniDiffImageFrame"]().build("image", image=photo)[0])
        elif case == "labels_on_depth":
            sample(model, text("image2depth", labels="cat"), M["UniDiffImageFrame"]().build("image", image=photo[:1])[0])
        elif case == "custom_without_frames":
            sample(model, text("custom", "[[text2image]] x"))
        elif case == "half_size":
            sampler_mod.run_sampler(model, text("text2image", "x"), 0, 2, 4.0, 64, 0, 1)
        elif case == "boxes_on_depth":
            frames = M["UniDiffLayoutBoxes"]().build('[{"label": "a", "box": [0, 0, 1, 1]}]', 64, 64)[0]
            frames = M["UniDiffImageFrame"]().build("image", image=photo[:1], frames=frames)[0]
            sample(model, text("image2depth"), frames)
        elif case == "elevations":
            M["UniDiffMultiViewCameras"]().build("0, 30, 60", "0, 10", 1.5, 1.3887)
        elif case == "unknown_task":
            text("text_to_image", "x")
        elif case == "no_boxes":
            M["UniDiffLayoutBoxes"]().build("[]", 512, 512)
        elif case == "map_for_text2image":
            frames = M["UniDiffConditionMap"]().build(photo[:1], "depth", False, 100, 200)[0]
            sample(model, text("text2image", "x"), frames)
    assert message in str(err.value), str(err.value)


def test_sampler_step_cache_input_reaches_the_engine(model):
    exact = sample(model, text("text2image", "a red cube"), steps=8)
    cached = sample(model, text("text2image", "a red cube"), steps=8, step_cache=0.5)
    assert cached.result.step_cache is not None and exact.result.step_cache is None
    assert cached.result.latents.shape == exact.result.latents.shape
    assert torch.isfinite(cached.result.latents).all()


def test_sampler_input_picks_the_engine_sampler(model):
    node = M["UniDiffSampler"]()
    args = (model, text("text2image", "a red cube"), 0, 4, 4.0, 64, 64, 1, True)
    (default,) = node.sample(*args)
    (euler,) = node.sample(*args, sampler="euler")
    (dpm,) = node.sample(*args, sampler="dpmpp_2m")
    assert torch.equal(default.result.latents, euler.result.latents)  # old graphs (no sampler input) keep euler
    assert (dpm.result.latents - euler.result.latents).abs().max() > 1e-4


def test_loader_fp8_weight_format_runs(models_dir, model):
    try:
        (fp8,) = M["UniDiffLoader"]().load("tiny-onediffusion", host.FROM_CHECKPOINT, host.FROM_CHECKPOINT, "fp32",
                                           "fp8_e4m3")
        assert fp8 is not model
        out = sample(fp8, text("text2image", "a red cube"), steps=2)
        assert torch.isfinite(out.result.latents).all()
        with pytest.raises(ValueError, match="weight_format"):
            loader_mod.load_model("tiny-onediffusion", dtype="fp32", weight_format="int4")
    finally:
        loader_mod.clear_cache()  # later tests reload the fp32 model


# ------------------------------------------------------------------------------------ LoRA
def test_lora_node_zero_is_the_model_exactly_one_is_the_merge_and_the_loaded_model_stays(models_dir, model):
    from lora_common import TINY_LORA_NAME

    lora_core = importlib.import_module(f"{PACK_NAME}.unidiff_core.onediffusion.lora")
    assert TINY_LORA_NAME in M["UniDiffLoRA"].INPUT_TYPES()["required"]["lora_name"][0]
    before = {k: v.clone() for k, v in model.pipeline.transformer.state_dict().items()}
    spec = text("text2image", "a red cube")
    plain = sample(model, spec, steps=3).result.latents
    (zero,) = M["UniDiffLoRA"]().apply(model, TINY_LORA_NAME, 0.0)
    (one,) = M["UniDiffLoRA"]().apply(model, TINY_LORA_NAME, 1.0)
    assert zero is not model and one is not model and "tiny-onediffusion-lora@1" in repr(one)
    assert torch.equal(sample(zero, spec, steps=3).result.latents, plain)
    with_lora = sample(one, spec, steps=3).result.latents
    assert not torch.allclose(with_lora, plain, atol=1e-3)
    # by hand: the deltas added to a copy of the loaded weights, run in the same pipeline (inside ComfyUI the
    # shared module holds the patched weights while the LoRA model is loaded: start from the saved ones)
    import copy

    lora = lora_core.read_lora(models_dir / "loras" / TINY_LORA_NAME)
    by_hand = copy.deepcopy(model.pipeline.transformer)
    by_hand.load_state_dict(before)
    with torch.no_grad():
        for key, delta in lora_core.deltas(lora, 1.0).items():
            by_hand.get_parameter(key).add_(delta)
    pipe = copy.copy(model.pipeline)
    pipe.transformer = by_hand
    request = sampler_mod.task_request(spec, None, 64, 64, 3, 4.0)
    expected = pipe.generate(**request.generate_kwargs(), seed=0).latents
    assert torch.equal(with_lora, expected)
    # the loaded model runs as before, and its weights never changed
    assert torch.equal(sample(model, spec, steps=3).result.latents, plain)
    after = model.pipeline.transformer.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    # chained: two LoRA nodes at 0.5 = one at 1 (up to rounding)
    (half,) = M["UniDiffLoRA"]().apply(model, TINY_LORA_NAME, 0.5)
    (twice,) = M["UniDiffLoRA"]().apply(half, TINY_LORA_NAME, 0.5)
    assert torch.allclose(sample(twice, spec, steps=3).result.latents, with_lora, atol=1e-4)


def test_lora_node_errors(models_dir, model):
    from lora_common import save_lora

    node = M["UniDiffLoRA"]
    assert "strength" in str(node.VALIDATE_INPUTS(strength=float("nan")))
    assert "maximum" in str(node.VALIDATE_INPUTS(strength=11.0))
    assert node.VALIDATE_INPUTS(strength=-1.0) is True
    other = models_dir / "loras" / "other-model.safetensors"
    save_lora(other, {"layers.0.attention.wq": (torch.zeros(2, 5), torch.zeros(96, 2))}, 2, 2.0)
    try:
        with pytest.raises(ValueError, match="other-model.safetensors: key layers.0.attention.wq.lora_A.weight: "
                                             "shape mismatch"):
            node().apply(model, "other-model.safetensors", 1.0)
    finally:
        other.unlink()
    with pytest.raises(FileNotFoundError, match="loras"):
        node().apply(model, "missing.safetensors", 1.0)
    (mmgen,) = M["UniDiffLoader"]().load("MMGen", "sd-vae-ft-mse", host.FROM_CHECKPOINT, "fp32")
    try:
        with pytest.raises(ValueError, match="MMGen"):
            node().apply(mmgen, "tiny-onediffusion-lora.safetensors", 1.0)
    finally:
        loader_mod.clear_cache()
