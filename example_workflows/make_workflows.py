"""Writes the example workflows: one UI workflow per task (this folder, shown in ComfyUI's template
browser) and the same graph in API format (api/, for POST /prompt).

    python example_workflows/make_workflows.py

Widget order and defaults come from the pack's own INPUT_TYPES, so the files follow the nodes.
Every workflow loads the model named CHECKPOINT from models/unidiff/ and its inputs with
UniDiff Example Image (files in inputs/), so it runs as-is on a fresh ComfyUI with the pack installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PACK = os.path.dirname(HERE)
CHECKPOINT = "OneDiffusion"
MINI_CHECKPOINT = "UniDiff-Mini"  # models/UniDiff-Mini, listed by the Loader where it ships
MINI_LORA = "UniDiff-Mini-teal.safetensors"  # models/loras/ of the pack (python -m training.lora_demo --publish)
MMGEN_CHECKPOINT = "MMGen"  # models/unidiff/MMGen: `python -m unidiff_core convert 0600000.pt ...` (or the .pt)
PACK_ID, PACK_VERSION = "comfyui-unidiff", "0.1.0"

# Core ComfyUI nodes the workflows use: (inputs [(name, type, widget default or None for a socket)], outputs).
CORE = {  # checked against a real server's /object_info by tests/realhost
    "SaveImage": ([("images", "IMAGE", None), ("filename_prefix", "STRING", "ComfyUI")], []),
    "PreviewImage": ([("images", "IMAGE", None)], []),
    "MaskToImage": ([("mask", "MASK", None)], [("IMAGE", "IMAGE")]),
    "PreviewAny": ([("source", "*", None)], []),
}
CORE_TITLES = {"SaveImage": "Save Image", "PreviewImage": "Preview Image", "MaskToImage": "Convert Mask to Image",
               "PreviewAny": "Preview Any"}
SIZES = {"UniDiffLoader": [320, 130], "UniDiffTextEncode": [400, 330], "UniDiffSampler": [320, 280],
         "UniDiffLayoutBoxes": [400, 600], "UniDiffReferenceImages": [360, 420], "SaveImage": [320, 330],
         "PreviewImage": [300, 300], "PreviewAny": [300, 160]}


def load_pack(name: str = "comfyui_unidiff"):
    """Import the pack as a package (relative imports work as inside ComfyUI)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(PACK, "__init__.py"),
                                                  submodule_search_locations=[PACK])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def node_spec(class_type: str, mappings) -> tuple[list, list]:
    """([(name, type, is_widget, default, seed_like)], [(name, type)]) of a pack or core node."""
    if class_type in CORE:
        inputs, outputs = CORE[class_type]
        return [(n, t, d is not None, d, False) for n, t, d in inputs], outputs
    cls = mappings[class_type]
    spec = cls.INPUT_TYPES()
    inputs = []
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
            if isinstance(kind, list):
                inputs.append((name, "COMBO", True, opts.get("default", kind[0] if kind else None), False))
            elif kind in WIDGET_TYPES and not opts.get("forceInput"):
                seed = kind == "INT" and (name in ("seed", "noise_seed") or opts.get("control_after_generate"))
                inputs.append((name, kind, True, opts.get("default"), bool(seed)))
            else:
                inputs.append((name, kind, False, None, False))
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    return inputs, list(zip(names, cls.RETURN_TYPES))


class Out:
    def __init__(self, node, slot):
        self.node, self.slot = node, slot

    @property
    def type(self):
        return self.node.outputs[self.slot][1]


class Node:
    def __init__(self, graph, nid, class_type, values):
        self.graph, self.id, self.type = graph, nid, class_type
        self.inputs, self.outputs = node_spec(class_type, graph.mappings)
        self.values = values

    def __getitem__(self, name) -> Out:
        for i, (n, _) in enumerate(self.outputs):
            if n == name:
                return Out(self, i)
        raise KeyError(f"{self.type} has no output {name!r}")


