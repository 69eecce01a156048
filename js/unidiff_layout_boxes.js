// ComfyUI-UniDiff: interactive layout-box editor for the UniDiffLayoutBoxes node.
//
// Served at /extensions/<pack folder>/unidiff_layout_boxes.js.
//
// The node's `boxes` STRING widget stays the single source of truth: it holds a
// JSON list of {"label": str, "box": [x0, y0, x1, y1]} with coordinates as
// fractions (0..1) of the canvas (x right, y down). The editor below is a DOM
// widget that is NOT serialised (neither into the workflow's widgets_values nor
// into the API prompt); every edit is written back into the `boxes` widget, and
// hand edits of the `boxes` text are picked up on the next redraw.
//
// Mouse: drag on empty space = new box; drag a box = move; drag a corner = resize;
// double-click a box (or Enter/F2) = edit its label; arrow keys nudge the selected box;
// click the small "x" of the selected box, right-click a box, or press Delete/Backspace
// = delete. At most 20 boxes (more are refused).
import { app } from "../../scripts/app.js";

const NODE_CLASS = "UniDiffLayoutBoxes";
const MAX_BOXES = 20;
// The model's layout palette, in box order.
const PALETTE = [
  "#FF0000", "#00FF00", "#0000FF", "#FFFF00", "#FF00FF",
  "#00FFFF", "#FFA500", "#800080", "#A52A2A", "#008000",
  "#FFC0CB", "#008080", "#FF8C00", "#8A2BE2", "#006400",
  "#FF4500", "#000080", "#FFD700", "#40E0D0", "#DA70D6",
];
const PALETTE_NAMES = [
  "red", "lime", "blue", "yellow", "magenta", "cyan", "orange", "purple", "brown",
  "green", "pink", "teal", "darkorange", "blueviolet", "darkgreen", "orangered",
  "navy", "gold", "turquoise", "orchid",
];
const HANDLE = 6; // half size of a corner handle, in CSS px of the widget
const MIN_DRAG = 4; // below this many px a drag on empty space is a click
const PAD = 6; // padding around the drawn canvas inside the widget
const EDITOR_MIN_HEIGHT = 220;

const clamp01 = (v) => Math.min(1, Math.max(0, v));
const round4 = (v) => Math.round(v * 10000) / 10000;

function hexToRgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

// Parse the `boxes` text. Never throws. Returns
// {ok, boxes: [{label, box:[x0,y0,x1,y1], extra}], error, warnings: []}.
export function parseBoxes(text) {
  const res = { ok: false, boxes: [], error: null, warnings: [] };
  let data;
  const src = typeof text === "string" ? text : text == null ? "" : String(text);
  if (src.trim() === "") {
    res.ok = true; // empty text counts as "no boxes"
    return res;
  }
  try {
    data = JSON.parse(src);
  } catch (e) {
    res.error = `invalid JSON: ${e && e.message ? e.message : e}`;
    return res;
  }
  if (!Array.isArray(data)) {
    res.error = "boxes must be a JSON list";
    return res;
  }
  for (let i = 0; i < data.length; i++) {
    const item = data[i];
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      res.error = `item ${i}: expected an object {"label", "box"}`;
      return res;
    }
    const b = item.box;
    if (!Array.isArray(b) || b.length !== 4 || !b.every((v) => typeof v === "number" && Number.isFinite(v))) {
      res.error = `item ${i}: "box" must be [x0, y0, x1, y1] numbers`;
      return res;
    }
    if (item.label !== undefined && typeof item.label !== "string") {
      res.error = `item ${i}: "label" must be a string`;
      return res;
    }
    if (b.some((v) => v < 0 || v > 1)) res.warnings.push(`item ${i}: coordinates outside 0..1`);
    if (!(b[0] < b[2] && b[1] < b[3])) res.warnings.push(`item ${i}: needs x0<x1 and y0<y1`);
    const { label, box, ...extra } = item;
    res.boxes.push({ label: label ?? "", box: b.slice(), extra });
  }
  if (res.boxes.length > MAX_BOXES) res.warnings.push(`more than ${MAX_BOXES} boxes`);
  res.ok = true;
  return res;
}

