// What the served page (serve/static/app.js) and the static site (serve/site/app.js) share: the
// drawing pad, the probability bars, the latent plane with its legend, the status line and the
// model choice. Each page's app.js imports this module and gives `start` what it does its own
// way: the served page asks the /v1 API, the site runs the models with onnxruntime-web.

export const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const INK_WIDTH = 20;  // on the 280-pixel pad: MNIST's strokes are about 2 of its 28 pixels

export const $ = (id) => document.getElementById(id);

// What both pages show; each page adds its own fields.
export const state = {
  model: $("model").value,
  inked: false,       // whether the pad holds any ink
  drawn: null,        // the drawn digit's embedding [z0, z1] under the current model
  picked: null,       // the last point picked on the plane
  points: null,       // {z: [[z0, z1], ...], labels: [...]} of the shipped sample
  bounds: null,       // the plane's extent: {x0, x1, y0, y1}
  samples: null,      // latent points marked on the plane: the site's last digit samples
  drawSeq: 0,         // answers to older strokes are dropped
  decoding: false,
  pendingDecode: null,
};

// The page's own ways, given to `start`: readDrawing() after each stroke, decodePng(z) to a PNG
// blob of the digit at the latent point z, loadModel() when the model changes, report(error).
let page = null;

export function clearReport() { $("status").textContent = ""; }

export function showBlob(img, blob) {
  const old = img.dataset.url;
  img.dataset.url = URL.createObjectURL(blob);
  img.src = img.dataset.url;
  img.hidden = false;
  if (old) URL.revokeObjectURL(old);
}

// --- the drawing pad ---------------------------------------------------------------------------

export const pad = $("pad");
// The site reads the pad's pixels back after each stroke (its mnistForm).
const ink = pad.getContext("2d", { willReadFrequently: true });

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

function startStroke(event) {
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
}

function moveStroke(event) {
  if (!stroke) return;
  const next = padPoint(event);
  ink.beginPath();
  ink.moveTo(stroke[0], stroke[1]);
  ink.lineTo(next[0], next[1]);
  ink.stroke();
  stroke = next;
}

function endStroke() {
  if (!stroke) return;
  stroke = null;
  page.readDrawing();
}

// The drawing's label and the probabilities of the 10 digits.
export function showLabel(label, probs) {
  $("label").textContent = String(label);
  $("confidence").textContent = `p = ${probs[label].toFixed(3)}`;
  showBars(probs);
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

// The shipped sample's embeddings under the current model, the plane fitted around them.
export function showPoints(points) {
  state.points = points;
  const xs = points.z.map((p) => p[0]);
  const ys = points.z.map((p) => p[1]);
  const margin = (lo, hi) => 0.06 * (hi - lo || 1);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  state.bounds = { x0: x0 - margin(x0, x1), x1: x1 + margin(x0, x1),
                   y0: y0 - margin(y0, y1), y1: y1 + margin(y0, y1) };
  plane.dataset.bounds = JSON.stringify(state.bounds);
  drawPlane();
}

// The drawn digit's embedding z, marked on the plane.
export function showDrawn(z) {
  state.drawn = [z[0], z[1]];
  plane.dataset.drawn = JSON.stringify(state.drawn);
  drawPlane();
}

export function drawPlane() {
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
  if (state.samples) {
    paint.fillStyle = "#000";
    for (const z of state.samples) {
      const [x, y] = toPixel(z);
      paint.fillRect(x - 2.5, y - 2.5, 5, 5);
    }
  }
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
export async function decodeAt(z) {
  state.picked = z;
  drawPlane();
  $("z").textContent = `z = [${z[0].toFixed(2)}, ${z[1].toFixed(2)}]`;
  if (state.decoding) { state.pendingDecode = z; return; }
  state.decoding = true;
  try {
    showBlob($("decoded"), await page.decodePng(z));
    $("decoded").dataset.z = JSON.stringify(z);
    clearReport();
  } catch (error) {
    page.report(error);
  } finally {
    state.decoding = false;
  }
  const next = state.pendingDecode;
  state.pendingDecode = null;
  if (next) decodeAt(next);
}

let picking = false;

function startPicking(event) {
  if (!state.bounds) return;
  event.preventDefault();
  plane.setPointerCapture(event.pointerId);
  picking = true;
  decodeAt(toLatent(event));
}

function showLegend() {
  COLOURS.forEach((colour, digit) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;  // set through the DOM: the pages' CSP forbids inline styles
    item.append(swatch, String(digit));
    $("legend").appendChild(item);
  });
}

// --- the page ----------------------------------------------------------------------------------

// Wire the pad, the plane and the model choice to the page's own `hooks` ({readDrawing,
// decodePng, loadModel, report}, as above), show the empty pad and the legend, and load the
// chosen model.
export function start(hooks) {
  page = hooks;
  pad.addEventListener("pointerdown", startStroke);
  pad.addEventListener("pointermove", moveStroke);
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  $("clear").addEventListener("click", clearPad);
  plane.addEventListener("pointerdown", startPicking);
  plane.addEventListener("pointermove", (event) => { if (picking) decodeAt(toLatent(event)); });
  plane.addEventListener("pointerup", () => { picking = false; });
  plane.addEventListener("pointercancel", () => { picking = false; });
  $("model").addEventListener("change", () => {
    state.model = $("model").value;
    state.drawn = null;
    delete plane.dataset.drawn;
    state.points = null;
    drawPlane();
    page.loadModel();
  });
  showLegend();
  clearPad();
  page.loadModel();
}
