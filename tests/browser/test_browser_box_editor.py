"""Headless-browser test of the UniDiffLayoutBoxes box editor (js/unidiff_layout_boxes.js).

Runs tests/browser/check_box_editor.js (puppeteer-core + Debian chromium) against a
running ComfyUI that has this pack loaded. Skipped unless all of these hold:

* ``COMFYUI_URL``: URL of that server, e.g. ``http://127.0.0.1:8188/``
* ``/usr/bin/chromium`` (Debian package ``chromium``) and ``node`` exist
* ``UNIDIFF_NODE_MODULES``: a ``node_modules`` folder holding ``puppeteer-core``
  (passed to node as ``NODE_PATH``); never the full ``puppeteer`` package.

Optional: ``UNIDIFF_BOX_EDITOR_SCREENSHOT=/tmp/unidiff_box_editor.png`` saves a screenshot.
"""
import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "check_box_editor.js")
CHROMIUM = "/usr/bin/chromium"


def _requirements():
    url = os.environ.get("COMFYUI_URL")
    if not url:
        return None, "COMFYUI_URL is not set (URL of a running ComfyUI with this pack)"
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


def test_box_editor_in_headless_chromium():
    req, why = _requirements()
    if req is None:
        pytest.skip(why)
    node, url, env = req
    cmd = [node, SCRIPT, url]
    shot = os.environ.get("UNIDIFF_BOX_EDITOR_SCREENSHOT")
    if shot:
        cmd += ["--screenshot", shot]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=55)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"browser check timed out after 55 s; output so far:\n{e.stdout}\n{e.stderr}")
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
