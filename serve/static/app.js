// The onnxdigits page: draw a digit and see its label, explore a model's latent plane, see its grid.
// Plain browser JavaScript talking to the /v1 API; no build step, nothing loaded from elsewhere.
"use strict";

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const INK_WIDTH = 20;  // on the 280-pixel pad: MNIST's strokes are about 2 of its 28 pixels

const $ = (id) => document.getElementById(id);
const state = {
  model: $("model").value,
  token: sessionStorage.getItem("onnxdigits-token") || "",
  inked: false,       // whether the pad holds any ink
  drawn: null,        // the drawn digit's embedding [z0, z1] under the current model
  picked: null,       // the last point picked on the plane
  points: null,       // {z: [[z0, z1], ...], labels: [...]} of the shipped sample
  bounds: null,       // the plane's extent: {x0, x1, y0, y1}
  drawSeq: 0,         // answers to older strokes are dropped
  decoding: false,
  pendingDecode: null,
  digit: null,        // the digit last asked for, drawn again when the model changes
};

// --- the API ---------------------------------------------------------------------------------

class ApiError extends Error {}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new ApiError("This service needs a token: enter it above.");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new ApiError(message);
  }
  return response;
}

function report(error) {
  $("status").textContent = error instanceof ApiError ? error.message : `Error: ${error}`;
}

function clearReport() { $("status").textContent = ""; }

function showBlob(img, blob) {
  const old = img.dataset.url;
  img.dataset.url = URL.createObjectURL(blob);
  img.src = img.dataset.url;
  img.hidden = false;
  if (old) URL.revokeObjectURL(old);
}

// --- the drawing pad ---------------------------------------------------------------------------

const pad = $("pad");
const ink = pad.getContext("2d");

function clearPad() {
  ink.fillStyle = "#000";  // opaque black: the PNG then reads as MNIST's light-on-dark
  ink.fillRect(0, 0, pad.width, pad.height);
  state.inked = false;
  state.drawn = null;
  delete plane.dataset.drawn;
  state.drawSeq += 1;
  $("label").textContent = "–";
  $("confidence").textContent = "";
  showBars(null);
  drawPlane();
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

let stroke = null;

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  stroke = padPoint(event);
  ink.strokeStyle = "#fff";
  ink.fillStyle = "#fff";
  ink.lineWidth = INK_WIDTH;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.beginPath();
  ink.arc(stroke[0], stroke[1], INK_WIDTH / 2, 0, 2 * Math.PI);
  ink.fill();
  state.inked = true;
});

pad.addEventListener("pointermove", (event) => {
  if (!stroke) return;
  const next = padPoint(event);
  ink.beginPath();
  ink.moveTo(stroke[0], stroke[1]);
  ink.lineTo(next[0], next[1]);
  ink.stroke();
  stroke = next;
});

function endStroke() {
  if (!stroke) return;
  stroke = null;
  readDrawing();
}

pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
$("clear").addEventListener("click", clearPad);

function padPng() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

// After each stroke: the label and probabilities, and the digit's place on the latent plane.
async function readDrawing() {
  if (!state.inked) return;
  const seq = ++state.drawSeq;
  const png = await padPng();
  try {
    const classify = api("v1/classify", {
      method: "POST", headers: { "Content-Type": "image/png" }, body: png,
    }).then((r) => r.json());
    const embed = embedDrawing(png, seq);
    const answer = await classify;
    if (seq !== state.drawSeq) return;
    const label = answer.labels[0];
    const probs = answer.probabilities[0];
    $("label").textContent = String(label);
    $("confidence").textContent = `p = ${probs[label].toFixed(3)}`;
    showBars(probs);
    await embed;
    clearReport();
  } catch (error) {
    report(error);
  }
}

async function embedDrawing(png, seq) {
  const model = state.model;
  const response = await api(`v1/embed?model=${model}`, {
    method: "POST", headers: { "Content-Type": "image/png" }, body: png,
  });
  const answer = await response.json();
  if (seq !== state.drawSeq || model !== state.model) return;
  state.drawn = answer.embeddings[0];
  plane.dataset.drawn = JSON.stringify(state.drawn);
  drawPlane();
}

