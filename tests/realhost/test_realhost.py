"""Real-host tests: the pack inside a running ComfyUI (skipped without COMFYUI_PATH / COMFYUI_URL).

    COMFYUI_PATH=~/.cache/unidiff-comfy/ComfyUI COMFYUI_PYTHON=~/.cache/unidiff-comfy/venv/bin/python \
        ~/.cache/unidiff-comfy/venv/bin/python -m pytest -q -p no:cacheprovider tests/realhost

Checks: the pack imports cleanly, every node is in /object_info with the declared inputs, the core
nodes the workflows use look as the workflow test assumes, the templates and the JS extension are
served, every API workflow runs through POST /prompt on the tiny checkpoint with its outputs in
/history and /view, the sampler reports progress with live previews over the websocket, Cancel
stops it within a step, and a node error reaches /history as an execution error.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import time
import urllib.parse
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKFLOWS = os.path.join(ROOT, "example_workflows")
sys.path.insert(0, WORKFLOWS)

import make_workflows  # noqa: E402  (imports the pack as a package, no ComfyUI needed)
from comfy_server import PACK_NAME, TINY_NAME  # noqa: E402

sys.path.insert(0, os.path.dirname(HERE))
from badinput_harness import tiny  # noqa: E402  (the API graph on the tiny checkpoint)

PACK = make_workflows.load_pack()
API_NAMES = sorted(f[:-5] for f in os.listdir(os.path.join(WORKFLOWS, "api")) if f.endswith(".json"))
UI_NAMES = sorted(f[:-5] for f in os.listdir(WORKFLOWS) if f.endswith(".json"))
CLIENT_ID = "unidiff-realhost-" + uuid.uuid4().hex[:8]


def load_api(name: str) -> dict:
    with open(os.path.join(WORKFLOWS, "api", f"{name}.json")) as f:
        return json.load(f)


def queue(comfy, prompt: dict) -> str:
    prompt_id = str(uuid.uuid4())
    status, body = comfy.post("/prompt", {"prompt": comfy.keep_no_files(prompt), "client_id": CLIENT_ID,
                                          "prompt_id": prompt_id})
    assert status == 200, f"POST /prompt -> {status}: {json.dumps(body)[:3000]}"
    assert not body.get("node_errors"), f"partially accepted: {json.dumps(body['node_errors'])[:3000]}"
    return prompt_id


def wait(comfy, prompt_id: str, timeout: float = 300.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, history = comfy.get(f"/history/{prompt_id}")
        if status == 200 and prompt_id in history:
            return history[prompt_id]
        time.sleep(0.25)
    comfy.post("/interrupt", {"prompt_id": prompt_id})
    pytest.fail(f"prompt {prompt_id} did not finish within {timeout} s")


def run(comfy, prompt: dict, timeout: float = 300.0) -> dict:
    return wait(comfy, queue(comfy, prompt), timeout)


def error_text(entry: dict) -> str:
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_type')}: {data.get('exception_message')}\n" + \
                "".join(data.get("traceback", []))[-3000:]
    return json.dumps(entry.get("status"))[:2000]


def fetch_image(comfy, image: dict):
    from PIL import Image

    query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image["subfolder"],
                                    "type": image["type"]})
    status, raw = comfy.get(f"/view?{query}")
    assert status == 200 and isinstance(raw, bytes), f"/view {query} -> {status}"
    return Image.open(io.BytesIO(raw))


# ------------------------------------------------------------------------------------ pack import and node list
def test_pack_imports_cleanly(comfy):
    if comfy.process is None:
        pytest.skip("server not started by the test: its log is not available")
    log = comfy.log()
    line = next((ln for ln in log.splitlines() if ln.rstrip().endswith(f"custom_nodes/{PACK_NAME}")), None)
    assert line is not None, f"the pack is missing from the import-times table:\n{log[-4000:]}"
    assert "IMPORT FAILED" not in line, line
    # ComfyUI's own optional nodes may fail without their libraries (the audio nodes without torchaudio)
    failures = [ln for ln in log.splitlines() if "Cannot import" in ln and PACK_NAME in ln]
    assert not failures, log[-4000:]
    print(line.strip())


def test_every_node_in_object_info(comfy):
    status, info = comfy.get("/object_info")
    assert status == 200
    for name, cls in PACK.NODE_CLASS_MAPPINGS.items():
        assert name in info, f"{name} not in /object_info"
        node = info[name]
        assert node["python_module"] == f"custom_nodes.{PACK_NAME}", node["python_module"]
        assert node["category"].startswith("UniDiff/"), node["category"]
        assert node["display_name"] == PACK.NODE_DISPLAY_NAME_MAPPINGS[name]
        declared = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            assert list(node["input"].get(section, {})) == list(declared.get(section, {})), (name, section)
        assert node["output"] == list(cls.RETURN_TYPES)
        assert node["output_name"] == list(cls.RETURN_NAMES)
    ckpts = info["UniDiffLoader"]["input"]["required"]["ckpt_name"][0]
    assert TINY_NAME in ckpts, ckpts
    print(f"{len(PACK.NODE_CLASS_MAPPINGS)} UniDiff nodes in /object_info; checkpoints: {ckpts}")


def test_core_nodes_match_the_workflow_tables(comfy):
    """The core-node table the workflow files are built and checked with (CI has no ComfyUI) is true."""
    status, info = comfy.get("/object_info")
    for name, (inputs, outputs) in make_workflows.CORE.items():
        node = info[name]
        declared = {**node["input"].get("required", {}), **node["input"].get("optional", {})}
        for input_name, input_type, _ in inputs:
            assert input_name in declared, (name, input_name)
            kind = declared[input_name][0]
            assert kind == input_type or (isinstance(kind, list) and input_type == "COMBO"), (name, input_name, kind)
        assert node["output"] == [t for _, t in outputs], (name, node["output"])


def test_templates_and_extension_are_served(comfy):
    status, templates = comfy.get("/api/workflow_templates")
    assert status == 200
    assert sorted(templates.get(PACK_NAME, [])) == UI_NAMES, templates.get(PACK_NAME)
    status, wf = comfy.get(f"/api/workflow_templates/{PACK_NAME}/text2image.json")
    assert status == 200 and wf["nodes"], status
    status, extensions = comfy.get("/extensions")
    assert f"/extensions/{PACK_NAME}/unidiff_layout_boxes.js" in extensions, extensions
    assert f"/extensions/{PACK_NAME}/unidiff_example_image.js" in extensions, extensions
    # where the Example Image node's preview reads its picture from
    examples = importlib.import_module(f"{PACK.__name__}.nodes.examples")
    for name in examples.example_names():  # inputs/ and inputs/mini/ (quote keeps the slash, as the JS does)
        status, raw = comfy.get(f"/api/workflow_templates/{PACK_NAME}/inputs/{urllib.parse.quote(name)}")
        with open(os.path.join(WORKFLOWS, "inputs", name), "rb") as f:
            assert status == 200 and raw == f.read(), (name, status)


# ------------------------------------------------------------------------------------ workflows
# Per workflow: output node class -> number of images (or JSON entries for PreviewAny) expected.
EXPECTED = {
    "image2depth": {"SaveImage": [1, 1], "PreviewImage": [1]},
    "image2semanticmap": {"SaveImage": [1, 3], "PreviewAny": [3]},
    "image2boundingbox": {"SaveImage": [1, 2]},
    "image2multiview": {"SaveImage": [4]},
    "text2multiview": {"SaveImage": [4]},
    "camera_estimation": {"PreviewAny": [2]},
    "custom_image_and_depth": {"SaveImage": [2, 1]},
    **{f"mmgen_{mode}": {"SaveImage": [1, 1, 1, 1], "PreviewImage": [1]}
       for mode in ("category", "rgb2x", "depth2x", "normal2x", "mask2x")},
}


@pytest.mark.parametrize("name", [n for n in API_NAMES if not n.startswith("mini_")])  # the Mini twins run on
def test_api_workflow_runs(comfy, name):  # UniDiff-Mini itself in test_mini_twins.py
    prompt = tiny(load_api(name))
    t0 = time.time()
    entry = run(comfy, prompt)
    assert entry["status"]["status_str"] == "success", error_text(entry)
    outputs = entry["outputs"]
    counts = {}
    for node_id, node in prompt.items():
        kind = node["class_type"]
        if kind not in ("SaveImage", "PreviewImage", "PreviewAny"):
            continue
        out = outputs.get(node_id)
        assert out, f"{kind} {node_id} produced no output"
        if kind == "PreviewAny":
            value = json.loads(out["text"][0])
            counts.setdefault(kind, []).append(len(value))
            continue
        images = out["images"]
        saved = kind == "SaveImage" and comfy.owned  # else posted as Preview Image (see keep_no_files)
        assert images and all(i["type"] == ("output" if saved else "temp") for i in images)
        for image in images:
            pic = fetch_image(comfy, image)
            assert pic.size[0] > 0 and pic.mode in ("RGB", "RGBA")
        counts.setdefault(kind, []).append(len(images))
    for kind, expected in EXPECTED.get(name, {}).items():
        assert counts.get(kind) == expected, (kind, counts)
    print(f"{name}: ok in {time.time() - t0:.1f} s, outputs {counts}")


# ------------------------------------------------------------------------------------ progress, preview, Cancel
def _ws_events(comfy, prompt: dict, interrupt_after_progress: int | None = None, timeout: float = 300.0):
    """Queue a prompt and record its websocket events: [(kind, data)], kind 'json' or 'preview'."""
    aiohttp = pytest.importorskip("aiohttp")
    import asyncio

    async def go():
        client_id = "unidiff-ws-" + uuid.uuid4().hex[:8]
        events, progress_seen, sent_interrupt = [], 0, None
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{comfy.url}/ws?clientId={client_id}") as ws:
                prompt_id = str(uuid.uuid4())
                async with session.post(f"{comfy.url}/prompt", json={"prompt": comfy.keep_no_files(prompt),
                                                                     "client_id": client_id,
                                                                     "prompt_id": prompt_id}) as resp:
                    assert resp.status == 200, await resp.text()
                deadline = time.time() + timeout
                while time.time() < deadline:
                    msg = await ws.receive(timeout=timeout)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        kind = int.from_bytes(msg.data[:4], "big")
                        if kind in (1, 4):
                            events.append(("preview", len(msg.data)))
                        continue
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    data = json.loads(msg.data)
                    if data.get("data", {}).get("prompt_id") not in (None, prompt_id):
                        continue
                    events.append(("json", data))
                    if data["type"] == "progress":
                        progress_seen += 1
                        if interrupt_after_progress is not None and progress_seen == interrupt_after_progress:
                            sent_interrupt = len(events)
                            async with session.post(f"{comfy.url}/interrupt", json={"prompt_id": prompt_id}) as r:
                                assert r.status == 200
                    if data["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                        break
        return events, sent_interrupt

    return asyncio.run(go())


def test_progress_and_live_preview(comfy):
    steps = 6
    prompt = tiny(load_api("custom_image_and_depth"), steps=steps)
    prompt[next(k for k, n in prompt.items() if n["class_type"] == "UniDiffSampler")]["inputs"]["seed"] = 11
    events, _ = _ws_events(comfy, prompt)
    sampler_id = next(k for k, n in prompt.items() if n["class_type"] == "UniDiffSampler")
    progress = [d["data"] for kind, d in events if kind == "json" and d["type"] == "progress"
                and d["data"].get("node") == sampler_id]
    previews = [e for e in events if e[0] == "preview"]
    assert [p["value"] for p in progress] == list(range(1, steps + 1)), progress
    assert all(p["max"] == steps for p in progress)
    assert len(previews) >= steps, f"{len(previews)} preview frames for {steps} steps"
    assert events[-1][1]["type"] == "execution_success", events[-1]
    print(f"progress {[p['value'] for p in progress]}, {len(previews)} preview frames")


def test_cancel_stops_within_one_step(comfy):
    steps = 1000
    prompt = tiny(load_api("text2image"), steps=steps, size=256)
    prompt[next(k for k, n in prompt.items() if n["class_type"] == "UniDiffSampler")]["inputs"]["seed"] = 12345
    t0 = time.time()
    events, sent = _ws_events(comfy, prompt, interrupt_after_progress=3)
    assert sent is not None, "no progress before the end"
    after = [d for kind, d in events[sent:] if kind == "json" and d["type"] == "progress"]
    last = events[-1][1]
    assert last["type"] == "execution_interrupted", last
    assert len(after) <= 1, f"{len(after)} more steps ran after Cancel"
    print(f"interrupted after {3 + len(after)} of {steps} steps, {time.time() - t0:.1f} s; "
          f"node {last['data'].get('node_type')}")
    # the next run works (the interrupt flag was consumed)
    entry = run(comfy, tiny(load_api("text2image"), steps=2))
    assert entry["status"]["status_str"] == "success", error_text(entry)


def test_node_error_reaches_history(comfy):
    prompt = tiny(load_api("image2depth"))
    text = next(n for n in prompt.values() if n["class_type"] == "UniDiffTextEncode")
    text["inputs"]["task"] = "text2image"  # valid widgets (no 400), but text2image takes no image frame:
    text["inputs"]["prompt"] = "a cat"
    entry = run(comfy, prompt)
    assert entry["status"]["status_str"] == "error"
    message = error_text(entry)
    assert "task 'text2image' does not take image (from UniDiff Image Frame)" in message, message


def test_free_memory_then_rerun(comfy):
    """ComfyUI's unload (POST /free) drops our parts from its memory manager; the next run loads them again."""
    status, _ = comfy.post("/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    prompt = tiny(load_api("text2image"))
    prompt[next(k for k, n in prompt.items() if n["class_type"] == "UniDiffSampler")]["inputs"]["seed"] = 77
    entry = run(comfy, prompt)
    assert entry["status"]["status_str"] == "success", error_text(entry)


# ------------------------------------------------------------------------------------ the real frontend
def test_frontend_turns_each_ui_workflow_into_its_api_file(comfy):
    """Headless Chromium (Debian's /usr/bin/chromium, puppeteer-core from UNIDIFF_NODE_MODULES): the
    frontend loads every UI workflow without unknown nodes, and graphToPrompt() equals the API file."""
    import shutil
    import subprocess

    node, modules = shutil.which("node"), os.environ.get("UNIDIFF_NODE_MODULES")
    if not (node and modules and os.path.exists("/usr/bin/chromium")):
        pytest.skip("needs node, /usr/bin/chromium and UNIDIFF_NODE_MODULES (a node_modules with puppeteer-core)")
    script = os.path.join(HERE, "check_workflows_in_frontend.js")
    proc = subprocess.run([node, script, comfy.url + "/", WORKFLOWS], env=dict(os.environ, NODE_PATH=modules),
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout
    result = json.loads(out[out.index("{"):]) if "{" in out else {}
    bad = [r for r in result.get("results", []) if not r["ok"]]
    assert proc.returncode == 0 and result.get("ok"), (json.dumps(bad, indent=1)[:6000], proc.stderr[-3000:])
    assert result["checked"] == len(UI_NAMES)
    previews = [p for r in result["results"] for p in r["previews"]]
    assert previews and all(p["shown"] and p["widget"] for p in previews), previews
    assert result["exampleSwitch"]["ok"], result["exampleSwitch"]
    ignored = sorted({i for r in result["results"] for i in r["ignored"]})
    print(f"frontend: {result['checked']} UI workflows load and convert to their API files "
          f"(frontend-only inputs the server ignores: {ignored}); {len(previews)} Example Image nodes preview "
          f"their picture; page errors: {result['pageErrors'][:3]}")