// One box per line: readable in the multiline widget and in diffs.
export function formatBoxes(boxes) {
  if (!boxes.length) return "[]";
  const lines = boxes.map((b) => {
    const parts = [`"label": ${JSON.stringify(b.label)}`, `"box": [${b.box.map(round4).join(", ")}]`];
    for (const [k, v] of Object.entries(b.extra || {})) {
      if (k !== "label" && k !== "box" && v !== undefined) parts.push(`${JSON.stringify(k)}: ${JSON.stringify(v)}`);
    }
    return "  {" + parts.join(", ") + "}";
  });
  return "[\n" + lines.join(",\n") + "\n]";
}

class BoxEditor {
  constructor(node) {
    this.node = node;
    this.boxes = [];
    this.selected = -1;
    this.hover = -1;
    this.drag = null; // {mode: "new"|"move"|"resize", ...}
    this.lastText = null;
    this.parse = { ok: true, boxes: [], error: null, warnings: [] };
    this.flash = null; // {text, until}
    this.labelInput = null;
    this.bgSource = null; // "image" | "grey"

    const root = document.createElement("div");
    root.className = "unidiff-layout-boxes";
    Object.assign(root.style, {
      position: "relative", width: "100%", height: "100%", minHeight: "80px",
      boxSizing: "border-box", overflow: "hidden",
    });
    const canvas = document.createElement("canvas");
    canvas.tabIndex = 0;
    canvas.className = "unidiff-layout-boxes-canvas";
    Object.assign(canvas.style, {
      display: "block", width: "100%", height: "100%", outline: "none",
      cursor: "crosshair", touchAction: "none",
    });
    root.appendChild(canvas);
    this.root = root;
    this.canvas = canvas;

    const stop = (e) => e.stopPropagation();
    canvas.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    canvas.addEventListener("pointermove", (e) => this.onPointerMove(e));
    canvas.addEventListener("pointerup", (e) => this.onPointerUp(e));
    canvas.addEventListener("pointercancel", (e) => this.onPointerUp(e));
    canvas.addEventListener("pointerleave", () => { if (!this.drag && this.hover !== -1) { this.hover = -1; this.draw(); } });
    canvas.addEventListener("dblclick", (e) => this.onDoubleClick(e));
    canvas.addEventListener("contextmenu", (e) => this.onContextMenu(e));
    canvas.addEventListener("keydown", (e) => this.onKeyDown(e));
    canvas.addEventListener("keyup", stop);
    canvas.addEventListener("mousedown", stop);
    canvas.addEventListener("mouseup", stop);
    canvas.addEventListener("click", stop);

    if (typeof ResizeObserver !== "undefined") {
      this.resizeObserver = new ResizeObserver(() => this.draw());
      this.resizeObserver.observe(canvas);
    }
  }

  // ---- widgets of the node -------------------------------------------------
  getWidget(name) {
    return this.node.widgets?.find((w) => w.name === name);
  }
  dims() {
    const w = Number(this.getWidget("width")?.value);
    const h = Number(this.getWidget("height")?.value);
    return [Number.isFinite(w) && w > 0 ? w : 512, Number.isFinite(h) && h > 0 ? h : 512];
  }

  // Re-read the `boxes` widget if its text changed (hand edit, workflow load, paste).
  sync() {
    const w = this.getWidget("boxes");
    const text = w ? w.value : "[]";
    if (text === this.lastText) return false;
    this.lastText = text;
    this.parse = parseBoxes(text);
    if (this.parse.ok) {
      this.boxes = this.parse.boxes;
      if (this.selected >= this.boxes.length) this.selected = -1;
    } else {
      this.selected = -1;
      if (this.drag) this.drag = null;
    }
    return true;
  }

  // Write the boxes into the `boxes` widget (workflow + API prompt carry it).
  commit() {
    const text = formatBoxes(this.boxes);
    const w = this.getWidget("boxes");
    this.lastText = text;
    this.parse = parseBoxes(text);
    if (!w) return;
    if (w.value !== text) {
      // Frontend 1.27: the DOM widget's value setter writes the textarea and calls
      // widget.callback itself.
      w.value = text;
      // Older frontends keep a separate element: keep it in step.
      if (w.inputEl && "value" in w.inputEl && w.inputEl.value !== text) w.inputEl.value = text;
    }
    this.node.setDirtyCanvas?.(true, true);
    try {
      app.extensionManager?.workflow?.activeWorkflow?.changeTracker?.checkState?.();
    } catch (_) { /* change tracking is a nicety */ }
  }