class Graph:
    def __init__(self, name: str, mappings, display_names=None):
        self.name, self.mappings, self.nodes = name, mappings, []
        self.display_names = {**CORE_TITLES, **(display_names or {})}

    def add(self, class_type: str, **values) -> Node:
        node = Node(self, len(self.nodes) + 1, class_type, values)
        known = {n for n, *_ in node.inputs}
        unknown = set(values) - known
        if unknown:
            raise KeyError(f"{self.name}: {class_type} has no input(s) {sorted(unknown)}")
        self.nodes.append(node)
        return node

    # ---------------------------------------------------------------- common pieces
    def loader(self, ckpt_name: str = CHECKPOINT):
        return self.add("UniDiffLoader", ckpt_name=ckpt_name)["model"]

    def text(self, task, prompt="", **kw):
        return self.add("UniDiffTextEncode", task=task, prompt=prompt, **kw)["text"]

    def example(self, image):
        return self.add("UniDiffExampleImage", image=image)

    def save(self, image: Out, suffix: str = ""):
        self.add("SaveImage", images=image, filename_prefix=f"UniDiff/{self.name}{suffix}")

    # ---------------------------------------------------------------- serialisation
    def _links(self):
        """(id, source node, output slot, target node, socket slot, type); socket slots count only the
        node's socket inputs (widgets are not in a UI node's `inputs`)."""
        links = []
        for node in self.nodes:
            sockets = [name for name, _typ, is_widget, *_rest in node.inputs if not is_widget]
            for slot, name in enumerate(sockets):
                value = node.values.get(name)
                if isinstance(value, Out):
                    links.append((len(links) + 1, value.node, value.slot, node, slot, value.type))
        return links

    def _order(self):
        depth = {}

        def d(node):
            if node.id not in depth:
                ups = [v.node for v in node.values.values() if isinstance(v, Out)]
                depth[node.id] = 1 + max((d(u) for u in ups), default=-1)
            return depth[node.id]

        for node in self.nodes:
            d(node)
        return depth

    def widget_values(self, node) -> list:
        values = []
        for name, typ, is_widget, default, seed in node.inputs:
            if not is_widget:
                continue
            value = node.values.get(name, default)
            if value is None:
                raise ValueError(f"{self.name}: {node.type}.{name} needs a value")
            values.append(value)
            if seed:
                values.append("fixed")
        return values

    def ui(self) -> dict:
        links = self._links()
        depth = self._order()
        rows = {}
        order = {n.id: i for i, n in enumerate(sorted(self.nodes, key=lambda n: (depth[n.id], n.id)))}
        sizes = {n.id: SIZES.get(n.type, [320, 160 if n.type.startswith("UniDiffDecode") else 120]) for n in self.nodes}
        widths = [max((sizes[n.id][0] for n in self.nodes if depth[n.id] == c), default=0)
                  for c in range(max(depth.values()) + 1)]
        column_x = [40 + sum(w + 50 for w in widths[:c]) for c in range(len(widths))]
        out_nodes = []
        for node in self.nodes:
            col = depth[node.id]
            size = sizes[node.id]
            y = rows.get(col, 60)
            rows[col] = y + size[1] + 60
            inputs = []
            for slot, (name, typ) in enumerate((n, t) for n, t, is_widget, *_ in node.inputs if not is_widget):
                link = next((lk[0] for lk in links if lk[3] is node and lk[4] == slot), None)
                inputs.append({"name": name, "type": typ, "link": link})
            outputs = []
            for slot, (name, typ) in enumerate(node.outputs):
                ids = [lk[0] for lk in links if lk[1] is node and lk[2] == slot]
                outputs.append({"name": name, "type": typ, "links": ids, "slot_index": slot})
            props = {"Node name for S&R": node.type}
            if node.type not in CORE:
                props.update({"cnr_id": PACK_ID, "ver": PACK_VERSION})
            out_nodes.append({"id": node.id, "type": node.type, "pos": [column_x[col], y], "size": size,
                              "flags": {}, "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                              "properties": props, "widgets_values": self.widget_values(node)})
        return {"id": _uuid(self.name), "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(links),
                "nodes": out_nodes,
                "links": [[lid, a.id, s_a, b.id, s_b, typ] for lid, a, s_a, b, s_b, typ in links],
                "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}

    def api(self) -> dict:
        prompt = {}
        for node in self.nodes:
            inputs = {}
            for name, typ, is_widget, default, seed in node.inputs:
                value = node.values.get(name, default if is_widget else None)
                if isinstance(value, Out):
                    inputs[name] = [str(value.node.id), value.slot]
                elif is_widget:
                    inputs[name] = value
            title = self.display_names.get(node.type, node.type)
            prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": title}}
        return prompt


def _uuid(name: str) -> str:
    import hashlib

    h = hashlib.sha1(f"comfyui-unidiff/{name}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


# ------------------------------------------------------------------------------------ the workflows
def sampler(g, model, text, frames=None, steps=50, guidance=4.0, width=0, height=0, **kw):
    values = dict(model=model, text=text, seed=0, steps=steps, guidance=guidance, width=width, height=height, **kw)
    if frames is not None:
        values["frames"] = frames
    return g.add("UniDiffSampler", **values)["latents"]


def decode_images(g, model, latents, output="images", suffix=""):
    g.save(g.add("UniDiffDecodeImages", model=model, latents=latents)[output], suffix)


def photo_to_map(task, caption=""):
    def build(g):
        model = g.loader()
        frames = g.add("UniDiffImageFrame", image=g.example("garden.png")["image"])["frames"]
        decode_images(g, model, sampler(g, model, g.text(task, caption), frames))
    return build


def map_to_image(task, image, map_type, caption, labels="", **map_kw):
    def build(g):
        model = g.loader()
        cond = g.add("UniDiffConditionMap", image=g.example(image)["image"], map_type=map_type, **map_kw)
        g.add("PreviewImage", images=cond["map"])
        decode_images(g, model, sampler(g, model, g.text(task, caption, labels=labels), cond["frames"]))
    return build


GARDEN = "a sunny garden with a shiny red ball and a blue wooden box on the green lawn, photo"


def text2image(g):
    model = g.loader()
    text = g.text("text2image", "a photo of a small tabby cat sitting on a wooden table next to a window, soft "
                                "morning light, detailed fur, shallow depth of field")
    decode_images(g, model, sampler(g, model, text, width=1024, height=1024))


def inpainting(g):
    model = g.loader()
    src = g.example("garden_inpaint.png")
    inpaint = g.add("UniDiffInpaintFrame", image=src["image"], mask=src["mask"])
    g.add("PreviewImage", images=inpaint["condition"])
    decode_images(g, model, sampler(g, model, g.text("inpainting", "a green apple lying on the lawn"),
                                    inpaint["frames"]), output="composite")


def deblurring(g):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example("garden_blurred.png")["image"])["frames"]
    decode_images(g, model, sampler(g, model, g.text("deblurring", GARDEN), frames))


def image_editing(g):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example("garden.png")["image"])["frames"]
    decode_images(g, model, sampler(g, model, g.text("image_editing", "make the ball yellow"), frames,
                                    steps=60, guidance=3.2))


def faceid(g):
    model = g.loader()
    refs = g.add("UniDiffReferenceImages", image_1=g.example("face_smiling.png")["image"],
                 image_2=g.example("face_profile.png")["image"],
                 caption_1="a young woman with brown shoulder-length hair and a pink shirt, smiling, plain "
                           "background",
                 caption_2="the same young woman with brown hair in a blue shirt, neutral expression")
    text = g.text("faceid", "a young woman with brown shoulder-length hair reading a book in a cosy cafe, warm "
                            "light, photo")
    decode_images(g, model, sampler(g, model, text, refs["frames"], steps=75))


def subject_driven(g):
    model = g.loader()
    refs = g.add("UniDiffReferenceImages", image_1=g.example("robot.png")["image"], subject="toy robot",
                 caption_1="a red and blue toy robot with yellow eyes standing on a white background")
    text = g.text("subject_driven", "the toy robot standing on a sandy beach at sunset")
    decode_images(g, model, sampler(g, model, text, refs["frames"], steps=70, width=512, height=512))


def image2depth(g):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example("garden.png")["image"])["frames"]
    depth = g.add("UniDiffDecodeDepth", model=model, latents=sampler(g, model, g.text("image2depth"), frames))
    g.save(depth["depth"])
    g.save(depth["depth_color"], "_color")
    g.add("PreviewImage", images=g.add("MaskToImage", mask=depth["depth_map"])["IMAGE"])


def image2semanticmap(g):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example("garden.png")["image"])["frames"]
    latents = sampler(g, model, g.text("image2semanticmap", labels="ball, grass, box"), frames)
    seg = g.add("UniDiffDecodeSegmentation", model=model, latents=latents)
    g.save(seg["overlay"])
    g.save(g.add("MaskToImage", mask=seg["masks"])["IMAGE"], "_masks")
    g.add("PreviewAny", source=seg["labels"])


