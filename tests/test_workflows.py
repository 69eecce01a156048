"""Every example workflow file is valid without ComfyUI: node types exist (pack nodes or the named core
nodes), links type-check, widget values fit their inputs, the UI and API files describe the same graph,
every task has one, the files are what make_workflows.py writes, and each API graph runs on the tiny
checkpoint through the pack's node functions."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_nodes import check_image, check_mask, load_pack, models_dir  # noqa: F401  (models_dir is a fixture)

ROOT = Path(__file__).resolve().parent.parent
WF = ROOT / "example_workflows"
sys.path.insert(0, str(WF))
import make_workflows  # noqa: E402
import mini_samples  # noqa: E402
from lora_common import TINY_LORA_NAME  # noqa: E402

pack = load_pack()
M = pack.NODE_CLASS_MAPPINGS
tasks = importlib.import_module(f"{pack.__name__}.unidiff_core.onediffusion.tasks")
examples = importlib.import_module(f"{pack.__name__}.nodes.examples")

# Core nodes the workflows may use: name -> ([(input, type, widget default or None)], [(output, type)]).
# The real-host test checks this table against a real server's /object_info.
CORE_NODES = make_workflows.CORE
UI_NAMES = sorted(p.stem for p in WF.glob("*.json"))
API_NAMES = sorted(p.stem for p in (WF / "api").glob("*.json"))
OUTPUT_NODES = {"SaveImage", "PreviewImage", "PreviewAny"}
SEED_CONTROL = {"fixed", "increment", "decrement", "randomize"}
# Combos whose options depend on the user's model folders: any name is fine in a file.
INSTALL_DEPENDENT = {("UniDiffLoader", "ckpt_name"), ("UniDiffLoader", "vae_name"),
                     ("UniDiffLoader", "text_encoder_name"), ("UniDiffLoRA", "lora_name")}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def spec_of(class_type: str):
    """[(name, type, opts, is_widget)] in input order and [output types] of a pack or core node."""
    if class_type in CORE_NODES:
        inputs, outputs = CORE_NODES[class_type]
        return [(n, t, {"default": d}, d is not None) for n, t, d in inputs], [t for _, t in outputs]
    assert class_type in M, f"unknown node type {class_type!r} (not a UniDiff node nor a listed core node)"
    cls = M[class_type]
    spec = cls.INPUT_TYPES()
    inputs = []
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
            widget = isinstance(kind, list) or (kind in ("INT", "FLOAT", "STRING", "BOOLEAN")
                                                and not opts.get("forceInput"))
            inputs.append((name, kind, dict(opts, required=section == "required"), widget))
    return inputs, list(cls.RETURN_TYPES)


def is_seed(name, kind, opts) -> bool:
    return kind == "INT" and (name in ("seed", "noise_seed") or bool(opts.get("control_after_generate")))


def check_value(class_type, name, kind, opts, value):
    where = f"{class_type}.{name}={value!r}"
    if isinstance(kind, list):
        if (class_type, name) in INSTALL_DEPENDENT:
            assert isinstance(value, str) and value, where
        else:
            assert value in kind, f"{where} not among {kind}"
    elif kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), where
        assert opts.get("min", -2 ** 63) <= value <= opts.get("max", 2 ** 64), where
        step = opts.get("step", 1)
        assert (value - opts.get("min", 0)) % step == 0 or value == 0, f"{where} not on step {step}"
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert opts.get("min", -1e308) <= value <= opts.get("max", 1e308), where
    elif kind == "STRING":
        assert isinstance(value, str), where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where


def ui_to_api(ui: dict) -> dict:
    """What the frontend's graphToPrompt makes of a UI workflow (without _meta)."""
    links = {lk[0]: lk for lk in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) in (2, 4):
            continue
        inputs_spec, _ = spec_of(node["type"])
        values = list(node.get("widgets_values", []))
        inputs = {}
        for name, kind, opts, widget in inputs_spec:
            if widget:
                inputs[name] = values.pop(0)
                if is_seed(name, kind, opts):
                    values.pop(0)  # the "control after generate" value is UI-only
        for socket in node.get("inputs", []):
            if socket.get("link") is not None:
                lk = links[socket["link"]]
                inputs[socket["name"]] = [str(lk[1]), lk[2]]
        assert not values, f"node {node['id']} {node['type']}: {len(values)} widget values left over"
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


