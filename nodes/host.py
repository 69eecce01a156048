"""Every contact of the pack with ComfyUI, in one place, with plain fallbacks when ComfyUI is absent.

Node logic calls only this module for host services: model folders (`folder_paths`), devices and
memory management (`comfy.model_management`, `comfy.model_patcher`), LoRA weight patches (`comfy.lora`,
`ModelPatcher.add_patches`), the layer classes and attention
the core's models are built with (`comfy.ops`, `comfy.ldm.modules.attention`), the progress bar and live
previews (`comfy.utils.ProgressBar`, `latent_preview`) and Cancel (`processing_interrupted`).
ComfyUI modules are imported lazily, inside the functions that need them, so the pack imports and
its nodes run in plain Python (CI has no ComfyUI): folders then come from `FALLBACK_FOLDERS`, the
device is the CPU (or CUDA when present), progress and previews are dropped and nothing interrupts.
"""

from __future__ import annotations

import importlib
import logging
import os
import time

from ..unidiff_core.mmgen.detect import TRAINING_SUFFIXES, is_mmgen_checkpoint  # torch-free

log = logging.getLogger("UniDiff")

MODEL_FOLDER = "unidiff"  # models/unidiff/: diffusers-layout folders or single transformer .safetensors
WEIGHT_SUFFIXES = {".safetensors", ".sft"}
FROM_CHECKPOINT = "(from checkpoint)"

# The pack's own models/ folder (UniDiff-Mini ships there): the Loader lists it in place, nothing is copied.
PACK_MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")

# Model folders used when ComfyUI's folder_paths is absent (tests, scripts): folder name -> dirs.
# UNIDIFF_MODELS_DIR=<root> adds <root>/unidiff, <root>/vae, <root>/text_encoders and <root>/loras.
PACK_LORAS = os.path.join(PACK_MODELS, "loras")
FALLBACK_FOLDERS: dict[str, list[str]] = {"unidiff": [PACK_MODELS], "vae": [], "text_encoders": [],
                                          "loras": [PACK_LORAS]}
if os.environ.get("UNIDIFF_MODELS_DIR"):
    for _name in FALLBACK_FOLDERS:
        FALLBACK_FOLDERS[_name].append(os.path.join(os.environ["UNIDIFF_MODELS_DIR"], _name))

_MISSING = object()
_modules: dict[str, object] = {}


def _comfy(name: str):
    """A ComfyUI module, or None when ComfyUI is not importable (imported once, on first use)."""
    module = _modules.get(name, _MISSING)
    if module is _MISSING:
        try:
            module = importlib.import_module(name)
        except ImportError:
            module = None
        _modules[name] = module
    return module


def folder_paths():
    return _comfy("folder_paths")


def model_management():
    if folder_paths() is None:  # comfy.* without folder_paths is not a ComfyUI we can use
        return None
    return _comfy("comfy.model_management")


def available() -> bool:
    """True inside a ComfyUI process (or with ComfyUI on sys.path)."""
    return model_management() is not None


# ------------------------------------------------------------------------------------ model folders
def register_model_folder() -> None:
    """models/unidiff/ as a ComfyUI model folder (extra_model_paths.yaml may add more paths), and the pack's
    own models/ folder after it (so UniDiff-Mini is listed where it ships); the pack's models/loras/ after
    ComfyUI's own LoRA folders."""
    fp = folder_paths()
    if fp is None:
        return
    path = os.path.join(fp.models_dir, MODEL_FOLDER)
    if MODEL_FOLDER in fp.folder_names_and_paths:
        paths, exts = fp.folder_names_and_paths[MODEL_FOLDER]
        for p in (path, PACK_MODELS):
            if p not in paths:
                paths.append(p)
        if isinstance(exts, set) and not exts:  # created by an extra_model_paths entry: all files
            exts.update(WEIGHT_SUFFIXES)
    else:
        fp.folder_names_and_paths[MODEL_FOLDER] = ([path, PACK_MODELS], set(WEIGHT_SUFFIXES))
    loras = fp.folder_names_and_paths.get("loras")
    if loras is not None and PACK_LORAS not in loras[0]:  # the LoRAs that ship with the pack (Mini's teal)
        loras[0].append(PACK_LORAS)


