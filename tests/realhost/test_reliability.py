"""Reliability on a real ComfyUI server, the way API users drive it (skipped without COMFYUI_PATH / COMFYUI_URL):

    COMFYUI_PATH=~/.cache/unidiff-comfy/ComfyUI COMFYUI_PYTHON=~/.cache/unidiff-comfy/venv/bin/python \\
        ~/.cache/unidiff-comfy/venv/bin/python -m pytest -q -p no:cacheprovider tests/realhost -s

* the bad-input suite: every case of tests/bad_inputs.json is posted to /prompt; the answer (HTTP 400 with
  node_errors, or the execution error in /history) must carry the expected text, the server must answer
  afterwards, no pickle may run and the loaded model must not be dropped by a bad checkpoint;
* Cancel: POST /interrupt during sampling; the time to the prompt's end and the steps run after it are
  measured; the next prompt runs normally on the same (not reloaded) model;
* a queue of every API workflow with different seeds and sizes plus invalid prompts, run twice on two fresh
  servers started with --cache-none: every valid prompt has its outputs, every invalid one its error, the
  two runs give identical pixels, the model is loaded once per server, no output file is half-written.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the bad-input harness

import badinput_harness as bh  # noqa: E402
import comfy_server  # noqa: E402

CASES = bh.load_cases()
RESULTS: dict[str, str] = {}  # case id -> how it was refused (for the summary)
LOAD_LINE = re.compile(r"UniDiff: loading (?:MMGen )?checkpoint (\S+)")  # the Loader logs each real load


# ------------------------------------------------------------------------------------ helpers
def post(server, prompt: dict, client_id: str):
    prompt_id = str(uuid.uuid4())
    status, body = server.post("/prompt", {"prompt": server.keep_no_files(prompt), "client_id": client_id,
                                           "prompt_id": prompt_id})
    return status, body, prompt_id


def wait(server, prompt_id: str, timeout: float = 300.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, history = server.get(f"/history/{prompt_id}")
        if status == 200 and isinstance(history, dict) and prompt_id in history:
            return history[prompt_id]
        time.sleep(0.2)
    server.post("/interrupt", {"prompt_id": prompt_id})
    pytest.fail(f"prompt {prompt_id} did not finish within {timeout} s")


def refusal_text(body) -> str:
    """The messages of a refused prompt, 'message: details' per error (as the harness's stand-in writes them)."""
    parts = []
    if isinstance(body, dict):
        error = body.get("error") or {}
        if isinstance(error, dict) and error.get("message"):
            parts.append(f"{error['message']}: {error.get('details', '')}")
        for node in (body.get("node_errors") or {}).values():
            for e in node.get("errors", []):
                parts.append(f"{e.get('message')}: {e.get('details')}")
    return " | ".join(parts) if parts else str(body)[:2000]


def execution_error(entry: dict) -> str:
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_type')}: {data.get('exception_message')}"
    return json.dumps(entry.get("status"))[:2000]


def alive(server) -> bool:
    status, stats = server.get("/system_stats", timeout=10)
    return status == 200 and "system" in stats


def load_count(server, name: str = bh.TINY_NAME) -> int | None:
    if server.process is None:
        return None
    return sum(1 for m in LOAD_LINE.finditer(server.log()) if m.group(1) == name)


def fetch(server, image: dict) -> bytes:
    query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image["subfolder"],
                                    "type": image["type"]})
    status, raw = server.get(f"/view?{query}")
    assert status == 200 and isinstance(raw, bytes), f"/view {query} -> {status}"
    return raw


