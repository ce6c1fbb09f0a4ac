// hintcolor page: plain JS, no external scripts, so it works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const input = $("input");        // the grayscale, where hints are placed
const inputCtx = input.getContext("2d");
const result = $("result");      // the colorization, at the working size
const resultCtx = result.getContext("2d");
const picker = $("picker");      // the (a*, b*) plane at the selected hint's lightness
const pickerCtx = picker.getContext("2d");
const status = $("status");

// ---- colour: CIE Lab <-> sRGB as the server computes it (kornia, D65) ------------------------

const WHITE = [0.95047, 1.0, 1.08883];
const AB_RANGE = 110;            // the picker shows a*, b* in -110..110 (the network's scale)
const GAMUT_TOLERANCE = 1e-4;

const toLinear = (c) => (c > 0.04045 ? ((c + 0.055) / 1.055) ** 2.4 : c / 12.92);
const fromLinear = (c) => (c > 0.0031308 ? 1.055 * c ** (1 / 2.4) - 0.055 : 12.92 * c);

function labToRgb(L, a, b) {  // sRGB in 0..1, not clipped (outside: out of gamut)
  const fy = (L + 16) / 116, fx = a / 500 + fy, fz = Math.max(fy - b / 200, 0);
  const inv = (f) => (f > 0.2068966 ? f ** 3 : (f - 4 / 29) / 7.787);
  const x = inv(fx) * WHITE[0], y = inv(fy) * WHITE[1], z = inv(fz) * WHITE[2];
  return [
    fromLinear(3.2404813432005266 * x - 1.5371515162713185 * y - 0.4985363261688878 * z),
    fromLinear(-0.9692549499965682 * x + 1.8759900014898907 * y + 0.0415559265582928 * z),
    fromLinear(0.0556466391351772 * x - 0.2040413383665112 * y + 1.0573110696453443 * z),
  ];
}

function rgbToLab(r, g, b) {  // sRGB in 0..1
  const [lr, lg, lb] = [r, g, b].map(toLinear);
  const f = (t) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 4 / 29);
  const fx = f((0.412453 * lr + 0.357580 * lg + 0.180423 * lb) / WHITE[0]);
  const fy = f((0.212671 * lr + 0.715160 * lg + 0.072169 * lb) / WHITE[1]);
  const fz = f((0.019334 * lr + 0.119193 * lg + 0.950227 * lb) / WHITE[2]);
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

const inGamut = (rgb) => rgb.every((c) => c >= -GAMUT_TOLERANCE && c <= 1 + GAMUT_TOLERANCE);
const byte = (c) => Math.round(Math.min(Math.max(c, 0), 1) * 255);
const hexOf = (rgb) => "#" + rgb.map((c) => byte(c).toString(16).padStart(2, "0")).join("");
const labHex = (L, a, b) => hexOf(labToRgb(L, a, b));

function hexToAb(hex) {
  const v = parseInt(hex.slice(1), 16);
  const [, a, b] = rgbToLab(((v >> 16) & 255) / 255, ((v >> 8) & 255) / 255, (v & 255) / 255);
  return [a, b];
}

function intoGamut(L, a, b) {  // (a, b) moved towards gray until L, a, b is in sRGB's gamut
  if (inGamut(labToRgb(L, a, b))) return [a, b];
  let lo = 0, hi = 1;
  for (let i = 0; i < 20; i++) {
    const mid = (lo + hi) / 2;
    if (inGamut(labToRgb(L, a * mid, b * mid))) lo = mid; else hi = mid;
  }
  return [a * lo, b * lo];
}

// the grayscale image is L with a = b = 0, so a gray level gives back its pixel's L exactly
const GRAY_L = Array.from({length: 256}, (_, v) => rgbToLab(v / 255, v / 255, v / 255)[0]);

// ---- state -----------------------------------------------------------------------------------

let photo = null;        // {id, name, width, height, interactive}
let grayPixels = null;   // ImageData of the working-size grayscale
let hints = [];          // [{x, y, a, b, size, hex}] in photo pixels; hex: as typed, else null
let selected = -1;       // index of the hint the picker edits
let cursor = null;       // {x, y}: the keyboard's cursor on the grayscale (working pixels)
let suggested = null;    // {hint, source, suggestions, start} shown for the selected hint
let recent = [];         // [{a, b}] most recent first
const adds = [];         // clicks for new hints, waiting for the server's suggested colour
const past = [], future = [];   // undo / redo: snapshots of hints and selection
const MAX_HISTORY = 200, MAX_RECENT = 8;
const MAX_HINTS_FILE = 1 << 20;
// a fast preview (the network at the interactive size) answers an edit; once edits stop for
// this long, the full working-size preview replaces it
const SETTLE_MS = 120;