# ------------------------------------------------------------------------------------ files and coverage
def test_every_task_has_a_workflow_and_ui_and_api_match_one_to_one():
    assert UI_NAMES == API_NAMES
    missing = set(tasks.TASKS) - set(UI_NAMES)
    assert not missing, f"tasks without a workflow: {sorted(missing)}"
    used = {n["type"] for name in UI_NAMES for n in read(WF / f"{name}.json")["nodes"]}
    assert set(M) <= used, f"nodes no workflow uses: {sorted(set(M) - used)}"


def test_only_one_template_folder_and_no_api_files_in_it():
    """ComfyUI lists *.json of example_workflows/ (and of workflows/, examples/, ...) as templates."""
    for other in ("example", "examples", "workflow", "workflows"):
        assert not (ROOT / other).exists(), f"{other}/ would be a second template folder"
    for name in UI_NAMES:
        data = read(WF / f"{name}.json")
        assert "nodes" in data and "links" in data, f"{name}.json is not a UI workflow"
    for name in API_NAMES:
        data = read(WF / "api" / f"{name}.json")
        assert all("class_type" in n for n in data.values()), f"api/{name}.json is not an API prompt"


def test_example_inputs_are_small_and_used():
    files = examples.example_names()
    used = {v for name in API_NAMES for n in read(WF / "api" / f"{name}.json").values()
            if n["class_type"] == "UniDiffExampleImage" for v in [n["inputs"]["image"]]}
    assert used == set(files), sorted(set(files) ^ used)
    assert sum((WF / "inputs" / f).stat().st_size for f in files) < 200_000


@pytest.mark.parametrize("name", make_workflows.names())
def test_files_are_what_the_generator_writes(name):
    g = make_workflows.build(name, pack)
    assert read(WF / f"{name}.json") == json.loads(json.dumps(g.ui())), \
        f"{name}.json is stale: run python example_workflows/make_workflows.py"
    assert read(WF / "api" / f"{name}.json") == json.loads(json.dumps(g.api())), f"api/{name}.json is stale"


# ------------------------------------------------------------------------------------ UniDiff-Mini twins
def test_every_onediffusion_workflow_has_one_mini_twin():
    onediffusion = {n for n in make_workflows.WORKFLOWS if not n.startswith("mmgen_")}
    originals = [original for original, _task in mini_samples.TWINS.values()]
    assert sorted(originals) == sorted(onediffusion)
    for twin in mini_samples.TWINS:
        assert twin in UI_NAMES and twin in API_NAMES, twin
        api = read(WF / "api" / f"{twin}.json")
        loaders = [n for n in api.values() if n["class_type"] == "UniDiffLoader"]
        assert [n["inputs"]["ckpt_name"] for n in loaders] == [mini_samples.CHECKPOINT]
        (run,) = [n["inputs"] for n in api.values() if n["class_type"] == "UniDiffSampler"]
        assert (run["steps"], run["guidance"], run["width"], run["height"], run["seed"]) == \
            (mini_samples.STEPS, mini_samples.guidance(twin), 0, 0, 0), twin  # 0 x 0: the checkpoint's 64²
        for text in (n["inputs"] for n in api.values() if n["class_type"] == "UniDiffTextEncode"):
            assert (text["negative_prompt"], text["use_task_negative"]) == ("", False), twin  # the evaluator's ""


def test_mini_inputs_are_the_held_out_pictures():
    """inputs/mini/ holds what make_inputs.py draws (pixels, not bytes: PNG compression may vary)."""
    from PIL import Image

    expected = {}
    for twin in mini_samples.TWINS:
        expected.update(mini_samples.given_images(twin))
    folder = WF / "inputs" / mini_samples.INPUT_DIR
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected), "run python example_workflows/make_inputs.py"
    for name, pixels in expected.items():
        with Image.open(folder / name) as im:
            assert np.array_equal(np.asarray(im), pixels), f"inputs/mini/{name} is stale"


