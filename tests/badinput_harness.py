"""The bad-input suite's machinery, shared by the CI tests (tests/test_validation.py: no server) and the
real-host tests (tests/realhost/test_reliability.py: POST /prompt to a real ComfyUI).

The cases are data, one line each, in tests/bad_inputs.json:

    {"id": "...", "base": "<example_workflows/api name>", "add": {node_id: node}, "set": {"Class.input" |
     "#node_id.input": value (null = remove the input)}, "expect": "invalid" | "error", "text": "...",
     "after": "sampling" (the error needs the sampled latents), "cli": [args], "cli_text": "...",
     "core": ["module.function", {kwargs}], "core_text": "..."}

* `expect` "invalid": ComfyUI refuses the prompt at POST /prompt (HTTP 400, or 200 with the bad branch in
  node_errors); "error": the prompt is queued and a node fails, before any model work unless `after`.
* `text`: a substring of the error the user sees; `cli_text` / `core_text` override it for the CLI
  (`python -m unidiff_core run ...`, exit code != 0, stderr) and the core API call.
* Placeholders in `cli` / `core` values: "@image:HxW" (a random photo), "@mask:HxW" (centre square = 1),
  "@images:N:HxW", "@refs:N:HxW" ([(image, caption)] x N), "@ckpt:NAME" (a bad checkpoint built by
  `make_checkpoints`). In the CLI they become files.
* Every prompt runs on the tiny checkpoint: 2 steps, 64x64 (`tiny`), before `set` applies.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES_FILE = HERE / "bad_inputs.json"
WORKFLOWS = ROOT / "example_workflows" / "api"
TINY = HERE / "fixtures" / "golden" / "tiny-onediffusion"
TINY_NAME = "tiny-onediffusion"
MMGEN_TINY_NAME = "tiny-mmgen.safetensors"  # as tests/realhost/comfy_server.py installs it
TINY_LORA_NAME = "tiny-onediffusion-lora.safetensors"  # likewise, in models/loras/
OUTPUT_CLASSES = {"SaveImage", "PreviewImage", "PreviewAny"}

# Bad checkpoints next to the tiny one in models/unidiff/ (what make_checkpoints builds).
BAD_CHECKPOINTS = ("evil.ckpt", "evil.safetensors", "truncated", "corrupt", "mismatch", "no_vae",
                   # broken files that must name themselves, and configs that declare absurd sizes
                   "header_list", "header_no_dtype", "dtype_size_mismatch", "config_list", "config_wrong_type",
                   "huge_depth", "index_without_map", "weights_folder", "bad_tokenizer", "huge_text_encoder",
                   "config_nan", "bad_scheduler")
SYMLINK_LOOP = "loop"  # models/unidiff/loop/back -> models/unidiff: the listing must not hang on it
PWNED = "PWNED_BY_PICKLE"  # the pickles' payload would create this folder next to them


def load_cases() -> list[dict]:
    with open(CASES_FILE) as f:
        cases = json.load(f)
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return cases


def load_api(name: str) -> dict:
    with open(WORKFLOWS / f"{name}.json") as f:
        return json.load(f)


def tiny(prompt: dict, steps: int = 2, size: int = 64, ckpt: str = TINY_NAME) -> dict:
    """The graph on the tiny checkpoint: few steps, small size (MMGen graphs: the tiny MMGen, 256² only)."""
    prompt = copy.deepcopy(prompt)
    mmgen = any(n["class_type"] == "UniDiffMMGenTask" for n in prompt.values())
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "UniDiffLoader":
            inputs["ckpt_name"] = MMGEN_TINY_NAME if mmgen else ckpt
        elif node["class_type"] == "UniDiffSampler":
            inputs.update(steps=steps, **({} if mmgen else dict(width=size, height=size)))
        elif node["class_type"] == "UniDiffLoRA":
            inputs["lora_name"] = TINY_LORA_NAME
    return prompt


def node_id(prompt: dict, ref: str) -> str:
    if ref.startswith("#"):
        return ref[1:]
    ids = sorted((k for k, n in prompt.items() if n["class_type"] == ref), key=lambda k: int(k) if k.isdigit() else 0)
    if not ids:
        raise KeyError(f"no {ref} node in the prompt")
    return ids[0]


def build_prompt(case: dict) -> dict:
    prompt = tiny(load_api(case["base"]))
    prompt.update(copy.deepcopy(case.get("add", {})))
    for key, value in case.get("set", {}).items():
        ref, _, name = key.rpartition(".")
        inputs = prompt[node_id(prompt, ref)]["inputs"]
        if value is None:
            inputs.pop(name, None)
        else:
            inputs[name] = value
    return prompt


# ------------------------------------------------------------------------------------ placeholders
def _hw(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _photo(h: int, w: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed + h * 7 + w)
    return rng.random((h, w, 3), dtype=np.float32)


def _mask(h: int, w: int):
    import numpy as np

    m = np.zeros((h, w), np.float32)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1.0
    return m


class Placeholders:
    """Expands "@..." values: tensors for the core API, files (in `folder`) for the CLI."""

    def __init__(self, folder: Path, checkpoints: dict | None = None, files: bool = False):
        self.folder, self.checkpoints, self.files, self.count = Path(folder), checkpoints or {}, files, 0

    def _save(self, array, mode="RGB") -> str:
        import numpy as np
        from PIL import Image

        self.count += 1
        path = self.folder / f"input_{self.count}.png"
        pixels = (np.clip(array, 0, 1) * 255).round().astype("uint8")
        Image.fromarray(pixels, mode=mode).save(path)
        return str(path)

    def image(self, h, w, seed=0):
        import torch

        array = _photo(h, w, seed)
        return self._save(array) if self.files else torch.from_numpy(array)

    def one(self, value: str):
        kind, _, rest = value[1:].partition(":")
        if kind == "image":
            return self.image(*_hw(rest))
        if kind == "mask":
            import torch

            array = _mask(*_hw(rest))
            return self._save(array, "L") if self.files else torch.from_numpy(array)
        if kind == "images":
            n, _, size = rest.partition(":")
            return [self.image(*_hw(size), seed=i) for i in range(int(n))]
        if kind == "refs":
            n, _, size = rest.partition(":")
            return [(self.image(*_hw(size), seed=i), f"reference photo {i + 1}") for i in range(int(n))]
        if kind == "ckpt":  # NAME or NAME/sub/path
            name, _, sub = rest.partition("/")
            return str(self.checkpoints[name] / sub) if sub else str(self.checkpoints[name])
        raise ValueError(f"unknown placeholder {value!r}")

    def expand(self, value):
        if isinstance(value, str) and value.startswith("@") and ":" in value:
            return self.one(value)
        if isinstance(value, list):
            out = []
            for item in value:
                expanded = self.expand(item)
                # a CLI argument list: "@images:2:..." spreads into separate arguments
                out.extend(expanded) if (self.files and isinstance(item, str) and item.startswith("@images")) \
                    else out.append(expanded)
            return out
        if isinstance(value, dict):
            return {k: self.expand(v) for k, v in value.items()}
        return value


# ------------------------------------------------------------------------------------ bad checkpoints
class _Payload:
    """Unpickling this creates a folder: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _link_parts(dst: Path, skip=()):
    dst.mkdir(parents=True, exist_ok=True)
    for part in ("vae", "text_encoder", "tokenizer", "scheduler", "model_index.json"):
        if part not in skip:
            (dst / part).symlink_to(TINY / part)