function say(text, isError = false) {
  status.textContent = text;
  status.title = text;
  status.classList.toggle("error", isError);
}

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

const postJson = (path, body) => api(path, {
  method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
});

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = reject;
    img.src = src;
  });
}

const scale = () => photo.width / input.width;  // photo pixels per working pixel

function lightnessAt(x, y) {  // L* of the photo point (x, y) (photo pixels)
  const s = scale();
  const px = Math.min(Math.floor(x / s), input.width - 1);
  const py = Math.min(Math.floor(y / s), input.height - 1);
  return GRAY_L[grayPixels.data[(py * input.width + px) * 4]];
}

const hintHex = (h) => labHex(lightnessAt(h.x, h.y), h.a, h.b);
const wire = (h) => ({  // the JSON format of colorize.py and the downloads
  x: h.x, y: h.y, size: h.size,
  color: h.hex || [Math.round(h.a * 100) / 100, Math.round(h.b * 100) / 100],
});

// ---- drawing ---------------------------------------------------------------------------------

function draw() {
  if (!grayPixels) return;
  inputCtx.putImageData(grayPixels, 0, 0);
  const s = scale();
  hints.forEach((h, i) => {
    const side = Math.max(h.size / s, 3);
    const x = h.x / s - side / 2, y = h.y / s - side / 2;
    inputCtx.fillStyle = hintHex(h);
    inputCtx.fillRect(x, y, side, side);
    if (i === selected) {  // a white and a black ring: visible on any photo
      inputCtx.lineWidth = 2;
      inputCtx.strokeStyle = "#000";
      inputCtx.strokeRect(x - 3, y - 3, side + 6, side + 6);
      inputCtx.strokeStyle = "#fff";
      inputCtx.strokeRect(x - 1.5, y - 1.5, side + 3, side + 3);
    } else {
      inputCtx.lineWidth = 1;
      inputCtx.strokeStyle = "#000";
      inputCtx.strokeRect(x - 0.5, y - 0.5, side + 1, side + 1);
    }
  });
  for (const add of adds) {  // a click whose hint is on its way
    const side = Math.max(add.size / s, 3);
    inputCtx.lineWidth = 1;
    inputCtx.strokeStyle = "#fff";
    inputCtx.strokeRect(add.x / s - side / 2 - 0.5, add.y / s - side / 2 - 0.5, side + 1, side + 1);
  }
  if (cursor && input.matches(":focus-visible")) {  // focused from the keyboard
    inputCtx.lineWidth = 1;
    inputCtx.setLineDash([2, 2]);
    inputCtx.strokeStyle = "#ff0";
    inputCtx.strokeRect(cursor.x - 4.5, cursor.y - 4.5, 10, 10);
    inputCtx.setLineDash([]);
  }
  input.dataset.hints = String(hints.length);
  input.dataset.selected = String(selected);
  $("hint-count").textContent = `${hints.length} hint${hints.length === 1 ? "" : "s"}`
    + (selected >= 0 ? ` (hint ${selected + 1} selected)` : "");
  $("clear").disabled = $("download-hints").disabled = hints.length === 0;
  $("delete").disabled = selected < 0;
  $("undo").disabled = past.length === 0;
  $("redo").disabled = future.length === 0;
  drawPanel();
}

let plane = {L: null, image: null, stale: false};  // the picker's plane, once per lightness