  // ---- geometry ------------------------------------------------------------
  // The drawn canvas (aspect width:height) inside the widget, in CSS px of the element.
  contentRect() {
    const cw = this.canvas.clientWidth, ch = this.canvas.clientHeight;
    const [W, H] = this.dims();
    const aw = Math.max(1, cw - 2 * PAD), ah = Math.max(1, ch - 2 * PAD - 14);
    const s = Math.min(aw / W, ah / H);
    const w = W * s, h = H * s;
    return { x: (cw - w) / 2, y: PAD + (ah - h) / 2, w, h };
  }
  // Same rectangle in page (client) coordinates; used by tests and screenshots.
  contentRectOnScreen() {
    const r = this.contentRect();
    const b = this.canvas.getBoundingClientRect();
    const sx = b.width / (this.canvas.clientWidth || 1), sy = b.height / (this.canvas.clientHeight || 1);
    return { left: b.left + r.x * sx, top: b.top + r.y * sy, width: r.w * sx, height: r.h * sy };
  }
  // Pointer event -> element CSS px (the widget may be scaled by the canvas zoom).
  local(e) {
    const b = this.canvas.getBoundingClientRect();
    const sx = (this.canvas.clientWidth || 1) / (b.width || 1);
    const sy = (this.canvas.clientHeight || 1) / (b.height || 1);
    return { x: (e.clientX - b.left) * sx, y: (e.clientY - b.top) * sy };
  }
  toFrac(p, r) {
    return { x: (p.x - r.x) / r.w, y: (p.y - r.y) / r.h };
  }
  boxPx(b, r) {
    const [x0, y0, x1, y1] = b.box;
    return { x0: r.x + x0 * r.w, y0: r.y + y0 * r.h, x1: r.x + x1 * r.w, y1: r.y + y1 * r.h };
  }
  closeButton(i, r) {
    // Inside the top-right corner, clear of the corner handle (centre for tiny boxes).
    const p = this.boxPx(this.boxes[i], r);
    const x0 = Math.min(p.x0, p.x1), x1 = Math.max(p.x0, p.x1);
    const y0 = Math.min(p.y0, p.y1), y1 = Math.max(p.y0, p.y1);
    return { x: Math.max((x0 + x1) / 2, x1 - 20), y: Math.min((y0 + y1) / 2, y0 + 11), r: 7 };
  }
  hitTest(p) {
    const r = this.contentRect();
    if (this.selected >= 0 && this.selected < this.boxes.length) {
      const c = this.closeButton(this.selected, r);
      if (Math.hypot(p.x - c.x, p.y - c.y) <= c.r + 1) return { kind: "close", index: this.selected };
    }
    const order = [];
    if (this.selected >= 0 && this.selected < this.boxes.length) order.push(this.selected);
    for (let i = this.boxes.length - 1; i >= 0; i--) if (i !== this.selected) order.push(i);
    for (const i of order) {
      const q = this.boxPx(this.boxes[i], r);
      const corners = [[q.x0, q.y0, 0, 1], [q.x1, q.y0, 2, 1], [q.x0, q.y1, 0, 3], [q.x1, q.y1, 2, 3]];
      for (const [cx, cy, ix, iy] of corners) {
        if (Math.abs(p.x - cx) <= HANDLE + 2 && Math.abs(p.y - cy) <= HANDLE + 2) return { kind: "corner", index: i, ix, iy };
      }
    }
    for (const i of order) {
      const q = this.boxPx(this.boxes[i], r);
      if (p.x >= Math.min(q.x0, q.x1) && p.x <= Math.max(q.x0, q.x1) && p.y >= Math.min(q.y0, q.y1) && p.y <= Math.max(q.y0, q.y1)) {
        return { kind: "box", index: i };
      }
    }
    const inside = p.x >= r.x && p.x <= r.x + r.w && p.y >= r.y && p.y <= r.y + r.h;
    return { kind: inside ? "empty" : "outside" };
  }

