#!/usr/bin/env node
// Headless-Chromium check of the UniDiffLayoutBoxes box editor (js/unidiff_layout_boxes.js).
//
// Needs: a running ComfyUI with this pack loaded, Debian's /usr/bin/chromium and
// the npm package puppeteer-core (never the full puppeteer: it downloads a browser).
//
//   NODE_PATH=/tmp/unidiff-browser/node_modules \
//     node tests/browser/check_box_editor.js [URL] [--screenshot PATH]
//
// URL defaults to $COMFYUI_URL or http://127.0.0.1:8188/. Prints one JSON object
// ({ok, checks: [...], ...}) and exits 0 only when every check passed.
"use strict";

const puppeteer = require("puppeteer-core"); // -core: never downloads a browser

const args = process.argv.slice(2);
let url = process.env.COMFYUI_URL || "http://127.0.0.1:8188/";
let screenshot = null;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--screenshot") screenshot = args[++i];
  else url = args[i];
}
if (!url.endsWith("/")) url += "/";

const NODE_CLASS = "UniDiffLayoutBoxes";
const TOL = 0.02; // fraction of the canvas: a couple of pixels at any zoom
const W = 768, H = 512; // non-square on purpose: checks the aspect ratio mapping

const checks = [];
function check(name, ok, detail) {
  checks.push({ name, ok: !!ok, ...(detail === undefined ? {} : { detail }) });
  return !!ok;
}
const near = (a, b, tol = TOL) =>
  Array.isArray(a) && a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= tol);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const t0 = Date.now();
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu",
      "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--window-size=1600,1000"],
    defaultViewport: { width: 1600, height: 1000 },
  });
  const pageErrors = [];
  let result = {};
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => pageErrors.push(String(e && (e.stack || e.message) || e)));
    page.on("dialog", (d) => d.dismiss().catch(() => {})); // never block on alert/prompt

    await page.goto(url, { waitUntil: "networkidle2", timeout: 45000 });
    await page.waitForFunction(
      (cls) => window.app && window.app.graph && window.LiteGraph &&
        window.LiteGraph.registered_node_types && window.LiteGraph.registered_node_types[cls],
      { timeout: 30000 }, NODE_CLASS);
    const extensions = await page.evaluate(() => window.app.extensions.map((e) => e.name));
    check("extension registered", extensions.includes("unidiff.layout_boxes"));
    const frontendVersion = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ || null);

    // Close whatever first-run dialog the frontend may show (templates, release notes).
    await page.keyboard.press("Escape");
    await page.evaluate(() => document.querySelectorAll(".p-dialog-mask").forEach((m) => m.remove()));

    // A fresh graph holding one UniDiffLayoutBoxes node at a known place, zoom 1.
    const nodeId = await page.evaluate((cls, w, h) => {
      const app = window.app;
      app.graph.clear();
      const node = window.LiteGraph.createNode(cls);
      node.pos = [420, 140];
      app.graph.add(node);
      node.widgets.find((x) => x.name === "width").value = w;
      node.widgets.find((x) => x.name === "height").value = h;
      node.setSize([520, Math.max(node.size[1], 640)]);
      app.canvas.ds.scale = 1;
      app.canvas.ds.offset = [0, 0];
      app.graph.setDirtyCanvas(true, true);
      return node.id;
    }, NODE_CLASS, W, H);

    const state = () => page.evaluate((id) => {
      const node = window.app.graph.getNodeById(id);
      if (!node) return { nodeMissing: true };
      const ed = node.__unidiffBoxEditor;
      return { boxesText: node.widgets.find((w) => w.name === "boxes").value, editor: ed ? ed.state() : null };
    }, nodeId);

    // Wait until the DOM widget is laid out and the drawn area has a sane size.
    await page.waitForFunction((id) => {
      const ed = window.app.graph.getNodeById(id)?.__unidiffBoxEditor;
      if (!ed) return false;
      ed.draw();
      const r = ed.contentRectOnScreen();
      return r.width > 100 && r.height > 60;
    }, { timeout: 15000 }, nodeId);
    await sleep(300);
    let st = await state();
    check("editor widget attached", st.editor !== null);
    const rect = st.editor.rect;
    check("aspect ratio width:height", Math.abs(rect.width / rect.height - W / H) < 0.02,
      { rect, expected: W / H });
    const at = (fx, fy) => [rect.left + fx * rect.width, rect.top + fy * rect.height];

    // The point we drag from must really be the editor canvas (no dialog/menu on top).
    const hitTarget = await page.evaluate(([x, y]) => {
      const el = document.elementFromPoint(x, y);
      return el ? el.className || el.tagName : null;
    }, at(0.2, 0.25));
    check("editor canvas is under the pointer", String(hitTarget).includes("unidiff-layout-boxes-canvas"), hitTarget);

    async function drag(from, to, steps = 8) {
      await page.mouse.move(...from);
      await page.mouse.down();
      await page.mouse.move(...to, { steps });
      await page.mouse.up();
      await sleep(100);
    }
    const parse = (t) => { try { return JSON.parse(t); } catch (e) { return { parseError: String(e) }; } };

    // 1. draw a box, then type its label into the inline input that opens
    await drag(at(0.2, 0.25), at(0.6, 0.7));
    const labelOpen = await page.evaluate(() => document.activeElement?.className || "");
    check("label input opens after drawing", labelOpen.includes("unidiff-layout-boxes-label"), labelOpen);
    await page.keyboard.type("cat");
    await page.keyboard.press("Enter");
    await sleep(100);
    st = await state();
    let boxes = parse(st.boxesText);
    check("draw: one box written to the boxes widget",
      Array.isArray(boxes) && boxes.length === 1 && near(boxes[0].box, [0.2, 0.25, 0.6, 0.7]),
      st.boxesText);
    check("draw: label written", Array.isArray(boxes) && boxes[0]?.label === "cat", boxes?.[0]?.label);

    // 2. move it by (+0.1, +0.05)
    await drag(at(0.4, 0.475), at(0.5, 0.525));
    st = await state();
    boxes = parse(st.boxesText);
    check("move: box shifted", Array.isArray(boxes) && boxes.length === 1 &&
      near(boxes[0].box, [0.3, 0.3, 0.7, 0.75]), st.boxesText);

    // 3. resize with the bottom-right corner handle
    await drag(at(0.7, 0.75), at(0.85, 0.9));
    st = await state();
    boxes = parse(st.boxesText);
    check("resize: corner dragged", Array.isArray(boxes) && boxes.length === 1 &&
      near(boxes[0].box, [0.3, 0.3, 0.85, 0.9]), st.boxesText);

    // 3b. Shift+ArrowRight nudges the selected box by 10 px; the node survives the keys
    await page.keyboard.down("Shift"); await page.keyboard.press("ArrowRight"); await page.keyboard.up("Shift");
    await sleep(100);
    st = await state();
    boxes = parse(st.boxesText);
    const nudge = 10 / rect.width;
    check("arrow key nudges the selected box", Array.isArray(boxes) && boxes.length === 1 &&
      near(boxes[0].box, [0.3 + nudge, 0.3, 0.85 + nudge, 0.9], 0.002), st.boxesText);

    // 4. relabel by double-click
    await page.mouse.click(...at(0.5, 0.6), { count: 2 });
    await sleep(100);
    const relabelOpen = await page.evaluate(() => document.activeElement?.className || "");
    if (check("double-click opens the label input", relabelOpen.includes("unidiff-layout-boxes-label"), relabelOpen)) {
      await page.keyboard.down("Control"); await page.keyboard.press("a"); await page.keyboard.up("Control");
      await page.keyboard.type("a red cat");
      await page.keyboard.press("Enter");
      await sleep(100);
    }
    st = await state();
    boxes = parse(st.boxesText);
    check("relabel written", Array.isArray(boxes) && boxes[0]?.label === "a red cat", boxes?.[0]?.label);

    // 5. graphToPrompt / workflow serialisation carry the JSON, not the editor widget
    const ser = await page.evaluate(async (id) => {
      const app = window.app;
      const p = await app.graphToPrompt();
      const node = app.graph.getNodeById(id);
      return { apiNode: p.output[String(id)], wfNode: p.workflow.nodes.find((n) => n.id === id),
        text: node.widgets.find((w) => w.name === "boxes").value };
    }, nodeId);
    check("graphToPrompt carries the boxes JSON", ser.apiNode && ser.apiNode.inputs.boxes === ser.text &&
      parse(ser.apiNode.inputs.boxes)[0]?.label === "a red cat", ser.apiNode);
    check("API inputs are exactly boxes/width/height",
      ser.apiNode && JSON.stringify(Object.keys(ser.apiNode.inputs).sort()) === '["boxes","height","width"]' &&
      ser.apiNode.inputs.width === W && ser.apiNode.inputs.height === H, ser.apiNode && ser.apiNode.inputs);
    check("workflow widgets_values = [boxes, width, height]",
      ser.wfNode && Array.isArray(ser.wfNode.widgets_values) && ser.wfNode.widgets_values.length === 3 &&
      ser.wfNode.widgets_values[0] === ser.text && ser.wfNode.widgets_values[1] === W,
      ser.wfNode && ser.wfNode.widgets_values);

    // 6. hand edit of the text updates the canvas; malformed JSON is shown as invalid
    const setText = (t) => page.evaluate((id, text) => {
      const w = window.app.graph.getNodeById(id).widgets.find((x) => x.name === "boxes");
      const ta = w.inputEl;
      ta.value = text; // what typing does
      ta.dispatchEvent(new Event("input", { bubbles: true }));
    }, nodeId, t);
    await setText('[{"label": "dog", "box": [0.1, 0.1, 0.4, 0.5]}, {"label": "sun", "box": [0.6, 0.05, 0.9, 0.3]}]');
    await sleep(100);
    st = await state();
    check("hand edit: canvas follows the text", st.editor.valid && st.editor.boxes.length === 2 &&
      st.editor.boxes[1].label === "sun" && near(st.editor.boxes[0].box, [0.1, 0.1, 0.4, 0.5], 1e-9), st.editor);
    const errorsBefore = pageErrors.length;
    await setText('[{"label": "dog", "box": [0.1, 0.1');
    await sleep(100);
    await drag(at(0.5, 0.6), at(0.7, 0.8)); // must not overwrite the user's text
    st = await state();
    check("malformed JSON: shown invalid, text kept, no exception",
      st.editor.valid === false && /invalid JSON/.test(st.editor.error || "") &&
      st.boxesText === '[{"label": "dog", "box": [0.1, 0.1' && pageErrors.length === errorsBefore, st.editor);
    await setText('{"box": "nope"}');
    await sleep(50);
    st = await state();
    check("non-list JSON: shown invalid", st.editor.valid === false, st.editor.error);

    // 7. delete: select + Delete key (the node itself must survive), right-click, and the x button
    await setText('[{"label": "cat", "box": [0.3, 0.3, 0.7, 0.75]}]');
    await sleep(100);
    await page.mouse.click(...at(0.5, 0.5));
    await page.keyboard.press("Delete");
    await sleep(100);
    st = await state();
    check("delete key: boxes is []", !st.nodeMissing && st.boxesText === "[]", st.nodeMissing ? "node deleted!" : st.boxesText);
    await setText('[{"label": "a", "box": [0.1, 0.1, 0.3, 0.3]}, {"label": "b", "box": [0.5, 0.5, 0.9, 0.9]}]');
    await sleep(100);
    await page.mouse.click(...at(0.2, 0.2), { button: "right" });
    await sleep(100);
    st = await state();
    boxes = parse(st.boxesText);
    check("right-click deletes that box", Array.isArray(boxes) && boxes.length === 1 && boxes[0].label === "b", st.boxesText);
    const menuOpen = await page.evaluate(() => !!document.querySelector(".litecontextmenu"));
    check("no graph context menu on right-click", !menuOpen);
    await page.mouse.click(...at(0.7, 0.7)); // select b, then its x button (top-right, 8px inside)
    await sleep(50);
    await page.mouse.click(rect.left + 0.9 * rect.width - 20, rect.top + 0.5 * rect.height + 11);
    await sleep(100);
    st = await state();
    check("x button deletes", st.boxesText === "[]", st.boxesText);

    // 8. at most 20 boxes
    const twenty = JSON.stringify(Array.from({ length: 20 }, (_, i) =>
      ({ label: `b${i}`, box: [0.02 + 0.045 * i, 0.02, 0.05 + 0.045 * i, 0.08] })));
    await setText(twenty);
    await sleep(100);
    await drag(at(0.3, 0.4), at(0.6, 0.8));
    st = await state();
    boxes = parse(st.boxesText);
    check("21st box refused", Array.isArray(boxes) && boxes.length === 20, Array.isArray(boxes) ? boxes.length : st.boxesText);

    // 8b. zoomed graph canvas: the DOM widget is scaled, the mapping must follow
    await setText("[]");
    await page.evaluate(() => {
      const ds = window.app.canvas.ds;
      ds.scale = 1.25;
      ds.offset = [-120, -60];
      window.app.graph.setDirtyCanvas(true, true);
    });
    await sleep(400);
    st = await state();
    const zr = st.editor.rect;
    const zat = (fx, fy) => [zr.left + fx * zr.width, zr.top + fy * zr.height];
    await drag(zat(0.1, 0.15), zat(0.45, 0.55));
    await page.keyboard.press("Escape"); // close the label input without a label
    await sleep(100);
    st = await state();
    boxes = parse(st.boxesText);
    check("zoom 1.25: drawn box matches the drag", Math.abs(zr.width / rect.width - 1.25) < 0.02 &&
      Array.isArray(boxes) && boxes.length === 1 && near(boxes[0].box, [0.1, 0.15, 0.45, 0.55]) &&
      boxes[0].label === "", { zoomRect: zr, text: st.boxesText });
    await page.evaluate(() => {
      const ds = window.app.canvas.ds;
      ds.scale = 1;
      ds.offset = [0, 0];
      window.app.graph.setDirtyCanvas(true, true);
    });
    await sleep(300);

    // 9. background: a linked LoadImage preview is drawn behind the boxes
    const bg = await page.evaluate(async (id) => {
      const app = window.app;
      const c = document.createElement("canvas");
      c.width = 96; c.height = 64;
      const g = c.getContext("2d");
      g.fillStyle = "#3366cc"; g.fillRect(0, 0, 96, 64);
      const blob = await new Promise((r) => c.toBlob(r, "image/png"));
      const fd = new FormData();
      fd.append("image", new File([blob], "unidiff_box_editor_test.png", { type: "image/png" }));
      fd.append("overwrite", "true");
      // into ComfyUI's temp/ folder (emptied when the server starts and stops), not input/: the test
      // leaves no file behind. Load Image reads it as "<name> [temp]".
      fd.append("type", "temp");
      const resp = await fetch("/upload/image", { method: "POST", body: fd });
      if (!resp.ok) return { error: `upload ${resp.status}` };
      const uploaded = await resp.json();
      if (uploaded.type !== "temp") return { error: `uploaded to ${uploaded.type}, not temp` };
      const name = `${uploaded.name} [temp]`;
      const node = app.graph.getNodeById(id);
      node.widgets.find((w) => w.name === "boxes").value = "[]";
      const li = window.LiteGraph.createNode("LoadImage");
      li.pos = [40, 140];
      app.graph.add(li);
      const iw = li.widgets.find((w) => w.name === "image");
      if (!iw.options.values.includes(name)) iw.options.values.push(name);
      iw.value = name;
      iw.callback?.(name);
      li.connect(0, node, node.inputs.findIndex((i) => i.name === "image"));
      app.graph.setDirtyCanvas(true, true);
      return { name };
    }, nodeId);
    let bgOk = false;
    if (!bg.error) {
      bgOk = await page.waitForFunction((id) => {
        const ed = window.app.graph.getNodeById(id).__unidiffBoxEditor;
        ed.draw();
        return ed.bgSource === "image";
      }, { timeout: 10000 }, nodeId).then(() => true, () => false);
    }
    const pixel = await page.evaluate((id) => {
      const ed = window.app.graph.getNodeById(id).__unidiffBoxEditor;
      ed.draw();
      const r = ed.contentRect(), dpr = window.devicePixelRatio || 1;
      const d = ed.canvas.getContext("2d").getImageData(Math.round((r.x + r.w / 2) * dpr), Math.round((r.y + r.h / 2) * dpr), 1, 1).data;
      return Array.from(d);
    }, nodeId);
    check("linked LoadImage drawn as background", bgOk && Math.abs(pixel[0] - 0x33) < 12 &&
      Math.abs(pixel[1] - 0x66) < 12 && Math.abs(pixel[2] - 0xcc) < 12, { bg, pixel });
    const greyPixel = await page.evaluate((id) => {
      const app = window.app;
      const node = app.graph.getNodeById(id);
      node.disconnectInput(node.inputs.findIndex((i) => i.name === "image"));
      const ed = node.__unidiffBoxEditor;
      ed.draw();
      const r = ed.contentRect(), dpr = window.devicePixelRatio || 1;
      return { src: ed.bgSource, px: Array.from(ed.canvas.getContext("2d").getImageData(Math.round((r.x + r.w / 2) * dpr), Math.round((r.y + r.h / 2) * dpr), 1, 1).data) };
    }, nodeId);
    check("unlinked: neutral grey background", greyPixel.src === "grey" && greyPixel.px[0] === 128 &&
      greyPixel.px[1] === 128 && greyPixel.px[2] === 128, greyPixel);

    // 10. workflow round trip: loading a saved workflow restores the boxes into the editor
    const rt = await page.evaluate(async (id) => {
      const app = window.app;
      const node = app.graph.getNodeById(id);
      node.widgets.find((w) => w.name === "boxes").value =
        '[{"label": "tree", "box": [0.05, 0.2, 0.35, 0.95]}, {"label": "house", "box": [0.45, 0.35, 0.95, 0.9]}]';
      const wf = JSON.parse(JSON.stringify(app.graph.serialize()));
      app.graph.clear();
      await app.loadGraphData(wf);
      const n2 = app.graph.getNodeById(id);
      n2.__unidiffBoxEditor.draw();
      return n2.__unidiffBoxEditor.state();
    }, nodeId);
    check("workflow reload restores boxes", rt.valid && rt.boxes.length === 2 && rt.boxes[1].label === "house", rt);

    if (screenshot) {
      await page.evaluate((id) => {
        const app = window.app;
        const node = app.graph.getNodeById(id);
        const li = app.graph.nodes.find((n) => n.type === "LoadImage");
        if (li) li.connect(0, node, node.inputs.findIndex((i) => i.name === "image"));
        node.widgets.find((w) => w.name === "boxes").value = "[\n" + [
          '{"label": "a tree", "box": [0.05, 0.2, 0.35, 0.95]}',
          '{"label": "a small house", "box": [0.45, 0.35, 0.95, 0.9]}',
          '{"label": "the sun", "box": [0.7, 0.04, 0.9, 0.3]}'].map((l) => "  " + l).join(",\n") + "\n]";
        const ed = node.__unidiffBoxEditor;
        ed.selected = 1;
        ed.draw();
        app.graph.setDirtyCanvas(true, true);
      }, nodeId);
      await sleep(400);
      await page.screenshot({ path: screenshot, clip: { x: 0, y: 60, width: 1100, height: 880 } });
    }

    const ourErrors = pageErrors.filter((e) => /unidiff/i.test(e));
    check("no page errors from the extension", ourErrors.length === 0, ourErrors);
    result = { frontendVersion, extensionsCount: extensions.length };
  } catch (e) {
    check("script ran to the end", false, String(e && e.stack || e));
  } finally {
    await browser.close().catch(() => {});
  }
  const ok = checks.length > 0 && checks.every((c) => c.ok);
  console.log(JSON.stringify({ ok, url, passed: checks.filter((c) => c.ok).length,
    failed: checks.filter((c) => !c.ok).length, seconds: (Date.now() - t0) / 1000, ...result,
    checks, pageErrors }, null, 2));
  process.exit(ok ? 0 : 1);
})().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  process.exit(1);
});