function drawPicker(L) {
  const n = picker.width;
  if (plane.L !== L && plane.image && updates.inFlight) {
    // a new plane costs a few ms of the CPU the server is computing the preview on: it is
    // drawn once the preview has landed (send() asks), the old one shown meanwhile
    plane.stale = true;
  } else if (plane.L !== L) {
    const image = pickerCtx.createImageData(n, n);
    for (let j = 0; j < n; j++) {
      const b = AB_RANGE - (j + 0.5) * 2 * AB_RANGE / n;
      for (let i = 0; i < n; i++) {
        const a = -AB_RANGE + (i + 0.5) * 2 * AB_RANGE / n;
        const rgb = labToRgb(L, a, b);
        if (!inGamut(rgb)) continue;  // transparent: out of gamut at this lightness
        const k = (j * n + i) * 4;
        image.data[k] = byte(rgb[0]);
        image.data[k + 1] = byte(rgb[1]);
        image.data[k + 2] = byte(rgb[2]);
        image.data[k + 3] = 255;
      }
    }
    plane = {L, image, stale: false};
  }
  pickerCtx.putImageData(plane.image, 0, 0);
}

function pickerPosition(a, b) {
  const n = picker.width;
  return [(a + AB_RANGE) * n / (2 * AB_RANGE), (AB_RANGE - b) * n / (2 * AB_RANGE)];
}

function swatch(a, b, L, title, onPick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "swatch";
  const hex = labHex(L, a, b);
  button.style.background = hex;
  button.title = `${title} (${hex})`;
  button.setAttribute("aria-label", button.title);
  button.addEventListener("click", onPick);
  return button;
}

function drawPanel() {
  const hint = hints[selected];
  const enabled = Boolean(hint);
  $("hex").disabled = !enabled;
  picker.setAttribute("aria-disabled", String(!enabled));
  const L = hint ? lightnessAt(hint.x, hint.y) : 60;
  drawPicker(Math.round(L * 2) / 2);
  if (hint) {
    const hex = hintHex(hint);
    $("swatch").style.background = hex;
    if (document.activeElement !== $("hex")) $("hex").value = hint.hex || hex;
    $("lab-value").textContent = `L ${L.toFixed(0)}, a ${hint.a.toFixed(0)}, b ${hint.b.toFixed(0)}`;
    const [px, py] = pickerPosition(hint.a, hint.b);
    pickerCtx.lineWidth = 2;
    pickerCtx.strokeStyle = "#000";
    pickerCtx.beginPath(); pickerCtx.arc(px, py, 6, 0, 2 * Math.PI); pickerCtx.stroke();
    pickerCtx.strokeStyle = "#fff";
    pickerCtx.beginPath(); pickerCtx.arc(px, py, 4, 0, 2 * Math.PI); pickerCtx.stroke();
  } else {
    $("swatch").style.background = "";
    $("hex").value = "";
    $("lab-value").textContent = photo ? "add or select a hint" : "";
  }
  drawSwatches(hint, L);
}

let shownSwatches = "";  // what the swatch rows show, so they are rebuilt only when it changes

function drawSwatches(hint, L) {
  const offer = hint && suggested && suggested.hint === hint ? suggested : null;
  const key = JSON.stringify([Math.round(L * 2), offer && offer.suggestions, recent, Boolean(hint)]);
  if (key !== shownSwatches) {
    shownSwatches = key;
    const focused = document.activeElement;
    const rows = [$("suggestions"), $("recent")];
    const where = rows.map((row) => [...row.children].indexOf(focused));
    $("suggest-source").textContent = !offer ? "" : offer.source === "distribution"
      ? "(the model's likeliest colours)" : "(the model's colour, more saturated: no colour head)";
    $("suggestions").replaceChildren(...(offer ? offer.suggestions : []).map((s, i) => {
      const p = s.probability == null ? "" : `, ${(s.probability * 100).toFixed(0)} %`;
      return swatch(s.ab[0], s.ab[1], L, `suggestion ${i + 1}${p}`, () => setColor(s.ab[0], s.ab[1], null));
    }));
    $("recent").replaceChildren(...recent.map((c, i) => {
      const button = swatch(c.a, c.b, L, `recent colour ${i + 1}`, () => setColor(c.a, c.b, null));
      button.disabled = !hint;
      return button;
    }));
    rows.forEach((row, r) => { if (where[r] >= 0) row.children[Math.min(where[r], row.children.length - 1)]?.focus(); });
  }
  const items = offer ? offer.suggestions : [];
  [...$("suggestions").children].forEach((button, i) => {
    const s = items[i];
    button.classList.toggle("current", Math.abs(hint.a - s.ab[0]) + Math.abs(hint.b - s.ab[1]) < 0.5);
  });
}

// ---- previews: one request in flight, the latest edit wins ----------------------------------