  // ---- interaction -----------------------------------------------------------
  say(text, ms = 1800) {
    this.flash = { text, until: performance.now() + ms };
    this.draw();
    setTimeout(() => this.draw(), ms + 20);
  }

  onPointerDown(e) {
    e.stopPropagation();
    this.sync();
    if (e.button !== 0) return;
    this.canvas.focus({ preventScroll: true });
    if (this.labelInput) this.closeLabelInput(true);
    if (!this.parse.ok) { this.say("fix the boxes JSON first"); return; }
    e.preventDefault();
    const p = this.local(e);
    const hit = this.hitTest(p);
    const r = this.contentRect();
    if (hit.kind === "close") { this.remove(hit.index); return; }
    if (hit.kind === "corner") {
      this.selected = hit.index;
      const b = this.boxes[hit.index].box;
      // The corner being dragged moves; the opposite one stays fixed.
      this.drag = { mode: "resize", index: hit.index, ix: hit.ix, iy: hit.iy,
        fixed: { x: b[2 - hit.ix], y: b[4 - hit.iy] }, moved: false };
    } else if (hit.kind === "box") {
      this.selected = hit.index;
      this.drag = { mode: "move", index: hit.index, start: this.toFrac(p, r), orig: this.boxes[hit.index].box.slice(), moved: false };
    } else if (hit.kind === "empty") {
      this.selected = -1;
      this.drag = { mode: "new", startPx: p, start: this.toFrac(p, r), cur: this.toFrac(p, r), moved: false };
    } else {
      this.selected = -1;
    }
    try { this.canvas.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events */ }
    this.draw();
  }

  onPointerMove(e) {
    e.stopPropagation();
    const p = this.local(e);
    const r = this.contentRect();
    const d = this.drag;
    if (!d) {
      if (!this.parse.ok) return;
      const hit = this.hitTest(p);
      const hov = hit.index ?? -1;
      this.canvas.style.cursor = hit.kind === "corner" ? "nwse-resize" : hit.kind === "box" ? "move"
        : hit.kind === "close" ? "pointer" : "crosshair";
      if (hit.kind === "corner" && hit.ix !== hit.iy - 1) this.canvas.style.cursor = "nesw-resize";
      if (hov !== this.hover) { this.hover = hov; this.draw(); }
      return;
    }
    e.preventDefault();
    const f = this.toFrac(p, r);
    if (d.mode === "new") {
      d.cur = { x: clamp01(f.x), y: clamp01(f.y) };
      if (Math.hypot(p.x - d.startPx.x, p.y - d.startPx.y) >= MIN_DRAG) d.moved = true;
    } else if (d.mode === "move") {
      const [x0, y0, x1, y1] = d.orig;
      const w = x1 - x0, h = y1 - y0;
      let dx = f.x - d.start.x, dy = f.y - d.start.y;
      dx = Math.min(Math.max(dx, -Math.min(x0, x1)), 1 - Math.max(x0, x1));
      dy = Math.min(Math.max(dy, -Math.min(y0, y1)), 1 - Math.max(y0, y1));
      const nx0 = x0 + dx, ny0 = y0 + dy;
      this.boxes[d.index].box = [nx0, ny0, nx0 + w, ny0 + h];
      d.moved = true;
    } else if (d.mode === "resize") {
      const x = clamp01(f.x), y = clamp01(f.y);
      const minW = MIN_DRAG / r.w, minH = MIN_DRAG / r.h;
      let ax = Math.min(x, d.fixed.x), bx = Math.max(x, d.fixed.x);
      let ay = Math.min(y, d.fixed.y), by = Math.max(y, d.fixed.y);
      if (bx - ax < minW) { if (x < d.fixed.x) ax = d.fixed.x - minW; else bx = d.fixed.x + minW; }
      if (by - ay < minH) { if (y < d.fixed.y) ay = d.fixed.y - minH; else by = d.fixed.y + minH; }
      this.boxes[d.index].box = [clamp01(ax), clamp01(ay), clamp01(bx), clamp01(by)];
      d.moved = true;
    }
    this.draw();
  }

