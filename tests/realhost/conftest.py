"""The real-host tests import comfy_server.py from this folder; their `comfy` fixture (a real ComfyUI with
this pack) is in tests/conftest.py, shared with tests/browser/."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
