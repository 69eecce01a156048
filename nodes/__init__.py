"""ComfyUI node adapters over unidiff_core (filled in by the node modules)."""

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