// edits: counts changes of the hints; result.dataset.current is "true" while the preview shown
// is the full working-size result of the hints as they are (what a user at rest sees)
const updates = {inFlight: false, dirty: false, settled: true, timer: 0, edits: 0};

function changed() {  // the hints changed: the preview asked for first, then the page drawn
  requestUpdate();
  draw();
}

function requestUpdate() {
  updates.edits += 1;
  updates.dirty = true;
  updates.settled = false;
  result.dataset.current = "false";
  clearTimeout(updates.timer);
  pump();
}

function setBusy(busy) {
  $("result-section").classList.toggle("busy", busy);
  result.dataset.updating = String(busy);
}

// after the next frame is painted: work that would otherwise hold up showing a preview
const afterPaint = (fn) => requestAnimationFrame(() => setTimeout(fn));

function pump() {
  if (updates.inFlight || !photo) return;
  let fast;
  if (updates.dirty) {
    fast = photo.interactive;
    updates.dirty = false;
    if (!fast) updates.settled = true;
  } else if (!updates.settled) {
    // nothing newer: once edits have stopped for SETTLE_MS, the full working-size preview
    clearTimeout(updates.timer);
    updates.timer = setTimeout(() => {
      if (updates.inFlight || updates.dirty || updates.settled) return;
      updates.settled = true;
      send(false);
    }, SETTLE_MS);
    setBusy(false);
    return;
  } else {
    setBusy(false);
    return;
  }
  send(fast);
}

async function send(fast) {
  const current = photo, edits = updates.edits, add = adds[0];
  updates.inFlight = true;
  setBusy(true);
  try {
    const response = await postJson("/api/colorize", {id: current.id, hints: hints.map(wire), fast, add});
    const pixels = new Uint8ClampedArray(await response.arrayBuffer());
    if (photo !== current) return;
    if (add) {  // the preview has the new hint: it joins the hints before the preview is shown
      adds.shift();
      added(add, JSON.parse(response.headers.get("X-Suggestions")));
      if (adds.length) updates.dirty = true;  // the next click's hint
    }
    const w = Number(response.headers.get("X-Width")), h = Number(response.headers.get("X-Height"));
    resultCtx.putImageData(new ImageData(pixels, w, h), 0, 0);
    result.dataset.quality = response.headers.get("X-Fast") === "1" ? "fast" : "full";
    result.dataset.current = String(result.dataset.quality === "full" && edits === updates.edits);
    result.dataset.serverMs = response.headers.get("X-Server-Ms");
    result.dataset.threads = response.headers.get("X-Threads");
    result.dataset.version = String(Number(result.dataset.version) + 1);
    $("timing").textContent = `updated in ${Number(result.dataset.serverMs).toFixed(0)} ms`
      + ` (server${result.dataset.quality === "fast" ? ", fast preview" : ""})`;
    if (status.classList.contains("error")) say("");
  } catch (error) {
    if (photo === current) {
      say(error.message, true);
      if (error.status === 503) {  // busy: try again shortly with the latest hints
        updates.dirty = true;
        await new Promise((resolve) => setTimeout(resolve, 500));
      } else if (add) {
        adds.shift();  // a click the server refused: no hint
      }
    }
  } finally {
    if (add) draw();
    updates.inFlight = false;
    pump();
    if (plane.stale && !updates.inFlight) afterPaint(drawPanel);
  }
}

// ---- editing, undo and redo ------------------------------------------------------------------

function snapshot() {
  return {hints: hints.map((h) => ({...h})), selected};
}

function remember() {  // before every edit
  past.push(snapshot());
  if (past.length > MAX_HISTORY) past.shift();
  future.length = 0;
}

function restore(state) {
  hints = state.hints;
  selected = Math.min(state.selected, hints.length - 1);
  suggested = null;
  changed();
  if (selected >= 0) fetchSuggestions(selected);
}

function undo() {
  if (!past.length) return;
  future.push(snapshot());
  restore(past.pop());
}

function redo() {
  if (!future.length) return;
  past.push(snapshot());
  restore(future.pop());
}

function useColor(a, b) {  // remembered in the recently used colours
  recent = [{a, b}, ...recent.filter((c) => Math.hypot(c.a - a, c.b - b) > 2)].slice(0, MAX_RECENT);
}

