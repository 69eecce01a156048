// ComfyUI-UniDiff: the UniDiff Example Image node shows its picture in the graph, as Load Image does.
//
// The pictures live in the pack's example_workflows/inputs/ folder, which ComfyUI serves (with the
// workflow templates) at /api/workflow_templates/<pack folder>/inputs/<name>. /view cannot be used:
// it serves only ComfyUI's input/output/temp folders. Setting node.imgs is what the frontend's own
// preview widget draws; the preview is never serialised.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_CLASS = "UniDiffExampleImage";
// This file is served at /extensions/<pack folder>/unidiff_example_image.js.
const PACK_FOLDER = decodeURIComponent(new URL(import.meta.url).pathname.split("/extensions/")[1].split("/")[0]);

export function exampleImageURL(name) {
  // Encoded one folder level at a time: 'mini/x.png' keeps its slash (the static route finds no '%2F' file).
  return api.apiURL(`/workflow_templates/${encodeURIComponent(PACK_FOLDER)}/inputs/${name.split("/").map(encodeURIComponent).join("/")}`);
}

function showExample(node) {
  const widget = node.widgets?.find((w) => w.name === "image");
  const name = widget?.value;
  if (!name || node.__unidiffExampleShown === name) return;
  node.__unidiffExampleShown = name;
  const img = new Image();
  img.onload = () => {
    if (widget.value !== name) return; // changed again while loading
    node.imageIndex = null;
    node.imgs = [img];
    node.graph?.setDirtyCanvas(true, true);
  };
  img.onerror = () => {
    if (widget.value === name) node.imgs = undefined;
    console.warn(`[UniDiff] example image ${name} could not be loaded`);
  };
  img.src = exampleImageURL(name);
}

app.registerExtension({
  name: "unidiff.example_image",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_CLASS) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      const widget = this.widgets?.find((w) => w.name === "image");
      if (widget) {
        const callback = widget.callback;
        const node = this;
        widget.callback = function () {
          const out = callback?.apply(this, arguments);
          showExample(node);
          return out;
        };
      }
      requestAnimationFrame(() => showExample(this));
      return r;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const r = onConfigure?.apply(this, arguments);
      // widgets_values were just restored from a workflow: show that picture.
      requestAnimationFrame(() => showExample(this));
      return r;
    };
  },
});
