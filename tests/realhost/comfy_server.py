"""Bring up a real ComfyUI with this pack for the real-host tests (or use one that is already running).

* COMFYUI_URL=http://127.0.0.1:8188 : use that server. It must have this pack installed and the tiny
  checkpoint tests/fixtures/golden/tiny-onediffusion in models/unidiff/ (as tiny-onediffusion).
* else COMFYUI_PATH=<ComfyUI folder> : start `main.py --cpu` from it on a free port, with
  `--base-directory` set to a fresh temporary folder that holds custom_nodes/ComfyUI-UniDiff (a
  symlink to this checkout), models/unidiff/tiny-onediffusion (a symlink to the fixture) and the tiny
  MMGen (models/unidiff/tiny-mmgen.safetensors, models/vae/sd-vae-ft-mse) and a LoRA of the tiny checkpoint
  (models/loras/tiny-onediffusion-lora.safetensors), so the
  ComfyUI installation itself is not touched. COMFYUI_PYTHON picks the interpreter (default: the
  one running pytest; it needs ComfyUI's requirements and this pack's). The server is stopped (by
  its pid) at the end of the session; its log is printed when it fails to start.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tests", "fixtures", "golden", "tiny-onediffusion")
PACK_NAME = "ComfyUI-UniDiff"
TINY_NAME = "tiny-onediffusion"
MMGEN_TINY = os.path.join(ROOT, "tests", "fixtures", "mmgen", "tiny-mmgen")
MMGEN_TINY_NAME = "tiny-mmgen.safetensors"  # the tiny MMGen's EMA weights (config in the file's metadata)
TINY_LORA_NAME = "tiny-onediffusion-lora.safetensors"  # tests/lora_common.py writes it
TINY_LORA = os.path.join(ROOT, "tests", "fixtures", "lora", TINY_LORA_NAME)


def http(url: str, data=None, timeout: float = 30.0):
    """GET (data None) or POST JSON -> (status, parsed JSON or raw bytes)."""
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, process=None, base: str | None = None, log_path: str | None = None):
        self.url = url.rstrip("/")
        self.process, self.base, self.log_path = process, base, log_path

    @property
    def owned(self) -> bool:
        """A server the tests started, in its own temporary --base-directory (removed afterwards)."""
        return self.base is not None

    def keep_no_files(self, prompt: dict) -> dict:
        """The prompt to post: on a server the tests did not start (COMFYUI_URL), Save Image becomes Preview
        Image, so the tests leave no file in its output/ folder (ComfyUI empties temp/ itself)."""
        if self.owned:
            return prompt
        prompt = copy.deepcopy(prompt)
        for node in prompt.values():
            if node.get("class_type") == "SaveImage":
                node["class_type"] = "PreviewImage"
                node["inputs"].pop("filename_prefix", None)
        return prompt

    def get(self, path, timeout=30.0):
        return http(self.url + path, timeout=timeout)

    def post(self, path, data, timeout=30.0):
        return http(self.url + path, data, timeout=timeout)

    def log(self) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # its own session: main.py and nothing else
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def start(comfy_path: str, python: str | None = None, timeout: float = 240.0, extra_args=()) -> Server:
    base = tempfile.mkdtemp(prefix="unidiff-comfy-")
    os.makedirs(os.path.join(base, "custom_nodes"))
    os.makedirs(os.path.join(base, "models", "unidiff"))
    os.symlink(ROOT, os.path.join(base, "custom_nodes", PACK_NAME))
    os.symlink(TINY, os.path.join(base, "models", "unidiff", TINY_NAME))
    os.symlink(os.path.join(MMGEN_TINY, "0600000.ema.safetensors"), os.path.join(base, "models", "unidiff", MMGEN_TINY_NAME))
    os.makedirs(os.path.join(base, "models", "vae"))
    os.symlink(os.path.join(MMGEN_TINY, "vae"), os.path.join(base, "models", "vae", "sd-vae-ft-mse"))
    os.makedirs(os.path.join(base, "models", "loras"))
    os.symlink(TINY_LORA, os.path.join(base, "models", "loras", TINY_LORA_NAME))
    port = _free_port()
    log_path = os.path.join(base, "comfyui.log")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DO_NOT_TRACK="1", PYTHONUNBUFFERED="1",
               PYTHONPYCACHEPREFIX=os.path.join(base, "pycache"))
    cmd = [python or sys.executable, os.path.join(comfy_path, "main.py"), "--cpu", "--listen", "127.0.0.1",
           "--port", str(port), "--disable-auto-launch", "--disable-api-nodes", "--base-directory", base,
           "--preview-method", "latent2rgb", *extra_args]
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, cwd=comfy_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, base, log_path)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {process.returncode}:\n{server.log()[-6000:]}")
        try:
            status, _ = server.get("/object_info", timeout=5)
            if status == 200:
                return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    server.stop()
    raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{server.log()[-6000:]}")