def _frames_equal(a, b) -> bool:
    if (a.image is None) != (b.image is None) or (a.latent is None) != (b.latent is None) or a.kind != b.kind:
        return False
    if a.image is not None:
        ta, tb = (torch.as_tensor(np.asarray(x, np.float32)).reshape(-1, 3) for x in (a.image, b.image))
        return torch.equal(ta, tb)
    return a.latent is None or torch.equal(a.latent.float(), b.latent.float())


@pytest.mark.parametrize("twin", sorted(mini_samples.TWINS))
def test_mini_twin_asks_for_the_evaluators_request(twin):
    """The twin's nodes form the request training.evaluate runs for its held-out sample (inputs as the PNGs
    hold them): same prompt, frames, labels and cameras, so both paths sample the same thing."""
    from dataclasses import replace

    prompt = read(WF / "api" / f"{twin}.json")
    sampler_id = next(k for k, n in prompt.items() if n["class_type"] == "UniDiffSampler")
    upstream = {k: v for k, v in prompt.items() if v["class_type"] not in ("UniDiffLoader", "UniDiffSampler")
                and not v["class_type"].startswith("UniDiffDecode") and k != sampler_id
                and v["class_type"] not in OUTPUT_NODES | {"MaskToImage"}}
    results = execute(upstream)
    inputs = prompt[sampler_id]["inputs"]
    sampler_mod = importlib.import_module(f"{pack.__name__}.nodes.sampler")
    frames = results[inputs["frames"][0]][inputs["frames"][1]] if "frames" in inputs else None
    text = results[inputs["text"][0]][inputs["text"][1]]
    got = sampler_mod.task_request(text, frames, 64, 64, inputs["steps"], inputs["guidance"])
    sample = mini_samples.png_sample(twin)
    want = replace(sample.request, steps=mini_samples.STEPS, guidance=mini_samples.guidance(twin), negative_prompt="")
    assert got.prompt == want.prompt
    assert (got.negative_prompt, got.steps, got.guidance, got.height, got.width) == \
        (want.negative_prompt, want.steps, want.guidance, want.height, want.width)
    assert [(lab.label, lab.hex) for lab in got.labels] == [(lab.label, lab.hex) for lab in want.labels]
    assert len(got.frames) == len(want.frames)
    bad = [i for i, (a, b) in enumerate(zip(got.frames, want.frames)) if not _frames_equal(a, b)]
    assert not bad, f"frames {bad} differ"


# ------------------------------------------------------------------------------------ UI files
@pytest.mark.parametrize("name", UI_NAMES)
def test_ui_workflow_is_valid(name):
    ui = read(WF / f"{name}.json")
    for key in ("last_node_id", "last_link_id", "nodes", "links", "version"):
        assert key in ui, key
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert len(nodes) == len(ui["nodes"]) and ui["last_node_id"] >= max(nodes)
    assert not ui["links"] or ui["last_link_id"] >= max(lk[0] for lk in ui["links"])
    for node in ui["nodes"]:
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "properties"):
            assert key in node, (node.get("id"), key)
        inputs_spec, outputs = spec_of(node["type"])
        sockets = [(n, k, o) for n, k, o, w in inputs_spec if not w]
        assert [(s["name"], s["type"]) for s in node.get("inputs", [])] == [(n, k) for n, k, _ in sockets], \
            f"node {node['id']} {node['type']}: sockets differ from the node definition"
        for s, (n, k, o) in zip(node.get("inputs", []), sockets):
            if o.get("required", True):
                assert s["link"] is not None, f"node {node['id']} {node['type']}: required input {n} unconnected"
        assert [o["type"] for o in node.get("outputs", [])] == outputs, f"node {node['id']} outputs"
        values = list(node.get("widgets_values", []))
        for n, k, o, widget in inputs_spec:
            if not widget:
                continue
            assert values, f"node {node['id']} {node['type']}: no widget value for {n}"
            check_value(node["type"], n, k, o, values.pop(0))
            if is_seed(n, k, o):
                assert values.pop(0) in SEED_CONTROL
        assert not values, f"node {node['id']} {node['type']}: extra widget values {values}"
    for link_id, src, src_slot, dst, dst_slot, kind in ui["links"]:
        out = nodes[src]["outputs"][src_slot]
        assert out["type"] == kind and link_id in out["links"], (name, link_id)
        socket = nodes[dst]["inputs"][dst_slot]
        assert socket["link"] == link_id, (name, link_id)
        assert socket["type"] in (kind, "*"), f"link {link_id}: {kind} into {socket['type']}"
        assert nodes[src]["order"] < nodes[dst]["order"], f"link {link_id} goes against the execution order"
    listed = {lid for n in ui["nodes"] for o in n.get("outputs", []) for lid in (o.get("links") or [])}
    assert listed == {lk[0] for lk in ui["links"]}
    assert any(n["type"] in OUTPUT_NODES for n in ui["nodes"]), "no output node: nothing would run"