def make_checkpoints(unidiff_dir: Path) -> dict[str, Path]:
    """Bad checkpoints in a models/unidiff/ folder (idempotent): name -> path."""
    unidiff_dir = Path(unidiff_dir)
    unidiff_dir.mkdir(parents=True, exist_ok=True)
    out = {name: unidiff_dir / name for name in BAD_CHECKPOINTS}
    marker = str(unidiff_dir / PWNED)
    payload = pickle.dumps({"state_dict": _Payload(marker)}, protocol=2)
    for name in ("evil.ckpt", "evil.safetensors"):
        out[name].write_bytes(payload)
    weights = (TINY / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    header_len = int.from_bytes(weights[:8], "little")
    header = json.loads(weights[8:8 + header_len])
    body = weights[8 + header_len:]

    def with_header(new_header) -> bytes:
        raw = json.dumps(new_header).encode()
        return len(raw).to_bytes(8, "little") + raw + body

    first = sorted(k for k in header if k != "__metadata__")[0]
    for name in BAD_CHECKPOINTS[2:]:
        if out[name].exists():
            shutil.rmtree(out[name])
        skip = {"no_vae": ("vae",), "bad_tokenizer": ("tokenizer",), "huge_text_encoder": ("text_encoder",),
                "bad_scheduler": ("scheduler",)}
        _link_parts(out[name], skip=skip.get(name, ()))
        transformer = out[name] / "transformer"
        transformer.mkdir()
        config = json.loads((TINY / "transformer" / "config.json").read_text())
        if name == "mismatch":
            config["depth"] = config["depth"] + 1  # weights of 2 blocks, config of 3
        elif name == "config_wrong_type":
            config["depth"] = str(config["depth"])
        elif name == "huge_depth":
            config["depth"] = 50000  # would tie the loader up for minutes if it were built
        config_text = json.dumps(config) if name != "config_nan" else json.dumps(dict(config, norm_eps=float("nan")))
        (transformer / "config.json").write_text("[1, 2]" if name == "config_list" else config_text)
        target = transformer / "diffusion_pytorch_model.safetensors"
        if name == "truncated":
            target.write_bytes(weights[: len(weights) // 2])
        elif name == "corrupt":
            bad = b"{not json" + b" " * 55
            target.write_bytes(len(bad).to_bytes(8, "little") + bad + weights[8 + 64:])
        elif name == "header_list":
            target.write_bytes(with_header([header[first]]))
        elif name == "header_no_dtype":
            target.write_bytes(with_header({**header, first: {k: v for k, v in header[first].items() if k != "dtype"}}))
        elif name == "dtype_size_mismatch":  # F32 data declared F16: half the bytes the offsets hold
            target.write_bytes(with_header({**header, first: dict(header[first], dtype="F16")}))
        elif name == "index_without_map":
            (transformer / "diffusion_pytorch_model.safetensors.index.json").write_text('{"metadata": {}}')
        elif name == "weights_folder":
            target.mkdir()
        else:
            target.symlink_to(TINY / "transformer" / "diffusion_pytorch_model.safetensors")
        if name == "bad_tokenizer":  # the tokenizer's files, spiece.model corrupt
            (out[name] / "tokenizer").mkdir()
            for file in (TINY / "tokenizer").iterdir():
                (out[name] / "tokenizer" / file.name).symlink_to(file)
            (out[name] / "tokenizer" / "spiece.model").unlink()
            (out[name] / "tokenizer" / "spiece.model").write_bytes(b"\x00garbage, not a SentencePiece model" * 8)
        if name == "huge_text_encoder":
            encoder = out[name] / "text_encoder"
            encoder.mkdir()
            t5 = json.loads((TINY / "text_encoder" / "config.json").read_text())
            (encoder / "config.json").write_text(json.dumps(dict(t5, num_layers=100000)))
            (encoder / "model.safetensors").symlink_to(TINY / "text_encoder" / "model.safetensors")
        if name == "bad_scheduler":  # a schedule that would divide by zero
            (out[name] / "scheduler").mkdir()
            (out[name] / "scheduler" / "scheduler_config.json").write_text(json.dumps(
                {"base_image_seq_len": 256, "max_image_seq_len": 256}))
    loop = unidiff_dir / SYMLINK_LOOP
    if not loop.exists():
        loop.mkdir()
        (loop / "back").symlink_to(unidiff_dir, target_is_directory=True)
    return out


def pickle_ran(unidiff_dir: Path) -> bool:
    return (Path(unidiff_dir) / PWNED).exists()


# ------------------------------------------------------------------------------------ CLI and core API
def run_cli(case: dict, folder: Path, checkpoints: dict) -> tuple[int, str]:
    """`python -m unidiff_core run ...` in-process -> (exit code, stderr text)."""
    import contextlib

    from unidiff_core.cli import main

    args = Placeholders(folder, checkpoints, files=True).expand(case["cli"])
    argv = ["run"] + list(args)
    if "--checkpoint" not in argv:
        argv += ["--checkpoint", "tiny"]
    argv += ["--out", str(Path(folder) / "out"), "--steps", "1"] if "--steps" not in argv else \
        ["--out", str(Path(folder) / "out")]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            if isinstance(e.code, str):
                err.write(e.code)
    return code, err.getvalue()


def run_core(case: dict, folder: Path, checkpoints: dict, pack=None):
    """Call the core API function of a case; returns the exception it raised (or None)."""
    import importlib
    import inspect

    name, kwargs = case["core"][0], case["core"][1]
    module_name, _, fn_name = name.rpartition(".")
    if module_name.startswith("pack."):
        module = importlib.import_module(f"{pack.__name__}.{module_name[5:]}")
    else:
        module = importlib.import_module(f"unidiff_core.{module_name}")
    kwargs = Placeholders(folder, checkpoints).expand(kwargs)
    function = getattr(module, fn_name)
    if "inputs" in inspect.signature(function).parameters and "inputs" not in kwargs:  # build_request(task, inputs)
        from unidiff_core.onediffusion.requests import TaskInputs

        kwargs = {"task": kwargs.pop("task"), "inputs": TaskInputs(**kwargs)}
    try:
        function(**kwargs)
    except (ValueError, FileNotFoundError) as e:
        return e
    return None


# ------------------------------------------------------------------------------------ a ComfyUI stand-in (CI)
# Core nodes the cases use, with ComfyUI's input specs (checked against the real server by the real-host suite).
CORE_NODES = {
    "SaveImage": ({"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})}, ()),
    "PreviewImage": ({"images": ("IMAGE",)}, ()),
    "PreviewAny": ({"source": ("*",)}, ()),
    "MaskToImage": ({"mask": ("MASK",)}, ("IMAGE",)),
    "EmptyImage": ({"width": ("INT", {"default": 512, "min": 1, "max": 16384}),
                    "height": ("INT", {"default": 512, "min": 1, "max": 16384}),
                    "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                    "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF})}, ("IMAGE",)),
    "SolidMask": ({"value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}),
                   "width": ("INT", {"default": 512, "min": 1, "max": 16384}),
                   "height": ("INT", {"default": 512, "min": 1, "max": 16384})}, ("MASK",)),
}


def _core_run(class_type: str, inputs: dict):
    import torch

    if class_type == "MaskToImage":
        mask = inputs["mask"]
        return (mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3),)
    if class_type == "EmptyImage":
        c = int(inputs["color"])
        rgb = torch.tensor([(c >> 16) & 255, (c >> 8) & 255, c & 255], dtype=torch.float32) / 255
        return (rgb.expand(int(inputs["batch_size"]), int(inputs["height"]), int(inputs["width"]), 3).clone(),)
    if class_type == "SolidMask":
        return (torch.full((1, int(inputs["height"]), int(inputs["width"])), float(inputs["value"])),)
    return ()


def _spec(mappings, class_type):
    if class_type in CORE_NODES:
        return {"required": CORE_NODES[class_type][0]}, CORE_NODES[class_type][1]
    cls = mappings[class_type]
    return cls.INPUT_TYPES(), cls.RETURN_TYPES


def validate_prompt(prompt: dict, mappings) -> list[str]:
    """What ComfyUI's validate_prompt reports for the checks the cases need ("message: details" strings):
    unknown node, missing required input, link type, widget conversion, min/max, combo, VALIDATE_INPUTS."""
    import inspect

    errors = []
    for nid, node in prompt.items():
        class_type = node["class_type"]
        if class_type not in mappings and class_type not in CORE_NODES:
            return [f"Cannot execute because node {class_type} does not exist.: Node ID '#{nid}'"]
    for nid, node in prompt.items():
        spec, _ = _spec(mappings, node["class_type"])
        cls = mappings.get(node["class_type"])
        fn = getattr(cls, "VALIDATE_INPUTS", None)
        declared_custom = inspect.getfullargspec(fn).args if fn is not None else []
        inputs = node["inputs"]
        widget_values = {}
        for section in ("required", "optional"):
            for name, entry in spec.get(section, {}).items():
                kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
                if name not in inputs:
                    if section == "required":
                        errors.append(f"Required input is missing: {name}")
                    continue
                value = inputs[name]
                if isinstance(value, list):
                    source = prompt[value[0]]["class_type"]
                    received = _spec(mappings, source)[1][value[1]]
                    if kind != "*" and received != kind:
                        errors.append(f"Return type mismatch between linked nodes: {name}, "
                                      f"received_type({received}) mismatch input_type({kind})")
                    continue
                try:
                    value = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(kind, lambda v: v)(value) \
                        if not isinstance(kind, list) else value
                except (TypeError, ValueError) as ex:
                    errors.append(f"Failed to convert an input value to a {kind} value: {name}, {value}, {ex}")
                    continue
                widget_values[name] = value
                if name in declared_custom:
                    continue
                if "min" in opts and value < opts["min"]:
                    errors.append(f"Value {value} smaller than min of {opts['min']}: {name}")
                elif "max" in opts and value > opts["max"]:
                    errors.append(f"Value {value} bigger than max of {opts['max']}: {name}")
                elif isinstance(kind, list) and value not in kind:
                    errors.append(f"Value not in list: {name}: '{value}' not in {kind if len(kind) <= 20 else ''}")
        if fn is not None:
            args = {a: widget_values.get(a) for a in declared_custom if a != "cls"}
            result = fn(**args)
            if result is not True:
                errors += [f"Custom validation failed for node: {a} - {result}" for a in args]
    return errors


def execute_prompt(prompt: dict, mappings) -> None:
    """Run a prompt like ComfyUI's executor would, without ComfyUI: pack nodes for real, core nodes emulated
    (output nodes do nothing). The first node error propagates."""
    results = {}

    def value_of(nid):
        if nid in results:
            return results[nid]
        node = prompt[nid]
        spec, _ = _spec(mappings, node["class_type"])
        kinds = {**spec.get("required", {}), **spec.get("optional", {})}
        inputs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                value = value_of(value[0])[value[1]]
            elif name in kinds and kinds[name][0] in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                value = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}[kinds[name][0]](value)
            inputs[name] = value
        if node["class_type"] in CORE_NODES:
            out = _core_run(node["class_type"], inputs)
        else:
            cls = mappings[node["class_type"]]
            out = getattr(cls(), cls.FUNCTION)(**inputs)
        results[nid] = out
        return out

    for nid, node in sorted(prompt.items()):
        if node["class_type"] in OUTPUT_CLASSES:
            value_of(nid)
