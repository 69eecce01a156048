"""Session fixture: a real ComfyUI with this pack (see comfy_server.py). Skipped without COMFYUI_URL
or COMFYUI_PATH, so CI (no ComfyUI) skips every real-host test."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import comfy_server  # noqa: E402


@pytest.fixture(scope="session")
def comfy(request):
    url, path = os.environ.get("COMFYUI_URL"), os.environ.get("COMFYUI_PATH")
    if url:
        server = comfy_server.Server(url)
        try:
            status, _ = server.get("/object_info", timeout=10)
        except OSError as e:
            pytest.fail(f"COMFYUI_URL={url} does not answer: {e}")
        assert status == 200, f"COMFYUI_URL={url}: /object_info answered {status}"
        yield server
        return
    if not path:
        pytest.skip("real-host tests need COMFYUI_PATH (a ComfyUI folder to start) or COMFYUI_URL (a running server)")
    if not os.path.isfile(os.path.join(path, "main.py")):
        pytest.skip(f"COMFYUI_PATH={path} has no main.py")
    server = comfy_server.start(path, python=os.environ.get("COMFYUI_PYTHON"))
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed:
            print(f"\nComfyUI log: {server.log_path}")
        else:
            shutil.rmtree(server.base, ignore_errors=True)