# ------------------------------------------------------------------------------------ API files
@pytest.mark.parametrize("name", API_NAMES)
def test_api_workflow_is_the_ui_graph(name):
    api = read(WF / "api" / f"{name}.json")
    expected = ui_to_api(read(WF / f"{name}.json"))
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()} == expected
    for node_id, node in api.items():
        inputs_spec, _ = spec_of(node["class_type"])
        for n, k, o, widget in inputs_spec:
            if o.get("required", True):  # the server applies no defaults
                assert n in node["inputs"], f"{name}: node {node_id} misses required input {n}"
            if widget and n in node["inputs"]:
                check_value(node["class_type"], n, k, o, node["inputs"][n])


# ------------------------------------------------------------------------------------ run on the tiny checkpoint
def tiny(prompt: dict) -> dict:
    """OneDiffusion graphs on tiny-onediffusion at 64²; MMGen graphs on the tiny MMGen (named MMGen, 256²)."""
    mmgen = any(n["class_type"] == "UniDiffLoader" and n["inputs"]["ckpt_name"] == make_workflows.MMGEN_CHECKPOINT
                for n in prompt.values())
    for node in prompt.values():
        if node["class_type"] == "UniDiffLoader" and not mmgen:
            node["inputs"]["ckpt_name"] = "tiny-onediffusion"
        elif node["class_type"] == "UniDiffSampler":
            node["inputs"].update(steps=2, **({} if mmgen else dict(width=64, height=64)))
        elif node["class_type"] == "UniDiffLoRA":
            node["inputs"]["lora_name"] = TINY_LORA_NAME  # the LoRA of tiny-onediffusion (see test_nodes.models_dir)
    return prompt


def execute(prompt: dict) -> dict:
    """A minimal executor: node functions in dependency order; core nodes emulated (and their inputs checked)."""
    results, done = {}, set()

    def run(node_id):
        if node_id in done:
            return
        node = prompt[node_id]
        kwargs = {}
        for key, value in node["inputs"].items():
            if isinstance(value, list):
                run(value[0])
                kwargs[key] = results[value[0]][value[1]]
            else:
                kwargs[key] = value
        kind = node["class_type"]
        if kind in M:
            cls = M[kind]
            out = getattr(cls(), cls.FUNCTION)(**kwargs)
            out = out["result"] if isinstance(out, dict) else out
            assert isinstance(out, tuple) and len(out) == len(cls.RETURN_TYPES), kind
            for value, rtype in zip(out, cls.RETURN_TYPES):
                if rtype == "IMAGE":
                    check_image(value)
                elif rtype == "MASK":
                    check_mask(value)
                elif rtype == "STRING":
                    assert isinstance(value, str)
        elif kind in ("SaveImage", "PreviewImage"):
            check_image(kwargs["images"])
            out = ()
        elif kind == "MaskToImage":
            check_mask(kwargs["mask"])
            out = (kwargs["mask"][..., None].expand(-1, -1, -1, 3),)
        elif kind == "PreviewAny":
            json.loads(kwargs["source"])
            out = ()
        else:
            raise AssertionError(f"no emulation for {kind}")
        results[node_id] = out
        done.add(node_id)

    for node_id in prompt:
        run(node_id)
    return results


@pytest.mark.parametrize("name", API_NAMES)
def test_api_workflow_runs_on_the_tiny_checkpoint(name, models_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        execute(tiny(read(WF / "api" / f"{name}.json")))
    finally:
        torch.set_num_threads(threads)