  onPointerUp(e) {
    e.stopPropagation();
    const d = this.drag;
    this.drag = null;
    try { this.canvas.releasePointerCapture(e.pointerId); } catch (_) { /* not captured */ }
    if (!d) return;
    if (d.mode === "new") {
      if (d.moved) {
        if (this.boxes.length >= MAX_BOXES) {
          this.say(`at most ${MAX_BOXES} boxes`);
        } else {
          const x0 = Math.min(d.start.x, d.cur.x), x1 = Math.max(d.start.x, d.cur.x);
          const y0 = Math.min(d.start.y, d.cur.y), y1 = Math.max(d.start.y, d.cur.y);
          this.boxes.push({ label: "", box: [clamp01(x0), clamp01(y0), clamp01(x1), clamp01(y1)], extra: {} });
          this.selected = this.boxes.length - 1;
          this.commit();
          this.draw();
          this.openLabelInput(this.selected); // type a label right away (Enter / click away keeps it)
        }
      }
    } else if (d.moved) {
      this.commit();
    }
    this.draw();
  }

  onDoubleClick(e) {
    e.stopPropagation();
    e.preventDefault();
    if (!this.parse.ok) return;
    const hit = this.hitTest(this.local(e));
    if (hit.kind === "box" || hit.kind === "corner") {
      this.selected = hit.index;
      this.openLabelInput(hit.index);
    }
  }

  onContextMenu(e) {
    e.preventDefault();
    e.stopPropagation();
    if (!this.parse.ok) return;
    const hit = this.hitTest(this.local(e));
    if (hit.kind === "box" || hit.kind === "corner" || hit.kind === "close") this.remove(hit.index);
  }

  onKeyDown(e) {
    // Keys the editor owns never reach the graph (Delete there would delete the node);
    // everything else (Ctrl+S, Ctrl+Enter, ...) keeps working.
    const own = ["Delete", "Backspace", "Enter", "F2", "Escape", "ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"];
    if (!own.includes(e.key) || e.ctrlKey || e.metaKey || e.altKey) return;
    e.stopPropagation();
    e.preventDefault();
    if (!this.parse.ok || this.selected < 0 || this.selected >= this.boxes.length) return;
    if (e.key === "Delete" || e.key === "Backspace") {
      this.remove(this.selected);
    } else if (e.key === "Enter" || e.key === "F2") {
      this.openLabelInput(this.selected);
    } else if (e.key === "Escape") {
      this.selected = -1;
      this.draw();
    } else {
      // Arrow keys nudge the selected box by 1 px (Shift: 10 px) of the drawn canvas.
      const r = this.contentRect();
      const step = e.shiftKey ? 10 : 1;
      const b = this.boxes[this.selected].box;
      let dx = e.key === "ArrowLeft" ? -step / r.w : e.key === "ArrowRight" ? step / r.w : 0;
      let dy = e.key === "ArrowUp" ? -step / r.h : e.key === "ArrowDown" ? step / r.h : 0;
      dx = Math.min(Math.max(dx, -Math.min(b[0], b[2])), 1 - Math.max(b[0], b[2]));
      dy = Math.min(Math.max(dy, -Math.min(b[1], b[3])), 1 - Math.max(b[1], b[3]));
      this.boxes[this.selected].box = [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy];
      this.commit();
      this.draw();
    }
  }

  remove(i) {
    if (i < 0 || i >= this.boxes.length) return;
    this.boxes.splice(i, 1);
    this.selected = -1;
    this.hover = -1;
    this.commit();
    this.draw();
  }

  setLabel(i, label) {
    if (i < 0 || i >= this.boxes.length) return;
    this.boxes[i].label = String(label);
    this.commit();
    this.draw();
  }