def folder_dirs(folder: str) -> list[str]:
    fp = folder_paths()
    if fp is None:
        return list(FALLBACK_FOLDERS.get(folder, []))
    try:
        return fp.get_folder_paths(folder)
    except KeyError:
        return []


def _is_weight_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in WEIGHT_SUFFIXES


SCAN_MAX_DEPTH = 8  # folder levels below a model folder that are looked into
SCAN_BUDGET_S = 5.0  # per walk: the node lists are built while the server answers /object_info
_WALK_WARNED: set = set()


def walk(base: str, what: str):
    """os.walk following symlinks, bounded because it runs inside the server: each real folder once (a
    symlink loop or a second link to a folder is skipped), at most SCAN_MAX_DEPTH levels, SCAN_BUDGET_S
    seconds. What is skipped is logged with the path to fix. Callers may prune `dirs` as with os.walk."""
    visited, deadline = set(), time.monotonic() + SCAN_BUDGET_S

    def warn(key, message, *args):  # once per process and path: the lists are rebuilt on every POST /prompt
        if key not in _WALK_WARNED:
            _WALK_WARNED.add(key)
            log.warning(message, *args)

    for root, dirs, files in os.walk(base, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited:
            warn(("loop", root), "UniDiff: skipping %s while listing %s: a symlink leads back to %s, a folder "
                 "already listed; remove the link if it is a loop", root, what, os.path.realpath(root))
            dirs[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        if time.monotonic() > deadline:
            warn(("time", base), "UniDiff: listing %s took longer than %.0f s and stopped at %s (the list may be "
                 "incomplete: move unrelated files out of %s)", what, SCAN_BUDGET_S, root, base)
            dirs[:] = []
            return
        rel = os.path.relpath(root, base)
        if rel != "." and rel.count(os.sep) + 1 > SCAN_MAX_DEPTH:
            warn(("depth", root), "UniDiff: not looking into %s while listing %s (more than %d folders deep)", root, what,
                 SCAN_MAX_DEPTH)
            dirs[:] = []
            continue
        yield root, dirs, files


def _scan(folder: str, want_dir, want_files: bool, suffixes=None, skip=()) -> list[str]:
    """Relative names ('/'-separated) of matching sub-folders (not descended into) and weight files; folders
    in `skip` (full paths) are not looked into."""
    names = set()
    for base in folder_dirs(folder):
        if not os.path.isdir(base):
            continue
        for root, dirs, files in walk(base, f"models/{folder} ({base})"):
            rel_root = os.path.relpath(root, base)
            keep = []
            for d in sorted(dirs):
                full = os.path.join(root, d)
                rel = d if rel_root == "." else f"{rel_root}/{d}".replace(os.sep, "/")
                if want_dir(full):
                    names.add(rel)
                elif not d.startswith(".") and full not in skip:
                    keep.append(d)
            dirs[:] = keep
            if want_files:
                for f in files:
                    if _is_weight_file(f) or (suffixes and os.path.splitext(f)[1].lower() in suffixes):
                        names.add(f if rel_root == "." else f"{rel_root}/{f}".replace(os.sep, "/"))
    return sorted(names, key=str.lower)


def is_diffusers_checkpoint(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "transformer", "config.json"))


def _is_config_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def list_checkpoints() -> list[str]:
    """models/unidiff/: diffusers-layout folders (with transformer/) and single transformer files; MMGen's
    released .pt files and converted folders."""
    return _scan(MODEL_FOLDER, lambda p: is_diffusers_checkpoint(p) or is_mmgen_checkpoint(p), want_files=True,
                 suffixes=TRAINING_SUFFIXES, skip={PACK_LORAS})  # the pack's LoRAs are not checkpoints


def list_vaes() -> list[str]:
    """models/vae/: single .safetensors files (the SD3 VAE) and diffusers VAE folders."""
    return [FROM_CHECKPOINT] + _scan("vae", _is_config_dir, want_files=True)


def list_text_encoders() -> list[str]:
    """models/text_encoders/: transformers T5 folders (config.json + model.safetensors + tokenizer)."""
    return [FROM_CHECKPOINT] + _scan("text_encoders", _is_config_dir, want_files=False)


def list_loras() -> list[str]:
    """models/loras/ (ComfyUI's own LoRA folder): .safetensors files. UniDiff LoRAs are told apart from other
    models' LoRAs when one is applied (their metadata), not here: listing reads no file."""
    return _scan("loras", lambda p: False, want_files=True)


def resolve(folder: str, name: str) -> str:
    """Full path of a listed name; a clear error naming the searched folders otherwise."""
    from ..unidiff_core.common.errors import InputError

    if not name or name == FROM_CHECKPOINT:
        raise InputError("name", name, f"no {folder} model selected", f"pick one of models/{folder}/")
    rel = name.replace("/", os.sep)
    if os.path.isabs(rel) or ".." in rel.split(os.sep):
        raise InputError("name", name, f"is not a name inside the {folder} model folder",
                         f"pick a name listed from models/{folder}/")
    dirs = folder_dirs(folder)
    for base in dirs:
        full = os.path.join(base, rel)
        if os.path.exists(full):
            return full
    raise FileNotFoundError(f"{name!r} not found in the {folder} model folder(s): {dirs or '(none registered)'}; "
                            f"put it in models/{folder}/ and refresh")


# ------------------------------------------------------------------------------------ devices
def torch_device():
    import torch

    mm = model_management()
    if mm is not None:
        return mm.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device():
    import torch

    mm = model_management()
    return mm.unet_offload_device() if mm is not None else torch.device("cpu")


def intermediate_device():
    """Where node outputs (IMAGE, MASK) live: the CPU unless ComfyUI runs with --gpu-only."""
    import torch

    mm = model_management()
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


def auto_dtype(device) -> str:
    """bf16 where the device runs it well, else fp16 on GPUs, fp32 on the CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        return "fp32"
    mm = model_management()
    if mm is not None:
        if mm.should_use_bf16(device):
            return "bf16"
        if mm.should_use_fp16(device):
            return "fp16"
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def initial_load_device(load_device, nbytes: int, dtype):
    """Where to put freshly loaded weights: the compute device when they fit there, else the offload
    device (ComfyUI moves them in before use). fp16 weights go straight to the compute device, since
    the engine refuses fp16 on the CPU."""
    import torch

    load_device = torch.device(load_device)
    mm = model_management()
    if mm is None or load_device.type == "cpu" or dtype == torch.float16:
        return load_device
    mm.free_memory(nbytes * 1.1, load_device)
    return mm.unet_inital_load_device(max(1, nbytes // 2), torch.bfloat16)


# ------------------------------------------------------------------------------------ layers and attention
def operations(defaults, weight_dtype, compute_dtype):
    """The layer classes a core model is built from (see unidiff_core/onediffusion/model.py).

    Inside ComfyUI: comfy.ops' classes for each torch.nn layer named in `defaults` (no random init at
    construction; weights cast per call when ComfyUI streams them, or when they are stored in another dtype
    than the compute dtype: manual_cast), and each of the core's own layers (weight-only, computing in
    `forward_with(x, weight)`) made castable the same way. Without ComfyUI: `defaults` unchanged."""
    import torch

    ops = _comfy("comfy.ops") if available() else None
    if ops is None:
        return defaults
    base = ops.disable_weight_init if weight_dtype == compute_dtype else ops.manual_cast
    names = [n for n in vars(defaults) if not n.startswith("_")]
    layers = {}
    for name in names:
        layer = getattr(defaults, name)
        if getattr(torch.nn, name, None) is layer and hasattr(base, name):
            layers[name] = getattr(base, name)
        else:
            layers[name] = _castable(layer, ops, base.Linear.comfy_cast_weights)
    return type("UniDiffOperations", (), layers)


def _castable(layer, ops, cast: bool):
    """A core weight-only layer with ComfyUI's per-call weight cast (its ModelPatcher turns it on for
    layers it leaves on the offload device, with any weight patches applied on the way)."""

    class Castable(layer, ops.CastWeightBiasOp):
        comfy_cast_weights = cast
        bias = None  # weight-only: comfy.ops.cast_bias_weight reads .bias

        def forward(self, x):
            if self.comfy_cast_weights or self.weight_function or self.bias_function:
                weight, _ = ops.cast_bias_weight(self, x)
                return self.forward_with(x, weight)
            return super().forward(x)

    Castable.__name__ = Castable.__qualname__ = layer.__name__
    return Castable


def attention():
    """ComfyUI's attention (the backend its --use-*-attention flags chose) as fn(q, k, v, mask=None) on
    (batch, heads, tokens, head_dim) tensors with a bool mask (True = attend), or None without ComfyUI."""
    module = _comfy("comfy.ldm.modules.attention") if available() else None
    if module is None:
        return None
    import torch

    backend = module.optimized_attention_masked

    def attend(q, k, v, mask=None):
        if mask is not None and mask.dtype == torch.bool:  # its backends add the mask to the logits
            mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, -torch.finfo(q.dtype).max)
        return backend(q, k, v, q.shape[1], mask=mask, skip_reshape=True, skip_output_reshape=True)

    return attend


# ------------------------------------------------------------------------------------ memory management
def streams(module) -> bool:
    """Can ComfyUI load this module partially and stream the rest? Only when every layer that holds tensors
    casts its weights per call (comfy.ops' layers and `operations` above carry `comfy_cast_weights`).
    A bare parameter of a container (NextDiT's attention gates) is left on the offload device by a partial
    load: the model moves it per call. diffusers' VAE and transformers' T5 do not stream: they load whole."""
    for m in module.modules():
        if next(m.children(), None) is not None:
            continue
        holds = next(m.parameters(recurse=False), None) is not None or next(m.buffers(recurse=False), None) is not None
        if holds and not hasattr(m, "comfy_cast_weights"):
            return False
    return True


class ManagedPart:
    """One torch module of a pipeline (a family's `modules()`: transformer, VAE, T5, ...) managed by
    ComfyUI's memory manager through a ModelPatcher: loaded when a node needs it, offloaded when other
    models need the memory. A part that streams may be loaded partially (--lowvram, --reserve-vram, or a
    card too small for it); the others are loaded and offloaded whole."""

    def __init__(self, name: str, module, load_device, offload_device):
        self.name = name
        self.module = module
        self.load_device = load_device
        self.offload_device = offload_device
        self.streams = streams(module)
        self.patcher = None
        mm = model_management()
        patcher_module = _comfy("comfy.model_patcher")
        if mm is not None and patcher_module is not None:
            holder = _holder_class(name)(module, _module_device(module))
            cls = patcher_module.ModelPatcher if self.streams else _whole_patcher_class(patcher_module.ModelPatcher)
            self.patcher = cls(holder, load_device=load_device, offload_device=offload_device,
                               size=mm.module_size(module))


def with_lora(part: ManagedPart, weights: dict, alpha: float, strength: float) -> ManagedPart | None:
    """This part with a LoRA as ComfyUI weight patches: a copy whose ModelPatcher is a clone of the part's, with
    {module: (A, B)} loaded by ComfyUI's LoRA loader (scale alpha / rank) and added at `strength`. ComfyUI adds
    B @ A when it loads the weights for the clone and removes it again when it loads the part without it, so
    the loaded model stays as it is and ComfyUI manages the memory (partial loads included). None without
    ComfyUI: the caller merges into a copy of the module."""
    comfy_lora = _comfy("comfy.lora") if part.patcher is not None else None
    if comfy_lora is None:
        return None
    import copy

    import torch

    state, to_load = {}, {}
    for module, (a, b) in weights.items():
        state[f"{module}.lora_A.weight"], state[f"{module}.lora_B.weight"] = a, b
        state[f"{module}.alpha"] = torch.tensor(float(alpha))
        to_load[module] = f"inner.{module}.weight"  # the holder's name for the part's module (_holder_class)
    patches = comfy_lora.load_lora(state, to_load, log_missing=False)
    patcher = part.patcher.clone()
    added = patcher.add_patches(patches, strength)
    if len(added) != len(weights):
        raise RuntimeError(f"ComfyUI took {len(added)} of the LoRA's {len(weights)} layer patches")
    patched = copy.copy(part)
    patched.patcher = patcher
    return patched


_HOLDERS: dict = {}
_WHOLE: dict = {}


def _holder_class(part: str):
    """nn.Module wrapping one part, with a plain `device` attribute for the ModelPatcher to set (the
    engine's modules expose `device` as a read-only property) and a name ComfyUI's log shows
    ("Requested to load UniDiffTransformer")."""
    if part not in _HOLDERS:
        import torch

        def __init__(self, inner, device):
            torch.nn.Module.__init__(self)
            self.inner = inner
            self.device = device

        name = "UniDiff" + "".join(w.capitalize() for w in part.split("_"))
        _HOLDERS[part] = type(name, (torch.nn.Module,), {"__init__": __init__})
    return _HOLDERS[part]


def _whole_patcher_class(model_patcher):
    """A ModelPatcher that never loads or offloads its model in part: its layers cannot run with their
    weights elsewhere. Refusing a partial unload makes ComfyUI offload it whole instead."""
    if model_patcher not in _WHOLE:
        class WholeModelPatcher(model_patcher):
            def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
                return super().load(device_to, lowvram_model_memory, force_patch_weights, full_load=True)

            def partially_unload(self, device_to, memory_to_free=0):
                return 0

        _WHOLE[model_patcher] = WholeModelPatcher
    return _WHOLE[model_patcher]


def _module_device(module):
    import torch

    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def load_parts(parts: list[ManagedPart]) -> None:
    """Make these parts ready to compute on their device. Through ComfyUI, which first evicts (or partially
    offloads) other models as needed and may load a part that streams partially; without ComfyUI, a
    plain .to(). A model that has `compute_device` (NextDiT) is told where to compute, since its weights
    may be partly on the offload device."""
    mm = model_management()
    patchers = [p.patcher for p in parts if p.patcher is not None]
    if mm is not None and patchers:
        # Room for the parts that load whole, so that a partially loaded part leaves it to them.
        whole = sum(p.patcher.model_size() - p.patcher.loaded_size() for p in parts
                    if p.patcher is not None and not p.streams)
        mm.load_models_gpu(patchers, memory_required=whole)
    else:
        for part in parts:
            part.module.to(part.load_device)
    for part in parts:
        if hasattr(part.module, "compute_device"):
            part.module.compute_device = part.load_device


def soft_empty_cache() -> None:
    mm = model_management()
    if mm is not None:
        mm.soft_empty_cache()


# ------------------------------------------------------------------------------------ progress, previews, Cancel
class _NoProgress:
    def __init__(self, total):
        self.total = total
        self.current = 0

    def update_absolute(self, value, total=None, preview=None):
        self.current = value

    def update(self, value):
        self.current += value


def progress_bar(total: int, node_id=None):
    """comfy.utils.ProgressBar (drives the node's progress bar and previews), or a no-op."""
    utils = _comfy("comfy.utils") if available() else None
    if utils is None:
        return _NoProgress(total)
    try:
        return utils.ProgressBar(total, node_id=node_id)
    except TypeError:  # ComfyUI before per-node progress (node_id): the executing node is implied
        return utils.ProgressBar(total)


def latent_previewer(latent_format: str = "SD3"):
    """fn(latent (1, 16, h, w)) -> PIL image per ComfyUI's --preview-method (latent2rgb / TAESD3 with
    the SD3 latent format; "SD15" for MMGen's 4-channel SD-VAE latents), or None when previews are off or
    ComfyUI is absent."""
    if not available():
        return None
    latent_preview, formats = _comfy("latent_preview"), _comfy("comfy.latent_formats")
    if latent_preview is None or formats is None:
        return None
    try:
        previewer = latent_preview.get_previewer(torch_device(), getattr(formats, latent_format)())
    except Exception as e:  # noqa: BLE001 - a broken previewer must never stop sampling
        log.warning("UniDiff: no live preview (%s)", e)
        return None
    if previewer is None:
        return None
    return previewer.decode_latent_to_preview


def preview_size() -> int:
    latent_preview = _comfy("latent_preview") if available() else None
    return int(getattr(latent_preview, "MAX_PREVIEW_RESOLUTION", 512) or 512)


def interrupted() -> bool:
    """Has the user pressed Cancel? (peeks; does not clear the flag)"""
    mm = model_management()
    return bool(mm is not None and mm.processing_interrupted())


def is_interrupt(exc: BaseException) -> bool:
    """Is this ComfyUI's InterruptProcessingException (Cancel, raised by its progress hook)?"""
    mm = model_management()
    return mm is not None and isinstance(exc, mm.InterruptProcessingException)


def raise_interrupted(cause: BaseException):
    """Turn the engine's Interrupted into ComfyUI's InterruptProcessingException (clearing the flag),
    so ComfyUI reports `execution_interrupted`; without ComfyUI re-raise the engine's exception."""
    mm = model_management()
    if mm is None:
        raise cause
    mm.throw_exception_if_processing_interrupted()
    raise mm.InterruptProcessingException() from cause
