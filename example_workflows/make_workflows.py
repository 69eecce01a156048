"""Writes the example workflows: one UI workflow per task (this folder, shown in ComfyUI's template
browser) and the same graph in API format (api/, for POST /prompt).

    python example_workflows/make_workflows.py

Widget order and defaults come from the pack's own INPUT_TYPES, so the files follow the nodes.
Every workflow loads the model named CHECKPOINT from models/unidiff/ and its inputs with
UniDiff Example Image (files in inputs/), so it runs as-is on a fresh ComfyUI with the pack installed.
Each OneDiffusion workflow also has a UniDiff-Mini twin, mini_<name>: the same builder on a held-out
scene of the training data (mini_samples.py), with the evaluator's settings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PACK = os.path.dirname(HERE)
CHECKPOINT = "OneDiffusion"
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
    """One workflow. checkpoint: the Loader's; run: sampler settings that override the builder's (the Mini
    twins' steps, guidance and automatic size); text: extra Text Encode widgets; raw_frames: also save
    the generated frames as drawn."""

    def __init__(self, name: str, mappings, display_names=None, checkpoint: str = CHECKPOINT, run=None, text=None,
                 raw_frames: bool = False):
        self.name, self.mappings, self.nodes = name, mappings, []
        self.display_names = {**CORE_TITLES, **(display_names or {})}
        self.checkpoint, self.raw_frames = checkpoint, raw_frames
        self.run, self.text_kw = dict(run or {}), dict(text or {})

    def add(self, class_type: str, **values) -> Node:
        node = Node(self, len(self.nodes) + 1, class_type, values)
        known = {n for n, *_ in node.inputs}
        unknown = set(values) - known
        if unknown:
            raise KeyError(f"{self.name}: {class_type} has no input(s) {sorted(unknown)}")
        self.nodes.append(node)
        return node

    # ---------------------------------------------------------------- common pieces
    def loader(self, ckpt_name: str | None = None):
        return self.add("UniDiffLoader", ckpt_name=ckpt_name or self.checkpoint)["model"]

    def text(self, task, prompt="", **kw):
        return self.add("UniDiffTextEncode", task=task, prompt=prompt, **{**self.text_kw, **kw})["text"]

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
# Each builder takes its inputs (pictures, captions, labels, cameras) as arguments whose defaults are the
# OneDiffusion example's; the UniDiff-Mini twins call the same builders with a held-out scene's inputs
# (mini_samples.py), and their Graph overrides the sampler settings and adds the raw generated frames.
def sampler(g, model, text, frames=None, steps=50, guidance=4.0, width=0, height=0, **kw):
    values = dict(model=model, text=text, seed=0, steps=steps, guidance=guidance, width=width, height=height, **kw)
    values.update(g.run)
    if frames is not None:
        values["frames"] = frames
    return g.add("UniDiffSampler", **values)["latents"]


def decode_images(g, model, latents, output="images", suffix=""):
    g.save(g.add("UniDiffDecodeImages", model=model, latents=latents)[output], suffix)


def raw_frames(g, model, latents):
    """Mini twins: also save the generated frames as drawn (what the evaluator scores)."""
    if g.raw_frames:
        decode_images(g, model, latents, suffix="_frames")


def photo_to_map(task):
    def build(g, image="garden.png", caption=""):
        model = g.loader()
        frames = g.add("UniDiffImageFrame", image=g.example(image)["image"])["frames"]
        decode_images(g, model, sampler(g, model, g.text(task, caption), frames))
    return build


def map_to_image(task, image, map_type, caption, labels="", **map_kw):
    def build(g, image=image, caption=caption, labels=labels, **kw):
        model = g.loader()
        cond = g.add("UniDiffConditionMap", image=g.example(image)["image"], map_type=map_type, **{**map_kw, **kw})
        g.add("PreviewImage", images=cond["map"])
        decode_images(g, model, sampler(g, model, g.text(task, caption, labels=labels), cond["frames"]))
    return build


GARDEN = "a sunny garden with a shiny red ball and a blue wooden box on the green lawn, photo"
CAT = ("a photo of a small tabby cat sitting on a wooden table next to a window, soft morning light, detailed fur, "
       "shallow depth of field")


def text2image(g, caption=CAT):
    model = g.loader()
    decode_images(g, model, sampler(g, model, g.text("text2image", caption), width=1024, height=1024))


def inpainting(g, image="garden_inpaint.png", caption="a green apple lying on the lawn", output="composite"):
    model = g.loader()
    src = g.example(image)
    inpaint = g.add("UniDiffInpaintFrame", image=src["image"], mask=src["mask"])
    g.add("PreviewImage", images=inpaint["condition"])
    decode_images(g, model, sampler(g, model, g.text("inpainting", caption), inpaint["frames"]), output=output)


def deblurring(g, image="garden_blurred.png", caption=GARDEN):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example(image)["image"])["frames"]
    decode_images(g, model, sampler(g, model, g.text("deblurring", caption), frames))


def image_editing(g, image="garden.png", instruction="make the ball yellow"):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example(image)["image"])["frames"]
    decode_images(g, model, sampler(g, model, g.text("image_editing", instruction), frames, steps=60, guidance=3.2))


FACES = (("face_smiling.png", "a young woman with brown shoulder-length hair and a pink shirt, smiling, plain "
                              "background"),
         ("face_profile.png", "the same young woman with brown hair in a blue shirt, neutral expression"))


def faceid(g, references=FACES, caption="a young woman with brown shoulder-length hair reading a book in a cosy "
                                        "cafe, warm light, photo"):
    model = g.loader()
    refs = {}
    for n, (image, ref_caption) in enumerate(references, 1):
        refs.update({f"image_{n}": g.example(image)["image"], f"caption_{n}": ref_caption})
    refs = g.add("UniDiffReferenceImages", **refs)
    decode_images(g, model, sampler(g, model, g.text("faceid", caption), refs["frames"], steps=75))


def subject_driven(g, image="robot.png", subject="toy robot",
                   reference_caption="a red and blue toy robot with yellow eyes standing on a white background",
                   caption="the toy robot standing on a sandy beach at sunset"):
    model = g.loader()
    refs = g.add("UniDiffReferenceImages", image_1=g.example(image)["image"], subject=subject,
                 caption_1=reference_caption)
    text = g.text("subject_driven", caption)
    decode_images(g, model, sampler(g, model, text, refs["frames"], steps=70, width=512, height=512))


def image2depth(g, image="garden.png", caption=""):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example(image)["image"])["frames"]
    latents = sampler(g, model, g.text("image2depth", caption), frames)
    depth = g.add("UniDiffDecodeDepth", model=model, latents=latents)
    g.save(depth["depth"])
    g.save(depth["depth_color"], "_color")
    g.add("PreviewImage", images=g.add("MaskToImage", mask=depth["depth_map"])["IMAGE"])
    raw_frames(g, model, latents)


def image2semanticmap(g, image="garden.png", labels="ball, grass, box", caption=""):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example(image)["image"])["frames"]
    latents = sampler(g, model, g.text("image2semanticmap", caption, labels=labels), frames)
    seg = g.add("UniDiffDecodeSegmentation", model=model, latents=latents)
    g.save(seg["overlay"])
    g.save(g.add("MaskToImage", mask=seg["masks"])["IMAGE"], "_masks")
    g.add("PreviewAny", source=seg["labels"])
    raw_frames(g, model, latents)


def image2boundingbox(g, image="garden.png", labels="ball, box", caption=""):
    model = g.loader()
    frames = g.add("UniDiffImageFrame", image=g.example(image)["image"])["frames"]
    latents = sampler(g, model, g.text("image2boundingbox", caption, labels=labels), frames)
    boxes = g.add("UniDiffDecodeBoxes", model=model, latents=latents)
    g.save(boxes["overlay"])
    g.save(g.add("MaskToImage", mask=boxes["masks"])["IMAGE"], "_masks")
    g.add("PreviewAny", source=boxes["boxes"])
    raw_frames(g, model, latents)


def box_text(boxes) -> str:
    """One box per line, as the box editor (js/unidiff_layout_boxes.js) writes the boxes widget."""
    lines = [f'  {{"label": {json.dumps(label)}, "box": [{", ".join(str(v) for v in box)}]}}' for label, box in boxes]
    return "[\n" + ",\n".join(lines) + "\n]"


LAYOUT = (("red ball", [0.52, 0.45, 0.9, 0.85]), ("blue box", [0.08, 0.4, 0.45, 0.8]))


def boundingbox2image(g, caption="a red ball and a blue box on a lawn, photo", boxes=LAYOUT, box_map=None, labels=""):
    """Boxes drawn in UniDiff Layout Boxes; or (`box_map`, a picture) a given box map named by `labels`."""
    if box_map is not None:
        return map_to_image("boundingbox2image", box_map, "box_map", caption, labels)(g)
    model = g.loader()
    layout = g.add("UniDiffLayoutBoxes", width=512, height=512, boxes=box_text(boxes))
    g.add("PreviewImage", images=layout["box_map"])
    text = g.text("boundingbox2image", caption)
    decode_images(g, model, sampler(g, model, text, layout["frames"], width=512, height=512))


def image2multiview(g, image="cube_front.png", azimuths="0, 20, 40, 60", elevations="0, 0, 0, 0",
                    caption="a cube with red, blue and grey faces"):
    model = g.loader()
    cams = g.add("UniDiffMultiViewCameras", images=g.example(image)["image"], azimuths=azimuths, elevations=elevations)
    latents = sampler(g, model, g.text("image2multiview", caption), cams["frames"], steps=60, width=512, height=512)
    views = g.add("UniDiffDecodeMultiView", model=model, latents=latents)
    g.save(views["views"])


def text2multiview(g, caption="a cute ceramic owl figurine, studio lighting", azimuths="0, 30, 60, 90",
                   elevations="0, 10, 15, 20"):
    model = g.loader()
    cams = g.add("UniDiffMultiViewCameras", azimuths=azimuths, elevations=elevations)
    latents = sampler(g, model, g.text("text2multiview", caption), cams["frames"], steps=60, width=512, height=512)
    g.save(g.add("UniDiffDecodeMultiView", model=model, latents=latents)["views"])


def camera_estimation(g, images=("cube_front.png", "cube_side.png")):
    model = g.loader()
    first = g.add("UniDiffImageFrame", image=g.example(images[0])["image"])["frames"]
    both = g.add("UniDiffImageFrame", image=g.example(images[1])["image"], frames=first)["frames"]
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
    import mini_samples as ms  # lazily: it imports training/

    model = g.loader(ms.CHECKPOINT)
    tuned = g.add("UniDiffLoRA", model=model, lora_name=MINI_LORA, strength=1.0)["model"]
    text = g.text("text2image", "a large teal circle in the centre on a white background")
    for which, suffix in ((model, "_base"), (tuned, "_lora")):
        decode_images(g, which, sampler(g, which, text, steps=ms.STEPS, guidance=ms.guidance("mini_text2image")),
                      suffix=suffix)


def custom_depth_and_semantic(g, image, prompt):
    """Free-form frames: a given photo, then its depth map and semantic map generated together."""
    model = g.loader()
    photo = g.add("UniDiffImageFrame", what="image", image=g.example(image)["image"])["frames"]
    depth = g.add("UniDiffImageFrame", what="depth", frames=photo)["frames"]
    both = g.add("UniDiffImageFrame", what="semantic_map", frames=depth)["frames"]
    latents = sampler(g, model, g.text("custom", prompt), both)
    g.save(g.add("UniDiffDecodeDepth", model=model, latents=latents)["depth_color"], "_depth")
    g.save(g.add("UniDiffDecodeSegmentation", model=model, latents=latents)["overlay"], "_semantic")
    raw_frames(g, model, latents)


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
    "mmgen_category": mmgen("category", class_label="golden retriever"),
    "mmgen_rgb2x": mmgen("rgb2x", "garden.png", "rgb"),
    "mmgen_depth2x": mmgen("depth2x", "garden_depth.png", "depth", guidance=1.8),
    "mmgen_normal2x": mmgen("normal2x", "garden_normal.png", "normal", guidance=1.8),
    "mmgen_mask2x": mmgen("mask2x", "garden_semantic.png", "mask", guidance=1.8),
}


# Workflows of UniDiff-Mini that mirror no OneDiffusion example (so they have no twin).
MINI_ONLY = {"text2image_lora": text2image_lora}


# ------------------------------------------------------------------------------------ UniDiff-Mini twins
def mini_twin(twin: str):
    """(builder, its arguments) of a Mini twin: the OneDiffusion workflow's builder on a held-out scene."""
    import mini_samples as ms  # lazily, here and below: it imports training/ (the other workflows need none of it)

    original = ms.TWINS[twin][0]
    s, files = ms.sample(twin), [ms.input_name(f) for f in ms.given_images(twin)]
    req, text, labels = s.request, ms.caption(s), ms.labels_text(s.request.labels)
    if original == "text2image":
        return text2image, dict(caption=text)
    if original == "inpainting":
        return inpainting, dict(image=files[0], caption=text, output="images")  # the raw frame: what is scored
    if original == "deblurring":
        return deblurring, dict(image=files[0], caption=text)
    if original == "image_editing":
        return image_editing, dict(image=files[0], instruction=text)
    if original == "subject_driven":
        return subject_driven, dict(image=files[0], subject=s.truth["subject"].name,
                                    reference_caption=ms.reference_captions(s)[0], caption=text)
    if original == "faceid":
        return faceid, dict(references=tuple(zip(files, ms.reference_captions(s))), caption=text)
    if original == "boundingbox2image":
        return boundingbox2image, dict(caption=text, box_map=files[0], labels=labels)
    if original.endswith("2image"):
        return WORKFLOWS[original], dict(image=files[0], caption=text, labels=labels, extract_canny=False)
    if original in ("image2semanticmap", "image2boundingbox"):
        return WORKFLOWS[original], dict(image=files[0], labels=labels, caption=text)
    if original.startswith("image2") and original != "image2multiview":
        return WORKFLOWS[original], dict(image=files[0], caption=text)
    views = dict(azimuths=ms.numbers_text(v.azimuth for v in req.views or []),
                 elevations=ms.numbers_text(v.elevation for v in req.views or []))
    if original == "image2multiview":
        return image2multiview, dict(image=files[0], caption=text, **views)
    if original == "text2multiview":
        return text2multiview, dict(caption=text, **views)
    if original == "camera_estimation":
        return camera_estimation, dict(images=tuple(files))
    if original == "custom_image_and_depth":
        return custom_depth_and_semantic, dict(image=files[0], prompt=req.prompt)  # custom: verbatim
    raise KeyError(twin)


def build(name: str, pack=None) -> Graph:
    pack = pack or load_pack()
    if name in WORKFLOWS or name in MINI_ONLY:
        g = Graph(name, pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)
        {**WORKFLOWS, **MINI_ONLY}[name](g)
        return g
    import mini_samples as ms

    builder, kwargs = mini_twin(name)
    g = Graph(name, pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS, checkpoint=ms.CHECKPOINT,
              run=dict(steps=ms.STEPS, guidance=ms.guidance(name), width=0, height=0),
              text=dict(negative_prompt="", use_task_negative=False), raw_frames=True)
    builder(g, **kwargs)
    return g


def names() -> list[str]:
    """Every workflow: the OneDiffusion and MMGen examples, Mini's own, then the UniDiff-Mini twins."""
    import mini_samples as ms

    return list(WORKFLOWS) + list(MINI_ONLY) + list(ms.TWINS)


def main():
    pack = load_pack()
    os.makedirs(os.path.join(HERE, "api"), exist_ok=True)
    for name in names():
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