  openLabelInput(i) {
    this.closeLabelInput(true);
    const r = this.contentRect();
    const q = this.boxPx(this.boxes[i], r);
    const input = document.createElement("input");
    input.type = "text";
    input.value = this.boxes[i].label;
    input.placeholder = "label";
    input.className = "unidiff-layout-boxes-label";
    Object.assign(input.style, {
      position: "absolute", left: `${Math.max(0, Math.min(q.x0, r.x + r.w - 120))}px`,
      top: `${Math.max(0, Math.min(q.y0, r.y + r.h - 22))}px`, width: `${Math.max(120, q.x1 - q.x0)}px`,
      height: "22px", font: "12px sans-serif", padding: "1px 4px", boxSizing: "border-box",
      border: `2px solid ${PALETTE[i % PALETTE.length]}`, background: "#111", color: "#fff", zIndex: 10,
    });
    const state = { index: i, input };
    input.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Enter") { e.preventDefault(); this.closeLabelInput(true); this.canvas.focus({ preventScroll: true }); }
      else if (e.key === "Escape") { e.preventDefault(); this.closeLabelInput(false); this.canvas.focus({ preventScroll: true }); }
    });
    for (const ev of ["keyup", "pointerdown", "mousedown", "dblclick", "contextmenu"]) input.addEventListener(ev, (e) => e.stopPropagation());
    input.addEventListener("blur", () => { if (this.labelInput === state) this.closeLabelInput(true); });
    this.root.appendChild(input);
    this.labelInput = state;
    input.focus();
    input.select();
  }

  closeLabelInput(save) {
    const s = this.labelInput;
    if (!s) return;
    this.labelInput = null;
    const value = s.input.value;
    s.input.remove();
    if (save && s.index < this.boxes.length && this.boxes[s.index].label !== value) this.setLabel(s.index, value);
  }

  // ---- background ------------------------------------------------------------
  backgroundImage() {
    try {
      const slot = this.node.inputs?.findIndex((i) => i.name === "image");
      if (slot == null || slot < 0 || this.node.inputs[slot].link == null) return null;
      const src = this.node.getInputNode?.(slot);
      const imgs = src?.imgs;
      if (!imgs || !imgs.length) return null;
      const img = imgs[src.imageIndex ?? 0] ?? imgs[0];
      if (!img || !img.complete || !img.naturalWidth) return null;
      return img;
    } catch (_) {
      return null;
    }
  }

  // ---- drawing -----------------------------------------------------------------
  draw() {
    try {
      this._draw();
    } catch (e) {
      console.warn("[UniDiff] layout box editor draw failed", e);
    }
  }

  _draw() {
    this.sync();
    const c = this.canvas;
    const cw = c.clientWidth, ch = c.clientHeight;
    if (!cw || !ch) return;
    const dpr = window.devicePixelRatio || 1;
    const pw = Math.round(cw * dpr), ph = Math.round(ch * dpr);
    if (c.width !== pw || c.height !== ph) { c.width = pw; c.height = ph; }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cw, ch);
    const r = this.contentRect();
    const [W, H] = this.dims();

    // background: linked image preview or neutral grey
    const img = this.backgroundImage();
    ctx.fillStyle = "#808080";
    ctx.fillRect(r.x, r.y, r.w, r.h);
    if (img) {
      ctx.drawImage(img, r.x, r.y, r.w, r.h); // stretched to width x height like the model input
      this.bgSource = "image";
    } else {
      this.bgSource = "grey";
    }
    ctx.strokeStyle = "#222";
    ctx.lineWidth = 1;
    ctx.strokeRect(r.x - 0.5, r.y - 0.5, r.w + 1, r.h + 1);

    ctx.font = "12px sans-serif";
    ctx.textBaseline = "top";
    if (!this.parse.ok) {
      ctx.fillStyle = "rgba(0,0,0,0.55)";
      ctx.fillRect(r.x, r.y, r.w, r.h);
      ctx.fillStyle = "#ff6b6b";
      this.wrapText(ctx, `⚠ ${this.parse.error}`, r.x + 8, r.y + 8, r.w - 16, 15);
      this.footer(ctx, r, ch, `${W}×${H} · invalid boxes JSON`, "#ff6b6b");
      return;
    }

    const boxes = this.boxes.slice();
    if (this.drag?.mode === "new" && this.drag.moved) {
      const d = this.drag;
      boxes.push({ label: "", box: [Math.min(d.start.x, d.cur.x), Math.min(d.start.y, d.cur.y), Math.max(d.start.x, d.cur.x), Math.max(d.start.y, d.cur.y)], preview: true });
    }
    boxes.forEach((b, i) => {
      const color = PALETTE[i % PALETTE.length];
      const q = this.boxPx(b, r);
      const x = Math.min(q.x0, q.x1), y = Math.min(q.y0, q.y1), w = Math.abs(q.x1 - q.x0), h = Math.abs(q.y1 - q.y0);
      const sel = i === this.selected, hov = i === this.hover;
      const over = i >= MAX_BOXES;
      ctx.fillStyle = hexToRgba(color, sel ? 0.3 : hov ? 0.22 : 0.15);
      ctx.fillRect(x, y, w, h);
      ctx.lineWidth = sel ? 3 : 2;
      ctx.strokeStyle = color;
      ctx.setLineDash(b.preview || over ? [6, 4] : []);
      ctx.strokeRect(x, y, w, h);
      ctx.setLineDash([]);
      // label tag
      const text = `${i + 1}${b.label ? ": " + b.label : ""}`;
      const tw = Math.min(ctx.measureText(text).width + 8, Math.max(w, 24));
      const ty = y - 16 >= r.y ? y - 16 : y;
      ctx.fillStyle = color;
      ctx.fillRect(x, ty, tw, 16);
      ctx.fillStyle = this.textColorFor(color);
      ctx.save();
      ctx.beginPath();
      ctx.rect(x, ty, tw, 16);
      ctx.clip();
      ctx.fillText(text, x + 4, ty + 2);
      ctx.restore();
      if (sel) {
        for (const [cx, cy] of [[q.x0, q.y0], [q.x1, q.y0], [q.x0, q.y1], [q.x1, q.y1]]) {
          ctx.fillStyle = "#fff";
          ctx.fillRect(cx - HANDLE, cy - HANDLE, 2 * HANDLE, 2 * HANDLE);
          ctx.strokeStyle = "#000";
          ctx.lineWidth = 1;
          ctx.strokeRect(cx - HANDLE + 0.5, cy - HANDLE + 0.5, 2 * HANDLE - 1, 2 * HANDLE - 1);
        }
        const cb = this.closeButton(i, r);
        ctx.fillStyle = "rgba(0,0,0,0.75)";
        ctx.beginPath();
        ctx.arc(cb.x, cb.y, cb.r, 0, Math.PI * 2);
        ctx.fill();
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.moveTo(cb.x - 3, cb.y - 3); ctx.lineTo(cb.x + 3, cb.y + 3);
        ctx.moveTo(cb.x + 3, cb.y - 3); ctx.lineTo(cb.x - 3, cb.y + 3);
        ctx.stroke();
      }
    });

    let status = `${W}×${H} · ${this.boxes.length}/${MAX_BOXES} boxes`;
    let color = "#aaa";
    if (this.parse.warnings.length) { status += ` · ⚠ ${this.parse.warnings[0]}`; color = "#f0c040"; }
    else if (this.selected >= 0) status += " · dbl-click: label · Del / x: delete";
    else if (!this.boxes.length) status += " · drag to draw a box";
    if (this.flash && performance.now() < this.flash.until) { status = this.flash.text; color = "#ff9f43"; }
    this.footer(ctx, r, ch, status, color);
  }

  footer(ctx, r, ch, text, color) {
    ctx.fillStyle = color;
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "bottom";
    ctx.fillText(text, r.x, ch - 2, Math.max(10, this.canvas.clientWidth - r.x - 2));
    ctx.textBaseline = "top";
    ctx.font = "12px sans-serif";
  }

  wrapText(ctx, text, x, y, maxW, lh) {
    let line = "";
    for (const word of text.split(/\s+/)) {
      const t = line ? line + " " + word : word;
      if (ctx.measureText(t).width > maxW && line) { ctx.fillText(line, x, y); y += lh; line = word; }
      else line = t;
    }
    if (line) ctx.fillText(line, x, y);
  }

  textColorFor(hex) {
    const n = parseInt(hex.slice(1), 16);
    const l = 0.299 * ((n >> 16) & 255) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255);
    return l > 140 ? "#000" : "#fff";
  }

  // Cheap per-frame check from the node's draw: redraw only when something changed.
  tick() {
    const [W, H] = this.dims();
    const img = this.backgroundImage();
    const key = `${W}x${H}|${img ? img.src : ""}|${this.canvas.clientWidth}x${this.canvas.clientHeight}`;
    const changed = this.sync();
    if (changed || key !== this.lastKey) {
      this.lastKey = key;
      this.draw();
    }
  }

  // Test/debug hooks (no UI effect).
  state() {
    return {
      boxes: this.boxes.map((b) => ({ label: b.label, box: b.box.slice() })),
      valid: this.parse.ok, error: this.parse.error, warnings: this.parse.warnings.slice(),
      selected: this.selected, background: this.bgSource, rect: this.contentRectOnScreen(),
    };
  }
}

