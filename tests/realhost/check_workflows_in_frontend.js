#!/usr/bin/env node
// Loads every UI workflow of example_workflows/ into the real ComfyUI frontend (headless Chromium) and
// converts it with app.graphToPrompt() - what "Queue" and "Export (API)" do - then compares the result
// with the API file in example_workflows/api/. Also re-serialises the loaded graph and reports nodes the
// frontend does not know, and checks that every UniDiff Example Image node previews its picture.
//
//   NODE_PATH=<node_modules with puppeteer-core> node check_workflows_in_frontend.js URL WORKFLOW_DIR
//
// Prints one JSON object {ok, results: [{name, ok, missing, diff}], pageErrors} and exits 0 when all match.
"use strict";

const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer-core"); // -core: never downloads a browser

const url = (process.argv[2] || process.env.COMFYUI_URL || "http://127.0.0.1:8188/").replace(/\/?$/, "/");
const dir = process.argv[3];
const names = fs.readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort();

// class_type + inputs; with `defs` (/object_info), inputs the server does not declare are dropped and
// reported: the frontend adds some widget-only values (e.g. Preview Any's "preview" text) that the
// server ignores.
function strip(prompt, defs, dropped) {
  const out = {};
  for (const [id, node] of Object.entries(prompt)) {
    const inputs = { ...node.inputs };
    const def = defs && defs[node.class_type];
    if (def) {
      const declared = { ...(def.input.required || {}), ...(def.input.optional || {}) };
      for (const key of Object.keys(inputs)) {
        if (!(key in declared)) {
          dropped.push(`${node.class_type}.${key}=${JSON.stringify(inputs[key])}`);
          delete inputs[key];
        }
      }
    }
    out[id] = { class_type: node.class_type, inputs };
  }
  return out;
}

function diff(a, b, where = "") {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => diff(a[k], b[k], `${where}/${k}`));
  }
  return [{ at: where, frontend: a, file: b }];
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const pageErrors = [];
  const results = [];
  let exampleSwitch = { ok: false };
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => pageErrors.push(String((e && e.message) || e)));
    page.on("dialog", (d) => d.dismiss().catch(() => {}));
    await page.goto(url, { waitUntil: "networkidle2", timeout: 60000 });
    await page.waitForFunction(() => window.app && window.app.graph && window.LiteGraph &&
      window.LiteGraph.registered_node_types && window.LiteGraph.registered_node_types.UniDiffSampler,
    { timeout: 60000 });
    const defs = await page.evaluate(async () => (await fetch("object_info")).json());
    for (const name of names) {
      const ui = JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), "utf8"));
      const api = JSON.parse(fs.readFileSync(path.join(dir, "api", `${name}.json`), "utf8"));
      const got = await page.evaluate(async (wf) => {
        const app = window.app;
        await app.loadGraphData(wf, true, false);
        const missing = app.graph._nodes.filter((n) => !window.LiteGraph.registered_node_types[n.type])
          .map((n) => n.type);
        const output = (await app.graphToPrompt()).output;
        const saved = app.graph.serialize();
        // UniDiff Example Image nodes preview their picture (js/unidiff_example_image.js)
        const examples = app.graph._nodes.filter((n) => n.type === "UniDiffExampleImage");
        const deadline = Date.now() + 10000;
        const shown = (n) => n.imgs?.length === 1 && n.imgs[0].complete && n.imgs[0].naturalWidth > 0 &&
          decodeURIComponent(n.imgs[0].src).endsWith(`/inputs/${n.widgets.find((w) => w.name === "image").value}`);
        while (Date.now() < deadline && !examples.every(shown)) await new Promise((r) => setTimeout(r, 100));
        app.canvas.draw(true, true); // the frontend adds its preview widget when it draws a node with imgs
        const previews = examples.map((n) => ({ image: n.widgets.find((w) => w.name === "image").value,
          shown: shown(n), size: n.imgs?.[0] ? [n.imgs[0].naturalWidth, n.imgs[0].naturalHeight] : null,
          widget: !!n.widgets.find((w) => w.name === "$$canvas-image-preview") }));
        return { output, missing, nodes: saved.nodes.length, links: saved.links.length, previews };
      }, ui);
      const dropped = [];
      const d = diff(strip(got.output, defs, dropped), strip(api));
      const ok = d.length === 0 && got.missing.length === 0 && got.nodes === ui.nodes.length &&
        got.links === ui.links.length && got.previews.every((p) => p.shown && p.widget);
      results.push({ name, ok, missing: got.missing, diff: d.slice(0, 10), ignored: dropped,
        previews: got.previews });
    }
    // Picking another picture in the widget shows that one.
    const switched = await page.evaluate(async () => {
      const app = window.app;
      app.graph.clear();
      const node = window.LiteGraph.createNode("UniDiffExampleImage");
      app.graph.add(node);
      const widget = node.widgets.find((w) => w.name === "image");
      const names = widget.options.values;
      const target = names[names.length - 1];
      widget.value = target;
      widget.callback?.(target);
      const deadline = Date.now() + 10000;
      const src = () => decodeURIComponent(node.imgs?.[0]?.src || "");
      while (Date.now() < deadline && !(src().endsWith(`/inputs/${target}`) && node.imgs[0].naturalWidth > 0)) {
        await new Promise((r) => setTimeout(r, 100));
      }
      return { target, src: src(), width: node.imgs?.[0]?.naturalWidth || 0, choices: names.length };
    });
    exampleSwitch = { ...switched, ok: switched.choices > 1 && switched.src.endsWith(`/inputs/${switched.target}`) &&
      switched.width > 0 };
  } finally {
    await browser.close();
  }
  const ok = results.length === names.length && results.every((r) => r.ok) && exampleSwitch.ok;
  console.log(JSON.stringify({ ok, checked: results.length, results, exampleSwitch, pageErrors }, null, 1));
  process.exit(ok ? 0 : 1);
})().catch((e) => { console.error(e); process.exit(2); });