function setColor(a, b, hex, record = true) {  // of the selected hint
  const hint = hints[selected];
  if (!hint) return;
  if (record) remember();
  hint.a = a;
  hint.b = b;
  hint.hex = hex;
  if (record) useColor(a, b);
  changed();
}

function select(index) {
  selected = index;
  suggested = null;
  draw();
  if (index >= 0) fetchSuggestions(index);
}

function deleteSelected() {
  if (selected < 0) return;
  remember();
  hints.splice(selected, 1);
  selected = -1;
  suggested = null;
  changed();
}

async function suggestAt(x, y, others) {
  return (await postJson("/api/suggest", {
    id: photo.id, hints: others.map(wire), x, y, count: 8,
  })).json();
}

async function fetchSuggestions(index) {  // for an existing hint, given the others
  const hint = hints[index];
  try {
    const body = await suggestAt(hint.x, hint.y, hints.filter((h) => h !== hint));
    if (hints[selected] === hint) {
      suggested = {hint, ...body};
      drawPanel();
    }
  } catch (error) {
    say(error.message, true);
  }
}

function addHint(px, py) {  // a new hint at working pixel (px, py), in the suggested colour
  const s = scale();
  // the server suggests its colour and previews it in one request (send(): adds)
  adds.push({
    x: Math.min((px + 0.5) * s, photo.width - 0.5),
    y: Math.min((py + 0.5) * s, photo.height - 0.5),
    size: Math.max(1, Math.round(Number($("size").value) * s)),
  });
  changed();
}

function added(add, body) {  // the server's answer to a new hint: it joins the hints
  remember();
  const start = body.suggestions[body.start];
  const hint = {x: add.x, y: add.y, a: start.ab[0], b: start.ab[1], hex: null, size: add.size};
  hints.push(hint);
  selected = hints.length - 1;
  suggested = {hint, ...body};
  useColor(hint.a, hint.b);
}

function hintAt(px, py) {  // the topmost hint under working pixel (px, py), or -1
  const s = scale();
  const slack = 3 * input.width / input.getBoundingClientRect().width;  // 3 CSS pixels
  for (let i = hints.length - 1; i >= 0; i--) {
    const h = hints[i];
    const half = Math.max(h.size / s, 3) / 2 + slack;
    if (Math.abs(px - h.x / s) <= half && Math.abs(py - h.y / s) <= half) return i;
  }
  return -1;
}

function canvasPoint(event) {  // the event's position in working pixels (fractional)
  const rect = input.getBoundingClientRect();
  return [
    Math.min(Math.max((event.clientX - rect.left) * input.width / rect.width, 0), input.width - 0.01),
    Math.min(Math.max((event.clientY - rect.top) * input.height / rect.height, 0), input.height - 0.01),
  ];
}

let drag = null;  // {index, moved}: a hint being moved

input.addEventListener("pointerdown", (event) => {
  if (!photo || event.button !== 0) return;
  const [px, py] = canvasPoint(event);
  cursor = {x: Math.floor(px), y: Math.floor(py)};
  const index = hintAt(px, py);
  if (index < 0) {
    addHint(Math.floor(px), Math.floor(py));
    return;
  }
  select(index);
  drag = {index, moved: false};
  input.setPointerCapture(event.pointerId);
});

input.addEventListener("pointermove", (event) => {
  if (!drag) return;
  const [px, py] = canvasPoint(event);
  const hint = hints[drag.index];
  const s = scale();
  const x = Math.min((Math.floor(px) + 0.5) * s, photo.width - 0.5);
  const y = Math.min((Math.floor(py) + 0.5) * s, photo.height - 0.5);
  if (x === hint.x && y === hint.y) return;
  if (!drag.moved) remember();
  drag.moved = true;
  hint.x = x;
  hint.y = y;
  cursor = {x: Math.floor(px), y: Math.floor(py)};
  changed();
});

function endDrag() {
  if (drag && drag.moved) fetchSuggestions(drag.index);  // its new place's colours
  drag = null;
}
input.addEventListener("pointerup", endDrag);
input.addEventListener("pointercancel", endDrag);
input.addEventListener("focus", draw);
input.addEventListener("blur", draw);