def image2boundingbox(g):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example("garden.png")["image"])["frames"]
    latents = sampler(g, model, g.text("image2boundingbox", labels="ball, box"), frames)
    boxes = g.add("UniDiffDecodeBoxes", model=model, latents=latents)
    g.save(boxes["overlay"])
    g.save(g.add("MaskToImage", mask=boxes["masks"])["IMAGE"], "_masks")
    g.add("PreviewAny", source=boxes["boxes"])


def box_text(boxes) -> str:
    """One box per line, as the box editor (js/unidiff_layout_boxes.js) writes the boxes widget."""
    lines = [f'  {{"label": {json.dumps(label)}, "box": [{", ".join(str(v) for v in box)}]}}' for label, box in boxes]
    return "[\n" + ",\n".join(lines) + "\n]"


def boundingbox2image(g):
    model = g.loader()
    layout = g.add("UniDiffLayoutBoxes", width=512, height=512, boxes=box_text([
        ("red ball", [0.52, 0.45, 0.9, 0.85]), ("blue box", [0.08, 0.4, 0.45, 0.8])]))
    g.add("PreviewImage", images=layout["box_map"])
    text = g.text("boundingbox2image", "a red ball and a blue box on a lawn, photo")
    decode_images(g, model, sampler(g, model, text, layout["frames"], width=512, height=512))