function showBars(probs) {
  const bars = $("bars");
  if (!bars.children.length) {
    for (let digit = 0; digit < 10; digit++) {
      const item = document.createElement("li");
      item.innerHTML = `<span>${digit}</span><span class="track"><span class="fill"></span></span>`
        + `<span class="value"></span>`;
      bars.appendChild(item);
    }
  }
  const top = probs ? probs.indexOf(Math.max(...probs)) : -1;
  [...bars.children].forEach((item, digit) => {
    const p = probs ? probs[digit] : 0;
    item.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    item.querySelector(".value").textContent = probs ? p.toFixed(3) : "";
    item.classList.toggle("top", digit === top);
    item.dataset.p = String(p);
  });
}

// --- the latent plane --------------------------------------------------------------------------

const plane = $("plane");
const paint = plane.getContext("2d");

function toPixel([x, y]) {
  const b = state.bounds;
  return [(x - b.x0) / (b.x1 - b.x0) * plane.width, (b.y1 - y) / (b.y1 - b.y0) * plane.height];
}

function toLatent(event) {
  const box = plane.getBoundingClientRect();
  const b = state.bounds;
  const px = (event.clientX - box.left) / box.width;
  const py = (event.clientY - box.top) / box.height;
  return [b.x0 + px * (b.x1 - b.x0), b.y1 - py * (b.y1 - b.y0)];
}

async function loadPoints() {
  const model = state.model;
  const answer = await (await api(`v1/latent?model=${model}`)).json();
  if (model !== state.model) return;
  state.points = answer;
  const xs = answer.z.map((p) => p[0]);
  const ys = answer.z.map((p) => p[1]);
  const margin = (lo, hi) => 0.06 * (hi - lo || 1);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  state.bounds = { x0: x0 - margin(x0, x1), x1: x1 + margin(x0, x1),
                   y0: y0 - margin(y0, y1), y1: y1 + margin(y0, y1) };
  plane.dataset.bounds = JSON.stringify(state.bounds);
  drawPlane();
}

function drawPlane() {
  paint.fillStyle = "#fff";
  paint.fillRect(0, 0, plane.width, plane.height);
  if (!state.points) return;
  // The axes through the origin, where the prior N(0, I) is centred.
  paint.strokeStyle = "#e3e6ec";
  paint.lineWidth = 1;
  const [ox, oy] = toPixel([0, 0]);
  paint.beginPath();
  paint.moveTo(ox, 0); paint.lineTo(ox, plane.height);
  paint.moveTo(0, oy); paint.lineTo(plane.width, oy);
  paint.stroke();
  paint.fillStyle = "#5b6475";
  paint.font = "12px 'DejaVu Sans', sans-serif";
  paint.fillText("z[0] →", plane.width - 48, Math.min(Math.max(oy - 6, 14), plane.height - 6));
  paint.fillText("↑ z[1]", Math.min(Math.max(ox + 6, 4), plane.width - 48), 14);
  paint.globalAlpha = 0.75;
  state.points.z.forEach((z, i) => {
    const [x, y] = toPixel(z);
    paint.fillStyle = COLOURS[state.points.labels[i]];
    paint.beginPath();
    paint.arc(x, y, 2.4, 0, 2 * Math.PI);
    paint.fill();
  });
  paint.globalAlpha = 1;
  if (state.picked) {
    const [x, y] = toPixel(state.picked);
    paint.strokeStyle = "#000";
    paint.lineWidth = 2;
    paint.beginPath();
    paint.moveTo(x - 7, y); paint.lineTo(x + 7, y);
    paint.moveTo(x, y - 7); paint.lineTo(x, y + 7);
    paint.stroke();
  }
  if (state.drawn) {
    const [x, y] = toPixel(state.drawn);
    paint.lineWidth = 3;
    paint.strokeStyle = "#fff";
    paint.beginPath(); paint.arc(x, y, 9, 0, 2 * Math.PI); paint.stroke();
    paint.lineWidth = 2;
    paint.strokeStyle = "#000";
    paint.beginPath(); paint.arc(x, y, 9, 0, 2 * Math.PI); paint.stroke();
  }
}