input.addEventListener("keydown", (event) => {
  if (!photo) return;
  const step = event.shiftKey ? 10 : 1;
  const moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step]};
  if (!cursor) cursor = {x: Math.floor(input.width / 2), y: Math.floor(input.height / 2)};
  if (event.key in moves) {
    event.preventDefault();
    const [dx, dy] = moves[event.key];
    cursor = {
      x: Math.min(Math.max(cursor.x + dx, 0), input.width - 1),
      y: Math.min(Math.max(cursor.y + dy, 0), input.height - 1),
    };
    draw();
  } else if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    const index = hintAt(cursor.x + 0.5, cursor.y + 0.5);
    if (index >= 0) select(index); else addHint(cursor.x, cursor.y);
  }
});

// ---- the picker ------------------------------------------------------------------------------

let picking = false;

function pick(event) {
  const hint = hints[selected];
  if (!hint) return;
  const rect = picker.getBoundingClientRect();
  const a = -AB_RANGE + (event.clientX - rect.left) / rect.width * 2 * AB_RANGE;
  const b = AB_RANGE - (event.clientY - rect.top) / rect.height * 2 * AB_RANGE;
  const [ga, gb] = intoGamut(lightnessAt(hint.x, hint.y), a, b);
  setColor(ga, gb, null, false);
}

picker.addEventListener("pointerdown", (event) => {
  if (!hints[selected] || event.button !== 0) return;
  remember();
  picking = true;
  picker.setPointerCapture(event.pointerId);
  pick(event);
});
picker.addEventListener("pointermove", (event) => { if (picking) pick(event); });
function endPick() {
  if (!picking) return;
  picking = false;
  const hint = hints[selected];
  if (hint) useColor(hint.a, hint.b);
  drawPanel();
}
picker.addEventListener("pointerup", endPick);
picker.addEventListener("pointercancel", endPick);

picker.addEventListener("keydown", (event) => {
  const hint = hints[selected];
  const step = event.shiftKey ? 10 : 2;
  const moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step]};
  if (!hint || !(event.key in moves)) return;
  event.preventDefault();
  if (!event.repeat) remember();
  const [da, db] = moves[event.key];
  const [a, b] = intoGamut(lightnessAt(hint.x, hint.y), hint.a + da, hint.b + db);
  setColor(a, b, null, false);
  useColor(a, b);
});

$("hex").addEventListener("change", () => {
  const value = $("hex").value.trim().toLowerCase();
  const hex = value.startsWith("#") ? value : "#" + value;
  if (!/^#[0-9a-f]{6}$/.test(hex)) {
    say(`${value} is not a colour: type #rrggbb`, true);
    return;
  }
  const [a, b] = hexToAb(hex);
  setColor(a, b, hex);
});

// ---- keys and buttons ------------------------------------------------------------------------

document.addEventListener("keydown", (event) => {
  const typing = event.target.matches("input[type=text]");
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && !typing && (key === "z" || key === "y")) {
    event.preventDefault();
    if (key === "y" || event.shiftKey) redo(); else undo();
  } else if (!typing && (event.key === "Delete" || event.key === "Backspace") && selected >= 0) {
    event.preventDefault();
    deleteSelected();
  } else if (event.key === "Escape" && selected >= 0) {
    select(-1);
  }
});

$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("delete").addEventListener("click", deleteSelected);
$("clear").addEventListener("click", () => {
  remember();
  hints = [];
  selected = -1;
  suggested = null;
  changed();
});

let sizeEdit = false;  // one undo step for a whole slider drag
$("size").addEventListener("input", () => {
  $("size-value").textContent = $("size").value;
  const hint = hints[selected];
  if (!hint) return;
  if (!sizeEdit) remember();
  sizeEdit = true;
  hint.size = Math.max(1, Math.round(Number($("size").value) * scale()));
  changed();
});
$("size").addEventListener("change", () => { sizeEdit = false; });

function save(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

$("download").addEventListener("click", async () => {
  const button = $("download");
  const format = $("format").value;
  const current = photo;
  const started = performance.now();
  const label = button.textContent;
  const tick = () => {
    button.textContent = `Preparing... ${((performance.now() - started) / 1000).toFixed(0)} s`;
  };
  tick();
  const timer = setInterval(tick, 500);
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const response = await postJson("/api/download", {id: current.id, hints: hints.map(wire), format});
    save(await response.blob(), `${current.name}_color.${format === "jpeg" ? "jpg" : "png"}`);
    say(`Saved the ${current.width}x${current.height} result as ${format.toUpperCase()}.`);
  } catch (error) {
    say(error.message, true);
  } finally {
    clearInterval(timer);
    button.textContent = label;
    button.disabled = !photo;
    button.removeAttribute("aria-busy");
  }
});