def image2multiview(g):
    model = g.loader()
    cams = g.add("UniDiffMultiViewCameras", images=g.example("cube_front.png")["image"],
                 azimuths="0, 20, 40, 60", elevations="0, 0, 0, 0")
    latents = sampler(g, model, g.text("image2multiview", "a cube with red, blue and grey faces"), cams["frames"],
                      steps=60, width=512, height=512)
    views = g.add("UniDiffDecodeMultiView", model=model, latents=latents)
    g.save(views["views"])


def text2multiview(g):
    model = g.loader()
    cams = g.add("UniDiffMultiViewCameras", azimuths="0, 30, 60, 90", elevations="0, 10, 15, 20")
    latents = sampler(g, model, g.text("text2multiview", "a cute ceramic owl figurine, studio lighting"),
                      cams["frames"], steps=60, width=512, height=512)
    g.save(g.add("UniDiffDecodeMultiView", model=model, latents=latents)["views"])


def camera_estimation(g):
    model = g.loader()
    first = g.add("UniDiffImageFrame", image=g.example("cube_front.png")["image"])["frames"]
    both = g.add("UniDiffImageFrame", image=g.example("cube_side.png")["image"], frames=first)["frames"]
    cams = g.add("UniDiffMultiViewCameras", frames=both, azimuths="0, none", elevations="0, none")
    latents = sampler(g, model, g.text("camera_estimation"), cams["frames"], steps=60, width=512, height=512)
    g.add("PreviewAny", source=g.add("UniDiffDecodeCameras", latents=latents)["cameras"])


def custom_image_and_depth(g):
    """Free-form frames: an image and its depth map generated together from text (zero-shot)."""
    model = g.loader()
    image = g.add("UniDiffImageFrame", what="image")["frames"]
    both = g.add("UniDiffImageFrame", what="depth", frames=image)["frames"]
    text = g.text("custom", "[[depth2image]] a cosy living room with a green sofa and a wooden coffee table")
    latents = sampler(g, model, text, both, width=512, height=512)
    g.save(g.add("UniDiffDecodeImages", model=model, latents=latents)["images"])
    g.save(g.add("UniDiffDecodeDepth", model=model, latents=latents)["depth_color"], "_depth")