def pixels(raw: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def check_files_complete(folder: Path) -> int:
    """Every file under an output folder is a complete image (PIL verifies it) and none is a temporary."""
    from PIL import Image

    count = 0
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        assert not path.name.startswith(".") and not path.name.endswith((".tmp", ".part")), path
        if path.suffix.lower() in (".png", ".webp", ".jpg"):
            with Image.open(path) as im:
                im.verify()
            count += 1
    return count


def rss_mb(server) -> float | None:
    if server.process is None:
        return None
    try:
        with open(f"/proc/{server.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@pytest.fixture(scope="module")
def bad_checkpoints(comfy):
    """The bad checkpoints next to the tiny one in the server's models/unidiff/ (needs a server we started)."""
    if comfy.base is None:
        yield None  # a generator fixture must yield, also when it has nothing to give
        return
    folder = Path(comfy.base) / "models" / "unidiff"
    bh.make_checkpoints(folder)
    yield folder
    assert not bh.pickle_ran(folder), "a pickle checkpoint was executed by the server"


@pytest.fixture(scope="module")
def warm(comfy):
    """One valid prompt first: the model is loaded before the suite counts loads."""
    prompt = bh.tiny(bh.load_api("text2image"))
    prompt[bh.node_id(prompt, "UniDiffSampler")]["inputs"]["seed"] = 4242
    status, body, prompt_id = post(comfy, prompt, "unidiff-warm")
    assert status == 200, body
    entry = wait(comfy, prompt_id)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    return load_count(comfy)


# ------------------------------------------------------------------------------------ the bad-input suite
def uses_bad_checkpoint(case) -> bool:
    return any(v in bh.BAD_CHECKPOINTS for v in case.get("set", {}).values() if isinstance(v, str))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input(comfy, warm, bad_checkpoints, case):
    if uses_bad_checkpoint(case) and bad_checkpoints is None:
        pytest.skip("needs a server started by the test (COMFYUI_PATH) to place bad checkpoints")
    prompt = bh.build_prompt(case)
    client = "unidiff-bad-" + uuid.uuid4().hex[:6]
    t0 = time.time()
    status, body, prompt_id = post(comfy, prompt, client)
    if status == 400:
        outcome, message = "invalid (HTTP 400)", refusal_text(body)
    elif status == 200 and body.get("node_errors"):
        outcome, message = "invalid (HTTP 200, bad branch dropped)", refusal_text(body)
        wait(comfy, prompt_id)  # the valid branches still run: let them finish
    else:
        assert status == 200, (status, body)
        entry = wait(comfy, prompt_id)
        assert entry["status"]["status_str"] == "error", f"{case['id']}: the prompt ran without an error"
        outcome, message = "execution error", execution_error(entry)
    expected = "invalid" if case["expect"] == "invalid" else "execution error"
    assert outcome.startswith(expected), f"{case['id']}: expected {expected}, got {outcome}: {message}"
    assert case["text"] in message, f"{case['id']}: {case['text']!r} not in {message!r}"
    assert alive(comfy), "the server stopped answering"
    RESULTS[case["id"]] = outcome
    print(f"  {case['id']}: {outcome} in {time.time() - t0:.2f} s: {message[:160]}")


def test_bad_input_summary(comfy, warm, bad_checkpoints):
    """After the suite: the server answers, a valid prompt runs, the model was never reloaded, no pickle ran."""
    prompt = bh.tiny(bh.load_api("text2image"))
    prompt[bh.node_id(prompt, "UniDiffSampler")]["inputs"]["seed"] = 4343
    status, body, prompt_id = post(comfy, prompt, "unidiff-after-bad")
    assert status == 200, body
    entry = wait(comfy, prompt_id)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    loads = load_count(comfy)
    assert warm is None or loads == warm, f"the tiny model was loaded {loads - warm} more time(s) during the suite"
    if bad_checkpoints is not None:  # models/unidiff/loop/back -> models/unidiff: listed past it, with a warning
        status, info = comfy.get("/object_info/UniDiffLoader")
        assert status == 200 and bh.TINY_NAME in info["UniDiffLoader"]["input"]["required"]["ckpt_name"][0]
        loop = str(bad_checkpoints / bh.SYMLINK_LOOP / "back")
        assert f"skipping {loop}" in comfy.log() and "a symlink leads back to" in comfy.log()
    kinds = {}
    for outcome in RESULTS.values():
        kinds[outcome] = kinds.get(outcome, 0) + 1
    print(f"\nbad-input suite: {len(RESULTS)} of {len(CASES)} bad inputs posted to /prompt, each with its expected "
          f"error text: {kinds}; server answered after every one; a valid prompt then succeeded; "
          f"model loads during the suite: {0 if warm is None else loads - warm}; pickles executed: 0")
    assert len(RESULTS) >= 25


# ------------------------------------------------------------------------------------ Cancel
def run_seconds(entry: dict) -> float:
    """Execution time of a finished prompt from the server's own timestamps (execution_start -> end)."""
    stamps = {event: data.get("timestamp") for event, data in entry["status"]["messages"]}
    end = stamps.get("execution_success") or stamps.get("execution_error") or stamps.get("execution_interrupted")
    return (end - stamps["execution_start"]) / 1000.0


def server_step_time(server, size: int) -> float:
    """Seconds per sampling step on this server: two runs that differ only in steps (2 and 8), timed by the
    server, after a warm-up run (the first run of a size pays for CPU kernel set-up). Websocket arrival
    times are no measure: progress messages can arrive in bursts."""
    seconds = {}
    for steps in (1, 2, 8):
        prompt = bh.tiny(bh.load_api("text2image"), steps=steps, size=size)
        prompt[bh.node_id(prompt, "UniDiffSampler")]["inputs"]["seed"] = 900 + steps
        status, body, prompt_id = post(server, prompt, "unidiff-step-time")
        assert status == 200, body
        entry = wait(server, prompt_id)
        assert entry["status"]["status_str"] == "success", execution_error(entry)
        seconds[steps] = run_seconds(entry)
    print(f"\nstep time: runs of 1, 2 and 8 steps at {size}x{size} took "
          + ", ".join(f"{v:.3f}" for v in seconds.values()) + " s (server timestamps; the first includes warm-up)")
    return max(1e-3, (seconds[8] - seconds[2]) / 6)


def test_interrupt_stops_within_a_step_and_the_next_prompt_runs(comfy, warm):
    aiohttp = pytest.importorskip("aiohttp")
    import asyncio

    steps, size = 1000, 256
    step = server_step_time(comfy, size)
    prompt = bh.tiny(bh.load_api("text2image"), steps=steps, size=size)
    sampler = bh.node_id(prompt, "UniDiffSampler")
    prompt[sampler]["inputs"]["seed"] = 777
    rss_before = rss_mb(comfy)

    async def go():
        client_id = "unidiff-cancel-" + uuid.uuid4().hex[:6]
        progress, end, sent_at, steps_at_interrupt = [], None, None, None
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{comfy.url}/ws?clientId={client_id}") as ws:
                prompt_id = str(uuid.uuid4())
                async with session.post(f"{comfy.url}/prompt", json={"prompt": comfy.keep_no_files(prompt),
                                                                     "client_id": client_id,
                                                                     "prompt_id": prompt_id}) as resp:
                    assert resp.status == 200, await resp.text()
                while True:
                    msg = await ws.receive(timeout=300)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        continue
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise AssertionError(f"websocket closed: {msg}")
                    data = json.loads(msg.data)
                    if data.get("data", {}).get("prompt_id") not in (None, prompt_id):
                        continue
                    now = time.perf_counter()
                    if data["type"] == "progress" and data["data"].get("node") == sampler:
                        progress.append((now, data["data"]["value"]))
                        if len(progress) == 4 and sent_at is None:
                            steps_at_interrupt = data["data"]["value"]
                            sent_at = time.perf_counter()
                            async with session.post(f"{comfy.url}/interrupt", json={"prompt_id": prompt_id}) as r:
                                assert r.status == 200
                    if data["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                        end = (now, data["type"])
                        break
        return progress, end, sent_at, steps_at_interrupt

    progress, (ended_at, how), sent_at, at_interrupt = asyncio.run(go())
    assert how == "execution_interrupted", how
    latency = ended_at - sent_at
    last = max(v for _, v in progress)
    after = last - at_interrupt  # counted from the step the client had seen: an upper bound
    print(f"\ninterrupt: POST /interrupt after step {at_interrupt} of {steps} ({size}x{size}, tiny model, "
          f"{step:.3f} s per step on this server); the prompt ended {latency:.3f} s later, {after} more step(s) "
          "reported" + (f"; server RSS {rss_before:.0f} MB before the prompt" if rss_before else ""))
    assert after <= 1, f"{after} steps ran after Cancel"
    # within one step; the slack covers HTTP and a busy machine (the timing is wall clock on shared CPUs)
    assert latency <= 2 * step + 1.0, f"stop took {latency:.2f} s for steps of {step:.2f} s"

    loads_before = load_count(comfy)
    prompt = bh.tiny(bh.load_api("text2image"), steps=2)
    prompt[bh.node_id(prompt, "UniDiffSampler")]["inputs"]["seed"] = 778
    status, body, prompt_id = post(comfy, prompt, "unidiff-after-cancel")
    assert status == 200, body
    entry = wait(comfy, prompt_id)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    assert load_count(comfy) == loads_before, "the model was reloaded after Cancel"
    if comfy.base:
        check_files_complete(Path(comfy.base) / "output")
    rss_after = rss_mb(comfy)
    print(f"interrupt: the next prompt succeeded on the same model (checkpoint loads in the log: {loads_before} "
          "before and after)" + (f"; server RSS {rss_after:.0f} MB after it" if rss_after else ""))


# ------------------------------------------------------------------------------------ queue and determinism
QUEUE_SIZES = [(64, 64), (80, 48), (48, 80), (96, 64)]
QUEUE_INVALID = ["sampler_width_not_multiple_of_16", "boxes_malformed_json", "mask_size_differs_from_image",
                 "generated_frame_in_a_task", "camera_lists_of_different_length"]


def queue_prompts() -> list[tuple[str, dict, str]]:
    """(name, prompt, expect) for the queue: every API workflow (seeds 1000+, sizes varying), a repeat of one
    of them with the same seed, and invalid prompts from the bad-input suite, interleaved."""
    names = sorted(f[:-5] for f in os.listdir(bh.WORKFLOWS) if f.endswith(".json")
                   and not f.startswith("mini_"))  # the Mini twins: the same graphs, run by test_mini_twins.py
    out, mmgen_out = [], []
    for i, name in enumerate(names):
        prompt = bh.tiny(bh.load_api(name))
        sampler = prompt[bh.node_id(prompt, "UniDiffSampler")]["inputs"]
        multiview = any(n["class_type"] == "UniDiffMultiViewCameras" for n in prompt.values())
        mmgen = any(n["class_type"] == "UniDiffMMGenTask" for n in prompt.values())  # 256² only: its size stays
        width, height = (48, 48) if multiview and i % 2 else (64, 64) if multiview else QUEUE_SIZES[i % 4]
        sampler.update(seed=1000 + i, **({} if mmgen else dict(width=width, height=height)))
        (mmgen_out if mmgen else out).append((name, prompt, "success"))
    out.append(("text2image (repeat)", json.loads(json.dumps(next(p for n, p, _ in out if n == "text2image"))),
                "success"))
    by_id = {c["id"]: c for c in CASES}
    for k, case_id in enumerate(QUEUE_INVALID):
        out.insert(3 + 5 * k, (f"invalid: {case_id}", bh.build_prompt(by_id[case_id]), by_id[case_id]["expect"]))
    return out + mmgen_out  # MMGen last: the Loader holds one model, so each checkpoint loads once


def run_queue(server, label: str) -> dict:
    """Queue everything at once, then collect: name -> {"outputs": {node: [pixel arrays | text]}, ...}."""
    client = f"unidiff-queue-{label}-{uuid.uuid4().hex[:6]}"
    items = queue_prompts()
    posted = []
    for name, prompt, expect in items:
        status, body, prompt_id = post(server, prompt, client)
        posted.append((name, prompt, expect, status, body, prompt_id))
    results = {}
    for name, prompt, expect, status, body, prompt_id in posted:
        if status != 200 or body.get("node_errors"):
            assert expect == "invalid", f"{name}: refused at POST: {refusal_text(body)}"
            results[name] = {"outcome": "invalid"}
            continue
        entry = wait(server, prompt_id)
        if expect != "success":
            assert entry["status"]["status_str"] == "error", f"{name} ran without an error"
            results[name] = {"outcome": "error"}
            continue
        assert entry["status"]["status_str"] == "success", f"{name}: {execution_error(entry)}"
        outputs = {}
        for node_id, node in prompt.items():
            if node["class_type"] not in bh.OUTPUT_CLASSES:
                continue
            out = entry["outputs"].get(node_id)
            assert out, f"{name}: output node {node_id} ({node['class_type']}) produced nothing"
            if node["class_type"] == "PreviewAny":
                outputs[node_id] = out["text"]
            else:
                raws = [fetch(server, image) for image in out["images"]]
                assert raws, f"{name}: no images from {node_id}"
                outputs[node_id] = [(pixels(raw), raw) for raw in raws]
        results[name] = {"outcome": "success", "outputs": outputs}
    return results


def _same(a: dict, b: dict) -> tuple[bool, bool]:
    """(identical pixels/text, identical file bytes) of two runs of one prompt."""
    import numpy as np

    same_pixels = same_bytes = True
    for node_id, value in a["outputs"].items():
        other = b["outputs"][node_id]
        if value and isinstance(value[0], str):
            same_pixels &= value == other
            continue
        same_pixels &= len(value) == len(other) and all(np.array_equal(x[0], y[0]) for x, y in zip(value, other))
        same_bytes &= all(x[1] == y[1] for x, y in zip(value, other))
    return same_pixels, same_bytes


def test_queue_and_determinism_on_two_fresh_servers(comfy):
    path = os.environ.get("COMFYUI_PATH")
    if not path or comfy.process is None:
        pytest.skip("needs COMFYUI_PATH: the test starts two fresh servers with --cache-none")
    runs, logs = [], []
    for label in ("first", "second"):
        server = comfy_server.start(path, python=os.environ.get("COMFYUI_PYTHON"), extra_args=["--cache-none"])
        try:
            t0 = time.time()
            results = run_queue(server, label)
            elapsed = time.time() - t0
            files = check_files_complete(Path(server.base) / "output")
            loads = load_count(server)
            assert loads == 1, f"{label} server: the model was loaded {loads} times for one queue"
            mmgen_loads = load_count(server, bh.MMGEN_TINY_NAME)
            assert mmgen_loads == 1, f"{label} server: the MMGen model was loaded {mmgen_loads} times for one queue"
            assert alive(server)
            runs.append(results)
            logs.append((elapsed, files, loads))
        finally:
            server.stop()
            if not os.environ.get("UNIDIFF_KEEP_SERVERS"):
                import shutil

                shutil.rmtree(server.base, ignore_errors=True)
    first, second = runs
    valid = [n for n, r in first.items() if r["outcome"] == "success"]
    invalid = [n for n, r in first.items() if r["outcome"] != "success"]
    assert first.keys() == second.keys()
    assert [second[n]["outcome"] for n in first] == [first[n]["outcome"] for n in first]
    differing, byte_differing = [], []
    for name in valid:
        same_pixels, same_bytes = _same(first[name], second[name])
        if not same_pixels:
            differing.append(name)
        if not same_bytes:
            byte_differing.append(name)
    twin_pixels, _ = _same(first["text2image"], first["text2image (repeat)"])
    images = sum(len(v) for r in first.values() if r["outcome"] == "success" for v in r["outputs"].values())
    print(f"\nqueue: {len(first)} API prompts queued at once per run ({len(valid)} valid over all "
          f"{len(valid) - 1} workflows + 1 repeat, {len(invalid)} invalid: "
          f"{sum(1 for n in invalid if first[n]['outcome'] == 'invalid')} refused at POST, "
          f"{sum(1 for n in invalid if first[n]['outcome'] == 'error')} execution errors); "
          f"run 1 {logs[0][0]:.1f} s, run 2 {logs[1][0]:.1f} s on two fresh --cache-none servers; "
          f"{images} outputs per run; files complete: {logs[0][1]} + {logs[1][1]}; model loads per server: "
          f"{logs[0][2]}, {logs[1][2]}")
    print(f"determinism: {len(valid) - len(differing)} of {len(valid)} valid prompts gave identical pixels in both "
          f"runs ({len(valid) - len(byte_differing)} byte-identical files); the in-queue repeat matched: {twin_pixels}")
    assert not differing, f"outputs differ between the runs: {differing}"
    assert twin_pixels, "the same prompt twice in one queue gave different pixels"
    assert len(first) >= 20