function attachEditor(node) {
  if (node.__unidiffBoxEditor) return node.__unidiffBoxEditor;
  const editor = new BoxEditor(node);
  node.__unidiffBoxEditor = editor;
  let widget;
  try {
    widget = node.addDOMWidget("layout_editor", "unidiff_layout_boxes", editor.root, {
      serialize: false, // neither in widgets_values nor in the API prompt
      hideOnZoom: false,
      getValue: () => undefined,
      setValue: () => {},
      getMinHeight: () => EDITOR_MIN_HEIGHT,
    });
  } catch (e) {
    console.error("[UniDiff] could not add the layout box editor widget", e);
    return editor;
  }
  if (widget) {
    widget.serialize = false; // litegraph's own flag for widgets_values
    widget.options = widget.options || {};
    widget.options.serialize = false;
    editor.domWidget = widget;
  }

  // Hand edits of the boxes text: the multiline widget's callback and its textarea.
  const bw = editor.getWidget("boxes");
  if (bw) {
    const cb = bw.callback;
    bw.callback = function () {
      const r = cb?.apply(this, arguments);
      editor.draw();
      return r;
    };
    bw.inputEl?.addEventListener?.("input", () => editor.draw());
  }
  for (const name of ["width", "height"]) {
    const w = editor.getWidget(name);
    if (!w) continue;
    const cb = w.callback;
    w.callback = function () {
      const r = cb?.apply(this, arguments);
      editor.draw();
      return r;
    };
  }

  const onDrawForeground = node.onDrawForeground;
  node.onDrawForeground = function () {
    const r = onDrawForeground?.apply(this, arguments);
    editor.tick();
    return r;
  };
  const onConnectionsChange = node.onConnectionsChange;
  node.onConnectionsChange = function () {
    const r = onConnectionsChange?.apply(this, arguments);
    setTimeout(() => editor.draw(), 0);
    return r;
  };
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    editor.closeLabelInput(false);
    editor.resizeObserver?.disconnect();
    return onRemoved?.apply(this, arguments);
  };

  // Room for the canvas on a fresh node.
  try {
    const sz = node.computeSize?.();
    if (sz) node.setSize([Math.max(node.size[0], 360, sz[0]), Math.max(node.size[1], sz[1])]);
  } catch (_) { /* keep the default size */ }
  requestAnimationFrame(() => editor.draw());
  return editor;
}

app.registerExtension({
  name: "unidiff.layout_boxes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_CLASS) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      try { attachEditor(this); } catch (e) { console.error("[UniDiff] layout box editor", e); }
      return r;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const r = onConfigure?.apply(this, arguments);
      // widgets_values were just restored: re-read the boxes text.
      const ed = this.__unidiffBoxEditor;
      if (ed) { ed.lastText = null; requestAnimationFrame(() => ed.draw()); }
      return r;
    };
  },
  nodeCreated(node) {
    // Safety net: JSON must reach the server verbatim. If the node def ever turns on
    // dynamicPrompts for `boxes`, core Comfy.DynamicPrompts (which runs before this hook)
    // would rewrite "{...|...}" at queue time and break the JSON.
    if (node?.comfyClass !== NODE_CLASS) return;
    const bw = node.widgets?.find((w) => w.name === "boxes");
    if (bw?.dynamicPrompts) {
      bw.dynamicPrompts = false;
      delete bw.serializeValue;
    }
  },
});

export const UNIDIFF_LAYOUT_PALETTE = PALETTE;
export const UNIDIFF_LAYOUT_PALETTE_NAMES = PALETTE_NAMES;
export const UNIDIFF_LAYOUT_MAX_BOXES = MAX_BOXES;