$("download-hints").addEventListener("click", () => {
  const text = JSON.stringify(hints.map(wire), null, 1);
  save(new Blob([text], {type: "application/json"}), `${photo.name}.json`);
});

$("load-hints").addEventListener("click", () => $("hints-file").click());
$("hints-file").addEventListener("change", async () => {
  const file = $("hints-file").files[0];
  $("hints-file").value = "";
  if (!file || !photo) return;
  const current = photo;
  try {
    if (file.size > MAX_HINTS_FILE) throw new Error(`the file is larger than ${MAX_HINTS_FILE >> 10} KB`);
    let data;
    try {
      data = JSON.parse(await file.text());
    } catch (error) {
      throw new Error("the file is not valid JSON");
    }
    // a list of hints, or {"hints": [...]}; the server checks them as colorize.py does
    const list = data && !Array.isArray(data) && typeof data === "object" && "hints" in data ? data.hints : data;
    const body = await (await postJson("/api/hints", {id: current.id, hints: list})).json();
    if (photo !== current) return;
    remember();
    hints = body.hints.map((h) => ({x: h.x, y: h.y, a: h.a, b: h.b, size: h.size, hex: h.hex}));
    selected = -1;
    suggested = null;
    changed();
    say(`Loaded ${hints.length} hint${hints.length === 1 ? "" : "s"} from ${file.name}.`);
  } catch (error) {
    say(`${file.name}: ${error.message}`, true);
  }
});

// ---- photos ----------------------------------------------------------------------------------

function fit() {  // both images as large as their frames allow, the photo's aspect ratio kept
  for (const canvas of [input, result]) {
    const frame = canvas.parentElement;  // its padding leaves room for the focus outline
    const pad = 2 * parseFloat(getComputedStyle(frame).paddingLeft);
    const k = Math.min((frame.clientWidth - pad) / canvas.width, (frame.clientHeight - pad) / canvas.height);
    if (!(k > 0)) continue;
    canvas.style.width = `${Math.floor(canvas.width * k)}px`;
    canvas.style.height = `${Math.floor(canvas.height * k)}px`;
  }
}
new ResizeObserver(fit).observe(document.querySelector("main"));

async function openPhoto(request) {
  say("Loading ...");
  try {
    const body = await (await api(request.path, request.options)).json();
    const gray = await loadImage(body.gray);
    const first = await loadImage(body.result);
    photo = {id: body.id, name: body.name, width: body.width, height: body.height,
      interactive: body.interactive};
    for (const canvas of [input, result]) {
      canvas.width = gray.width;
      canvas.height = gray.height;
    }
    inputCtx.drawImage(gray, 0, 0);
    grayPixels = inputCtx.getImageData(0, 0, gray.width, gray.height);
    resultCtx.drawImage(first, 0, 0);
    result.dataset.quality = "full";
    result.dataset.current = "true";
    result.dataset.version = String(Number(result.dataset.version) + 1);
    hints = [];
    selected = -1;
    cursor = null;
    suggested = null;
    past.length = future.length = adds.length = 0;
    Object.assign(updates, {dirty: false, settled: true});
    fit();
    draw();
    for (const id of ["download", "load-hints"]) $(id).disabled = false;
    say(`${body.name}: ${body.width}x${body.height} photo and its automatic colorization. `
      + "Click the grayscale to add hints.");
  } catch (error) {
    say(error.message, true);
  }
}

$("upload-button").addEventListener("click", () => $("upload").click());
$("upload").addEventListener("change", () => {
  const file = $("upload").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  openPhoto({path: "/api/photos", options: {method: "POST", body: form}});
  $("upload").value = "";
});

$("samples").addEventListener("change", () => {
  const name = $("samples").value;
  if (name) openPhoto({path: `/api/samples/${encodeURIComponent(name)}`, options: {method: "POST"}});
});

(async () => {
  drawPanel();
  try {
    const names = await (await api("/api/samples")).json();
    for (const name of names) $("samples").add(new Option(name, name));
  } catch (error) {
    say(error.message, true);
  }
})();