def text2image_lora(g):
    """The same prompt with and without a LoRA: Mini never saw the colour word "teal"; its teal LoRA did."""
    model = g.loader(MINI_CHECKPOINT)
    tuned = g.add("UniDiffLoRA", model=model, lora_name=MINI_LORA, strength=1.0)["model"]
    text = g.text("text2image", "a large teal circle in the centre on a white background")
    for which, suffix in ((model, "_base"), (tuned, "_lora")):
        decode_images(g, which, sampler(g, which, text, steps=20, guidance=2.5), suffix=suffix)


def mmgen(task, image=None, modality=None, class_label="none", guidance=1.0):
    """MMGen: a class (category) or one given modality -> all four modalities, 256x256, the reference's
    sampler at 250 steps."""
    def build(g):
        model = g.loader(MMGEN_CHECKPOINT)
        spec = g.add("UniDiffMMGenTask", task=task, class_label=class_label)["task"]
        frames = None
        if image is not None:
            frames = g.add("UniDiffMMGenFrame", image=g.example(image)["image"], modality=modality)["frames"]
        latents = sampler(g, model, spec, frames, steps=250, guidance=guidance)
        out = g.add("UniDiffMMGenDecode", model=model, latents=latents)
        for name in ("rgb", "depth", "normal", "segmentation"):
            g.save(out[name], f"_{name}")
        g.add("PreviewImage", images=g.add("MaskToImage", mask=out["region_mask"])["IMAGE"])
    return build


WORKFLOWS = {
    "text2image": text2image,
    "inpainting": inpainting,
    "deblurring": deblurring,
    "image_editing": image_editing,
    "faceid": faceid,
    "subject_driven": subject_driven,
    "depth2image": map_to_image("depth2image", "garden_depth.png", "depth", GARDEN),
    "image2depth": image2depth,
    "canny2image": map_to_image("canny2image", "garden.png", "canny", GARDEN, extract_canny=True),
    "image2canny": photo_to_map("image2canny"),
    "hed2image": map_to_image("hed2image", "garden_hed.png", "hed", GARDEN),
    "image2hed": photo_to_map("image2hed"),
    "pose2image": map_to_image("pose2image", "pose.png", "pose",
                               "a dancer in a red dress on a stage, full body, photo"),
    "image2pose": photo_to_map("image2pose"),
    "semanticmap2image": map_to_image("semanticmap2image", "garden_semantic.png", "semantic_map", GARDEN,
                                      labels="ball, grass, box"),
    "image2semanticmap": image2semanticmap,
    "boundingbox2image": boundingbox2image,
    "image2boundingbox": image2boundingbox,
    "image2multiview": image2multiview,
    "text2multiview": text2multiview,
    "camera_estimation": camera_estimation,
    "custom_image_and_depth": custom_image_and_depth,
    "text2image_lora": text2image_lora,
    "mmgen_category": mmgen("category", class_label="golden retriever"),
    "mmgen_rgb2x": mmgen("rgb2x", "garden.png", "rgb"),
    "mmgen_depth2x": mmgen("depth2x", "garden_depth.png", "depth", guidance=1.8),
    "mmgen_normal2x": mmgen("normal2x", "garden_normal.png", "normal", guidance=1.8),
    "mmgen_mask2x": mmgen("mask2x", "garden_semantic.png", "mask", guidance=1.8),
}


def build(name: str, pack=None) -> Graph:
    pack = pack or load_pack()
    g = Graph(name, pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)
    WORKFLOWS[name](g)
    return g


def main():
    pack = load_pack()
    os.makedirs(os.path.join(HERE, "api"), exist_ok=True)
    for name in WORKFLOWS:
        g = build(name, pack)
        with open(os.path.join(HERE, f"{name}.json"), "w") as f:
            json.dump(g.ui(), f, indent=1)
            f.write("\n")
        with open(os.path.join(HERE, "api", f"{name}.json"), "w") as f:
            json.dump(g.api(), f, indent=1)
            f.write("\n")
        print(name, len(g.nodes), "nodes")


if __name__ == "__main__":
    main()
