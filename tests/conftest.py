"""Shared fixtures. The repository root is put on sys.path so `unidiff_core` imports as a package."""

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
TINY_CHECKPOINT = GOLDEN / "tiny-onediffusion"


@pytest.fixture(scope="session")
def golden_dir():
    return GOLDEN


@pytest.fixture(scope="session")
def tiny_checkpoint():
    return TINY_CHECKPOINT


@pytest.fixture(scope="session")
def golden_pipeline():
    """The reference's tiny checkpoint loaded once per session (fp32, CPU)."""
    import torch

    from unidiff_core.onediffusion.pipeline import UniDiffPipeline

    torch.set_num_threads(1)  # the goldens were made with one thread
    return UniDiffPipeline.from_pretrained(TINY_CHECKPOINT)


@pytest.fixture(scope="session")
def comfy(request):
    """A real ComfyUI with this pack, for tests/realhost and tests/browser (one server per session):
    COMFYUI_URL (a running server) or COMFYUI_PATH (a ComfyUI folder to start, see
    tests/realhost/comfy_server.py); skipped without either."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "realhost"))
    import comfy_server

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
        pytest.skip("needs a ComfyUI: set COMFYUI_PATH=<ComfyUI folder> (and COMFYUI_PYTHON=<its python>) or "
                    "COMFYUI_URL=<running server with this pack>")
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
