// The onnxdigits page: draw a digit and see its label, explore a model's latent plane, see its grid.
// Plain browser JavaScript talking to the /v1 API; no build step, nothing loaded from elsewhere.
// The pad, the bars and the plane are page.js's, shared with the static site; here is what asks
// the API.

import {
  $, state, clearReport, showBlob, pad, showLabel, showPoints, showDrawn, decodeAt, start,
} from "./page.js";

Object.assign(state, {
  token: sessionStorage.getItem("onnxdigits-token") || "",
  digit: null,        // the digit last asked for, drawn again when the model changes
});

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

// --- the drawing ---------------------------------------------------------------------------------

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
    showLabel(answer.labels[0], answer.probabilities[0]);
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
  showDrawn(answer.embeddings[0]);
}

// --- the latent plane --------------------------------------------------------------------------

async function loadPoints() {
  const model = state.model;
  const answer = await (await api(`v1/latent?model=${model}`)).json();
  if (model === state.model) showPoints(answer);
}

async function decodePng(z) {
  const response = await api(`v1/decode?model=${state.model}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Accept": "image/png" },
    body: JSON.stringify({ z: [z] }),
  });
  return response.blob();
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

// --- the grid, the model and the token -----------------------------------------------------------

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

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("onnxdigits-token", state.token);
  $("token-form").hidden = true;
  clearReport();
  loadModel();
  readDrawing();
});

showDigitButtons();
start({ readDrawing, decodePng, loadModel, report });
