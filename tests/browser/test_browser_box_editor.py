"""Headless-browser test of the UniDiffLayoutBoxes box editor (js/unidiff_layout_boxes.js).

Runs tests/browser/check_box_editor.js (puppeteer-core + Debian chromium) against a real ComfyUI
with this pack: the `comfy` fixture of tests/conftest.py (COMFYUI_URL: a running server, or
COMFYUI_PATH: a ComfyUI folder the test starts). Skipped unless these also hold:

* ``/usr/bin/chromium`` (Debian package ``chromium``) and ``node`` exist
* ``UNIDIFF_NODE_MODULES``: a ``node_modules`` folder holding ``puppeteer-core``
  (passed to node as ``NODE_PATH``); never the full ``puppeteer`` package.

The picture the editor draws behind the boxes is uploaded to ComfyUI's temp/ folder (which ComfyUI
empties), so the test leaves no file in input/. Optional:
``UNIDIFF_BOX_EDITOR_SCREENSHOT=/tmp/unidiff_box_editor.png`` saves a screenshot.
"""
import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "check_box_editor.js")
CHROMIUM = "/usr/bin/chromium"


def _requirements(url):
    if not os.path.exists(CHROMIUM):
        return None, f"{CHROMIUM} is missing (apt-get install chromium)"
    node = shutil.which("node")
    if not node:
        return None, "node is not on PATH"
    modules = os.environ.get("UNIDIFF_NODE_MODULES")
    if not modules:
        return None, "UNIDIFF_NODE_MODULES is not set (node_modules folder with puppeteer-core)"
    env = dict(os.environ, NODE_PATH=modules)
    try:
        probe = subprocess.run([node, "-e", "require.resolve('puppeteer-core')"], env=env,
                               capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"cannot run node: {e}"
    if probe.returncode != 0:
        return None, f"puppeteer-core is not resolvable from {modules}"
    return (node, url, env), None


def test_box_editor_in_headless_chromium(comfy):
    req, why = _requirements(comfy.url + "/")
    if req is None:
        pytest.skip(why)
    node, url, env = req
    cmd = [node, SCRIPT, url]
    shot = os.environ.get("UNIDIFF_BOX_EDITOR_SCREENSHOT")
    if shot:
        cmd += ["--screenshot", shot]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"browser check timed out after 150 s; output so far:\n{e.stdout}\n{e.stderr}")
    out = proc.stdout.strip()
    try:
        result = json.loads(out[out.index("{"):]) if "{" in out else {}
    except ValueError:
        result = {}
    failed = [c for c in result.get("checks", []) if not c.get("ok")]
    assert proc.returncode == 0 and result.get("ok") is True, (
        f"box editor check failed (exit {proc.returncode}); failed checks:\n"
        + json.dumps(failed, indent=2)[:6000]
        + f"\n--- stdout tail ---\n{out[-3000:]}\n--- stderr tail ---\n{proc.stderr[-3000:]}"
    )
    assert result.get("passed", 0) >= 20
    if comfy.base is not None:  # a server this session started: nothing was left in its input/ folder
        folder = os.path.join(comfy.base, "input")  # ComfyUI itself makes an empty input/3d/
        left = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)
        assert not left, f"the browser test left files in ComfyUI's input/ folder: {left}"
