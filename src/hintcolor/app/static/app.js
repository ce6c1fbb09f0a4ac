// hintcolor page: plain JS, no external scripts, so it works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("input");
const ctx = canvas.getContext("2d");
const result = $("result");
const status = $("status");

let photo = null;        // {id, width, height}
let grayImage = null;    // Image of the working-size grayscale
let hints = [];          // [{x, y, color, size}] in photo pixels (the colorize.py format)
let selected = -1;       // index of the hint the colour picker edits
let requestSeq = 0;      // responses older than the latest request are ignored

function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = reject;
    img.src = src;
  });
}

function scale() {  // photo pixels per preview pixel
  return photo.width / canvas.width;
}

function draw() {
  if (!grayImage) return;
  ctx.drawImage(grayImage, 0, 0);
  const s = scale();
  hints.forEach((h, i) => {
    const side = Math.max(h.size / s, 3);
    const x = h.x / s - side / 2, y = h.y / s - side / 2;
    ctx.fillStyle = h.color;
    ctx.fillRect(x, y, side, side);
    ctx.lineWidth = i === selected ? 2 : 1;
    ctx.strokeStyle = i === selected ? "#ffffff" : "#000000";
    ctx.strokeRect(x - 1, y - 1, side + 2, side + 2);
  });
  $("hint-count").textContent = `${hints.length} hint${hints.length === 1 ? "" : "s"}`;
  $("undo").disabled = $("clear").disabled = hints.length === 0;
  $("download-hints").disabled = hints.length === 0;
  $("color").disabled = selected < 0;
}

async function showResult(dataUrl) {
  await loadImage(dataUrl);  // decoded before it is shown: no flash, pixels readable at once
  result.src = dataUrl;
  result.dataset.version = String(Number(result.dataset.version) + 1);
}

async function colorize() {
  const seq = ++requestSeq;
  try {
    const response = await api("/api/colorize", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({id: photo.id, hints}),
    });
    const body = await response.json();
    if (seq !== requestSeq) return;
    await showResult(body.result);
    say(`${body.hints} hint${body.hints === 1 ? "" : "s"}: updated in ${body.ms.toFixed(0)} ms (server)`);
  } catch (error) {
    if (seq === requestSeq) say(error.message, true);
  }
}

async function openPhoto(request) {
  say("Loading ...");
  try {
    const body = await (await api(request.path, request.options)).json();
    photo = {id: body.id, width: body.width, height: body.height};
    grayImage = await loadImage(body.gray);
    canvas.width = grayImage.width;
    canvas.height = grayImage.height;
    hints = [];
    selected = -1;
    draw();
    await showResult(body.result);
    $("download").disabled = false;
    say(`${body.width}x${body.height} photo, automatic colorization (0 hints). Click to add hints.`);
  } catch (error) {
    say(error.message, true);
  }
}

function predictedColor(px, py) {  // the model's current colour at a preview pixel, as #rrggbb
  const probe = document.createElement("canvas");
  probe.width = canvas.width;
  probe.height = canvas.height;
  const pctx = probe.getContext("2d");
  pctx.drawImage(result, 0, 0, probe.width, probe.height);
  const [r, g, b] = pctx.getImageData(px, py, 1, 1).data;
  return "#" + [r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("");
}

canvas.addEventListener("click", (event) => {
  if (!photo) return;
  const rect = canvas.getBoundingClientRect();
  const px = Math.floor((event.clientX - rect.left) * canvas.width / rect.width);
  const py = Math.floor((event.clientY - rect.top) * canvas.height / rect.height);
  const s = scale();
  const color = predictedColor(px, py);
  hints.push({
    x: Math.min((px + 0.5) * s, photo.width - 0.5),
    y: Math.min((py + 0.5) * s, photo.height - 0.5),
    color,
    size: Math.max(1, Math.round(Number($("size").value) * s)),
  });
  selected = hints.length - 1;
  $("color").value = color;
  draw();
  colorize();
});

$("color").addEventListener("input", () => {
  if (selected < 0) return;
  hints[selected].color = $("color").value;
  draw();
  colorize();
});

$("size").addEventListener("input", () => { $("size-value").textContent = $("size").value; });

$("undo").addEventListener("click", () => {
  hints.pop();
  selected = hints.length - 1;
  if (selected >= 0) $("color").value = hints[selected].color;
  draw();
  colorize();
});

$("clear").addEventListener("click", () => {
  hints = [];
  selected = -1;
  draw();
  colorize();
});

function save(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

$("download").addEventListener("click", async () => {
  say("Colorizing at full resolution ...");
  try {
    const response = await api("/api/download", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({id: photo.id, hints}),
    });
    save(await response.blob(), "colorized.png");
    say(`Saved the ${photo.width}x${photo.height} result.`);
  } catch (error) {
    say(error.message, true);
  }
});

$("download-hints").addEventListener("click", () => {
  save(new Blob([JSON.stringify(hints, null, 1)], {type: "application/json"}), "hints.json");
});

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
  try {
    const names = await (await api("/api/samples")).json();
    for (const name of names) $("samples").add(new Option(name, name));
  } catch (error) {
    say(error.message, true);
  }
})();
