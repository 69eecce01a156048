"""Installed into CI's ComfyUI venv only (never part of the pack).

The torchvision wheels on this machine's disk are CUDA builds: next to the CPU torch their compiled
operators cannot load. torchvision copes with that everywhere except two fake-kernel registrations
that name `torchvision::nms` / `qnms` at import time. When the compiled operators did not load, this
declares those two names (schema only: calling them still raises), so `import torchvision` works.
ComfyUI imports torchvision at startup but none of the nodes the tests run call its operators.
"""

import importlib.abc
import sys

_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_LIBRARIES = []  # a torch.library.Library must stay alive for its definitions to stay


class _DeclareAfterExtension(importlib.abc.MetaPathFinder):
    """Acts once, on the first torchvision module imported after torchvision.extension tried _C."""

    done = False

    def find_spec(self, name, path=None, target=None):
        if self.done or not name.startswith("torchvision.") or name in ("torchvision.extension",
                                                           "torchvision._internally_replaced_utils"):
            return None
        extension = sys.modules.get("torchvision.extension")
        if extension is None:
            return None
        self.done = True
        if not extension._has_ops():
            import torch

            library = torch.library.Library("torchvision", "DEF")
            for schema in _SCHEMAS:
                library.define(schema)
            _LIBRARIES.append(library)
        return None  # the normal finders import the module


sys.meta_path.insert(0, _DeclareAfterExtension())