// One decode in flight at a time; while dragging, the latest point waits its turn.
async function decodeAt(z) {
  state.picked = z;
  drawPlane();
  $("z").textContent = `z = [${z[0].toFixed(2)}, ${z[1].toFixed(2)}]`;
  if (state.decoding) { state.pendingDecode = z; return; }
  state.decoding = true;
  try {
    const response = await api(`v1/decode?model=${state.model}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "image/png" },
      body: JSON.stringify({ z: [z] }),
    });
    showBlob($("decoded"), await response.blob());
    $("decoded").dataset.z = JSON.stringify(z);
    clearReport();
  } catch (error) {
    report(error);
  } finally {
    state.decoding = false;
  }
  const next = state.pendingDecode;
  state.pendingDecode = null;
  if (next) decodeAt(next);
}

let picking = false;
plane.addEventListener("pointerdown", (event) => {
  if (!state.bounds) return;
  event.preventDefault();
  plane.setPointerCapture(event.pointerId);
  picking = true;
  decodeAt(toLatent(event));
});
plane.addEventListener("pointermove", (event) => { if (picking) decodeAt(toLatent(event)); });
plane.addEventListener("pointerup", () => { picking = false; });
plane.addEventListener("pointercancel", () => { picking = false; });

function showLegend() {
  COLOURS.forEach((colour, digit) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;  // set through the DOM: the page's CSP forbids inline styles
    item.append(swatch, String(digit));
    $("legend").appendChild(item);
  });
}

// --- digits on request -------------------------------------------------------------------------

const REQUESTED = 16;  // digits drawn per click: a 4x4 tile
let requestSeq = 0;

async function requestDigit(digit) {
  const seq = ++requestSeq;
  const model = state.model;
  state.digit = digit;
  [...$("digits").children].forEach((button, d) => {
    button.setAttribute("aria-pressed", String(d === digit));
  });
  try {
    const response = await api(`v1/sample?model=${model}&digit=${digit}&count=${REQUESTED}`);
    const blob = await response.blob();
    if (seq !== requestSeq) return;
    showBlob($("requested"), blob);
    $("requested").dataset.digit = String(digit);
    $("requested").dataset.model = model;
    clearReport();
  } catch (error) {
    if (seq === requestSeq) report(error);
  }
}

function showDigitButtons() {
  for (let digit = 0; digit < 10; digit++) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = String(digit);
    button.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-label", `Draw samples of ${digit}`);
    button.addEventListener("click", () => requestDigit(digit));
    $("digits").appendChild(button);
  }
}

// --- the grid, the model choice and the token ----------------------------------------------------

async function loadGrid() {
  const model = state.model;
  const response = await api(`v1/grid?model=${model}&n=15`);
  const blob = await response.blob();
  if (model === state.model) showBlob($("grid"), blob);
}

async function loadModel() {
  try {
    await Promise.all([loadPoints(), loadGrid()]);
    if (state.inked) await embedDrawing(await padPng(), state.drawSeq);
    if (state.picked) await decodeAt(state.picked);
    clearReport();
  } catch (error) {
    report(error);
  }
  if (state.digit !== null) await requestDigit(state.digit);  // reports its own errors
}

$("model").addEventListener("change", () => {
  state.model = $("model").value;
  state.drawn = null;
  delete plane.dataset.drawn;
  state.points = null;
  drawPlane();
  loadModel();
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("onnxdigits-token", state.token);
  $("token-form").hidden = true;
  clearReport();
  loadModel();
  readDrawing();
});

showLegend();
showDigitButtons();
clearPad();
loadModel();
