// The onnxdigits page without a server: the served page's tools, with the models run here by
// onnxruntime-web instead of over the /v1 API. Plain browser JavaScript; every file comes from this
// site (site.json lists the models, written by `onnxdigits export-web`). The pad, the bars and the
// plane are page.js's, the served page's own module (serve/static/page.js); here is what runs the
// models and reads the pad as the SDK reads an image.

import {
  $, pad, state, clearReport, showBlob, showLabel, showPoints, showDrawn, drawPlane, decodeAt,
  start,
} from "./page.js";

const SIDE = 28;       // MNIST's images
const BOX = 20;        // MNIST fits each digit's box into 20x20, then centres its mass in 28x28
const SAMPLES = 8;     // digits drawn by one click of a digit button

Object.assign(state, {
  site: null,         // site.json
  sampleSeed: 0,      // each click of a digit button draws with the next seed
});

function report(error) {
  console.warn(error);
  $("status").textContent = `Error: ${error && error.message ? error.message : error}`;
}

// --- the models --------------------------------------------------------------------------------

// Threads need SharedArrayBuffer, which a browser grants only to a cross-origin isolated page.
ort.env.wasm.numThreads = self.crossOriginIsolated
  ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;

const sessions = {};
let queue = Promise.resolve();

async function loadSite() {
  const response = await fetch("site.json");
  if (!response.ok) throw new Error(`site.json: ${response.status} ${response.statusText}`);
  return response.json();
}

const siteReady = loadSite().then((site) => { state.site = site; return site; });

function session(key) {
  if (!sessions[key]) {
    sessions[key] = siteReady.then((site) => ort.InferenceSession.create(
      site.models[key].file, { executionProviders: ["wasm"], graphOptimizationLevel: "all" }));
  }
  return sessions[key];
}

// One run at a time: a session's runs take their turn, as the served models' calls do.
function serial(task) {
  const result = queue.then(task);
  queue = result.catch(() => {});
  return result;
}

// Run submodel `key` on one float32 input of shape `dims`: its outputs' data, in the manifest's order.
async function run(key, data, dims) {
  const model = (await siteReady).models[key];
  const runner = await session(key);
  return serial(async () => {
    const outputs = await runner.run({ [model.inputs[0]]: new ort.Tensor("float32", data, dims) });
    return model.outputs.map((name) => outputs[name].data);
  });
}

function asImages(images) {
  const data = images instanceof Float32Array ? images : Float32Array.from(images);
  if (data.length === 0 || data.length % (SIDE * SIDE)) {
    throw new Error(`images of ${data.length} values; expected N x 784`);
  }
  return [data, [data.length / (SIDE * SIDE), SIDE, SIDE, 1]];
}

function asLatents(z) {
  const data = z instanceof Float32Array ? z : Float32Array.from(z.flat ? z.flat() : z);
  if (data.length === 0 || data.length % 2) throw new Error(`latent points of ${data.length} values; expected N x 2`);
  return [data, [data.length / 2, 2]];
}

// Images (N x 784 floats in [0, 1], MNIST form) to probabilities, N x 10.
async function classify(images) { return (await run("classifier", ...asImages(images)))[0]; }
// Images to embeddings by `model`'s encoder, N x 2: z for ae, z_mean for the VAEs.
async function embed(model, images) { return (await run(`${model}.encoder`, ...asImages(images)))[0]; }
// Latent points (N x 2) to digits by `model`'s generator, N x 784 in [0, 1].
async function decode(model, z) { return (await run(`${model}.generator`, ...asLatents(z)))[0]; }

// --- MNIST form --------------------------------------------------------------------------------
// The SDK's `load_image` (sdk/images.py) for a clean canvas: a black page, so its background is 0
// and its noise the SDK's floor of one grey level; each step below is the step of the same name
// there, with Pillow's resampling and numpy's rounding, so that the page reads the pad as the SDK
// reads its PNG.

const FLOOR = 3;         // three times the noise: fainter than this is background
const FAINT = 0.05;      // fainter than this after resampling is resampling's ripple
const STROKE = [0.08, 0.14];  // MNIST's strokes as a fraction of the box's side

// Rounding half to even, as Python's round and numpy's do: a symmetric digit's centre of mass
// falls on a half pixel, and Math.round would place it one pixel off the SDK's.
function roundEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// A float32 image: {h, w, data}.
const image = (h, w, data) => ({ h, w, data: data || new Float32Array(h * w) });

function crop(img, [r0, r1, c0, c1]) {
  const out = image(r1 - r0, c1 - c0);
  for (let i = 0; i < out.h; i++) {
    out.data.set(img.data.subarray((r0 + i) * img.w + c0, (r0 + i) * img.w + c1), i * out.w);
  }
  return out;
}

// The box [r0, r1, c0, c1) around the pixels where `test` holds; null when none does.
function extent(img, test) {
  let r0 = img.h, r1 = -1, c0 = img.w, c1 = -1;
  for (let i = 0; i < img.h; i++) {
    for (let j = 0; j < img.w; j++) {
      if (test(img.data[i * img.w + j], i * img.w + j)) {
        r0 = Math.min(r0, i); r1 = Math.max(r1, i); c0 = Math.min(c0, j); c1 = Math.max(c1, j);
      }
    }
  }
  return r1 < 0 ? null : [r0, r1 + 1, c0, c1 + 1];
}

// Pillow's resampling coefficients (libImaging/Resample.c, precompute_coeffs): for each output
// pixel, the first input pixel and the normalised weights.
const BOX_FILTER = { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) };
const BICUBIC_FILTER = {
  support: 2,
  f: (x) => {
    const a = -0.5;
    x = Math.abs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  },
};

function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const result = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights = [];
    let total = 0;
    for (let x = xmin; x < xmax; x++) {
      const w = filter.f((x - center + 0.5) / filterscale);
      weights.push(w);
      total += w;
    }
    result.push([xmin, total ? weights.map((w) => w / total) : weights]);
  }
  return result;
}

// An image resampled so that its longer side is `side`, keeping its aspect, as the SDK's
// `_resized` does on a float32 image: reducing with Pillow's BOX, enlarging with its BICUBIC;
// across, then down, the pass between stored as float32.
function resized(img, side) {
  const scale = side / Math.max(img.h, img.w);
  if (scale === 1) return img;
  const w = Math.max(1, roundEven(img.w * scale)), h = Math.max(1, roundEven(img.h * scale));
  const filter = scale < 1 ? BOX_FILTER : BICUBIC_FILTER;
  let out = img;
  if (w !== img.w) {
    const across = image(img.h, w), cs = coefficients(img.w, w, filter);
    for (let i = 0; i < img.h; i++) {
      for (let j = 0; j < w; j++) {
        const [x0, k] = cs[j];
        let sum = 0;
        for (let x = 0; x < k.length; x++) sum += img.data[i * img.w + x0 + x] * k[x];
        across.data[i * w + j] = sum;
      }
    }
    out = across;
  }
  if (h !== img.h) {
    const down = image(h, out.w), cs = coefficients(img.h, h, filter);
    for (let i = 0; i < h; i++) {
      const [y0, k] = cs[i];
      for (let j = 0; j < out.w; j++) {
        let sum = 0;
        for (let y = 0; y < k.length; y++) sum += out.data[(y0 + y) * out.w + j] * k[y];
        down.data[i * out.w + j] = sum;
      }
    }
    out = down;
  }
  return out;
}

// How many pixels of the 3x3 square around each pixel, itself included, are set (none outside).
function neighbours(mask, h, w) {
  const count = new Uint8Array(h * w);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      let n = 0;
      for (let di = -1; di <= 1; di++) {
        for (let dj = -1; dj <= 1; dj++) {
          const y = i + di, x = j + dj;
          if (y >= 0 && y < h && x >= 0 && x < w && mask[y * w + x]) n++;
        }
      }
      count[i * w + j] = n;
    }
  }
  return count;
}

// Each pixel the largest (sign 1) or smallest (sign -1) of itself and its 8 neighbours (or its
// 4), the edge repeated.
function grown(img, diagonal, sign = 1) {
  const out = image(img.h, img.w);
  for (let i = 0; i < img.h; i++) {
    for (let j = 0; j < img.w; j++) {
      let best = img.data[i * img.w + j] * sign;
      for (let di = -1; di <= 1; di++) {
        for (let dj = -1; dj <= 1; dj++) {
          if (!diagonal && di && dj) continue;
          const y = Math.min(Math.max(i + di, 0), img.h - 1);
          const x = Math.min(Math.max(j + dj, 0), img.w - 1);
          best = Math.max(best, img.data[y * img.w + x] * sign);
        }
      }
      out.data[i * img.w + j] = best * sign;
    }
  }
  return out;
}

// Otsu's threshold: the level that best splits the values into two classes.
function otsu(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (hi - lo < 1e-6) return hi;
  const counts = new Float64Array(256);
  for (const v of values) counts[Math.min(Math.trunc((v - lo) * (256 / (hi - lo))), 255)]++;
  let weight = 0, mass = 0, total = values.length, totalMass = 0, best = -1, level = hi;
  const centre = (b) => lo + (b + 0.5) * (hi - lo) / 256;
  for (let b = 0; b < 256; b++) totalMass += counts[b] * centre(b);
  for (let b = 0; b < 256; b++) {
    weight += counts[b];
    mass += counts[b] * centre(b);
    const below = mass / Math.max(weight, 1), above = (totalMass - mass) / Math.max(total - weight, 1);
    const between = weight * (total - weight) * (below - above) ** 2;
    if (between > best) { best = between; level = lo + (b + 1) * (hi - lo) / 256; }
  }
  return level;
}

// numpy's percentile (linear between the closest ranks).
function percentile(values, q) {
  const sorted = Float64Array.from(values).sort();
  const at = (q / 100) * (sorted.length - 1);
  const below = Math.floor(at);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (at - below);
}

// Strokes much thinner or thicker than MNIST's, for the box they are in, brought to the edge of
// MNIST's range a rim at a time (`_stroke_mended`).
function strokeMended(fine, cut) {
  const shape = fine.data.map((v) => (v > cut ? 1 : 0));
  const [r0, r1, c0, c1] = extent(fine, (v) => v > cut);
  const side = Math.max(r1 - r0, c1 - c0);
  const [lo, hi] = STROKE.map((ratio) => ratio * side);
  const around = neighbours(shape, fine.h, fine.w);
  let area = 0, outline = 0;
  shape.forEach((v, k) => { area += v; outline += v && around[k] < 9 ? 1 : 0; });
  const width = (2 * area) / Math.max(outline, 1);
  if (lo <= width && width <= hi) return fine;
  const steps = roundEven(Math.abs(width - (width < lo ? lo : hi)) / 2);
  if (width < lo) {
    let out = image(fine.h + 2 * steps, fine.w + 2 * steps);
    for (let i = 0; i < fine.h; i++) {
      out.data.set(fine.data.subarray(i * fine.w, (i + 1) * fine.w), (i + steps) * out.w + steps);
    }
    for (let step = 0; step < steps; step++) out = grown(out, step % 2 === 0);
    return out;
  }
  for (let step = 0; step < steps; step++) {
    const thinner = grown(fine, step % 2 === 0, -1);
    if (!thinner.data.some((v) => v > cut)) break;  // never rub the digit out
    fine = thinner;
  }
  return fine;
}

// The digit (at most 20x20) placed in 28x28 with its centre of mass in the middle (`_centred`).
function centred(digit) {
  let mass = 0, my = 0, mx = 0;
  for (let i = 0; i < digit.h; i++) {
    for (let j = 0; j < digit.w; j++) {
      const v = digit.data[i * digit.w + j];
      mass += v; my += i * v; mx += j * v;
    }
  }
  mass = mass || 1;
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const top = clamp(roundEven(SIDE / 2 - my / mass), 0, SIDE - digit.h);
  const left = clamp(roundEven(SIDE / 2 - mx / mass), 0, SIDE - digit.w);
  const out = new Uint8Array(SIDE * SIDE);
  for (let i = 0; i < digit.h; i++) {
    for (let j = 0; j < digit.w; j++) {
      out[(top + i) * SIDE + left + j] = clamp(roundEven(digit.data[i * digit.w + j]), 0, 255);
    }
  }
  return out;
}

// The pad in MNIST form: 784 values 0..255 (Uint8Array), light ink on black; null when the pad
// holds no ink.
function mnistForm(canvas) {
  const { width: w, height: h } = canvas;
  const rgba = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  const ink = image(h, w);
  for (let k = 0; k < w * h; k++) ink.data[k] = rgba[4 * k];  // grey: the pad draws in white
  const threshold = Math.max(otsu(ink.data), 6);
  let mask = ink.data.map((v) => (v > threshold ? 1 : 0));
  const around = neighbours(mask, h, w);
  mask = mask.map((v, k) => (v && around[k] >= 2 ? 1 : 0));  // a lone pixel is noise
  if (!mask.some((v) => v)) return null;
  const near = grown(image(h, w, Float32Array.from(mask)), true);
  const inked = (k) => near.data[k] > 0 && ink.data[k] > FLOOR;
  const level = Math.max(percentile(ink.data.filter((v, k) => mask[k]), 75), threshold + 1);
  const soft = image(h, w);
  for (let k = 0; k < w * h; k++) {
    soft.data[k] = inked(k) ? Math.min(Math.max((ink.data[k] - FLOOR) / (level - FLOOR), 0), 1) : 0;
  }
  const cut = (threshold - FLOOR) / (level - FLOOR);
  const box = crop(soft, extent(soft, (v, k) => inked(k)));
  const side = Math.min(Math.max(Math.max(box.h, box.w), 4 * BOX), 16 * BOX);
  let fine = resized(box, side);
  fine = image(fine.h, fine.w, fine.data.map((v) => Math.min(Math.max(v, 0), 1)));
  fine = strokeMended(fine, cut);
  const digit = crop(fine, extent(fine, (v) => v > FAINT));
  digit.data = digit.data.map((v) => v * 255);
  return centred(resized(digit, BOX));
}

// Digits (N x 784 in [0, 1]) as a greyscale PNG blob laid out in `columns` columns.
function digitsPng(pixels, count, columns) {
  const rows = Math.ceil(count / columns);
  const canvas = document.createElement("canvas");
  canvas.width = columns * SIDE;
  canvas.height = rows * SIDE;
  const context = canvas.getContext("2d");
  const picture = context.createImageData(canvas.width, canvas.height);
  for (let k = 0; k < count; k++) {
    const r0 = Math.floor(k / columns) * SIDE, c0 = (k % columns) * SIDE;
    for (let i = 0; i < SIDE; i++) {
      for (let j = 0; j < SIDE; j++) {
        const v = Math.round(Math.min(Math.max(pixels[k * SIDE * SIDE + i * SIDE + j], 0), 1) * 255);
        const at = 4 * ((r0 + i) * canvas.width + c0 + j);
        picture.data[at] = picture.data[at + 1] = picture.data[at + 2] = v;
        picture.data[at + 3] = 255;
      }
    }
  }
  context.putImageData(picture, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

// --- the drawing -------------------------------------------------------------------------------

// After each stroke: the label and probabilities, and the digit's place on the latent plane.
async function readDrawing() {
  const digit = state.inked ? mnistForm(pad) : null;
  if (!digit) return;
  const seq = ++state.drawSeq;
  const image = Float32Array.from(digit, (v) => v / 255);
  pad.dataset.mnist = JSON.stringify(Array.from(digit));
  try {
    const probs = Array.from(await classify(image));
    if (seq !== state.drawSeq) return;
    showLabel(probs.indexOf(Math.max(...probs)), probs);
    await embedDrawing(image, seq);
    clearReport();
  } catch (error) {
    report(error);
  }
}

async function embedDrawing(image, seq) {
  const model = state.model;
  const z = await embed(model, image);
  if (seq !== state.drawSeq || model !== state.model) return;
  showDrawn(z);
}

// --- the latent plane --------------------------------------------------------------------------

// The shipped sample's embeddings, computed when the site was written (site.json).
function loadPoints() {
  showPoints(state.site.latent[state.model].plane);
}

async function decodePng(z) {
  return digitsPng(await decode(state.model, z), 1, 1);
}

// --- digits on request: samples from a digit's region of the latent plane ----------------------

// A small seeded generator (mulberry32): the same seed draws the same samples.
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Standard normal draws by Box and Muller's transform.
function normal(uniform) {
  const u = 1 - uniform();  // in (0, 1]: its log is finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
}

// `count` latent points from the region the manifest gives `digit` (a mixture of 2-D Gaussians):
// a component by its weight, then mean + L e, L the Cholesky factor of its covariance.
function sampleDigit(classes, digit, count, seed) {
  const region = classes.digits.find((entry) => entry.digit === digit);
  if (!region) throw new Error(`the manifest gives no region of the digit ${digit}`);
  const uniform = random(seed);
  const total = region.components.reduce((sum, c) => sum + c.weight, 0);
  const points = [];
  for (let k = 0; k < count; k++) {
    let pick = uniform() * total;
    let component = region.components[region.components.length - 1];
    for (const c of region.components) {
      if (pick < c.weight) { component = c; break; }
      pick -= c.weight;
    }
    const [[a, b], [, c]] = component.cov;
    const l11 = Math.sqrt(Math.max(a, 0));
    const l21 = l11 > 0 ? b / l11 : 0;
    const l22 = Math.sqrt(Math.max(c - l21 * l21, 0));
    const e1 = normal(uniform), e2 = normal(uniform);
    points.push([component.mean[0] + l11 * e1, component.mean[1] + l21 * e1 + l22 * e2]);
  }
  return points;
}

async function drawSamples(digit) {
  const classes = state.site.latent[state.model].latent_classes;
  const model = state.model;
  try {
    const z = sampleDigit(classes, digit, SAMPLES, state.sampleSeed++);
    const pixels = await decode(model, z);
    if (model !== state.model) return;
    state.samples = z;
    drawPlane();
    const img = $("samples");
    showBlob(img, await digitsPng(pixels, SAMPLES, SAMPLES));
    img.dataset.z = JSON.stringify(z);
    img.dataset.digit = String(digit);
    clearReport();
  } catch (error) {
    report(error);
  }
}

function showDigitButtons() {
  const buttons = $("digit-buttons");
  if (!buttons.children.length) {
    for (let digit = 0; digit < 10; digit++) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = String(digit);
      button.dataset.digit = String(digit);
      button.addEventListener("click", () => drawSamples(digit));
      buttons.appendChild(button);
    }
  }
  // Shown only for a model whose manifest entry gives the digits' regions.
  $("digits").hidden = !state.site.latent[state.model].latent_classes;
  state.samples = null;
  $("samples").hidden = true;
}

// --- the grid and the model ---------------------------------------------------------------------

async function loadGrid() {
  const model = state.model;
  const { n, points } = state.site.grid;
  const pixels = await decode(model, points);
  const blob = await digitsPng(pixels, n * n, n);
  if (model === state.model) showBlob($("grid"), blob);
}

async function loadModel() {
  try {
    await siteReady;
    loadPoints();
    showDigitButtons();
    await loadGrid();
    if (state.inked) await readDrawing();
    if (state.picked) await decodeAt(state.picked);
    clearReport();
  } catch (error) {
    report(error);
  }
}

// For scripts and tests: the models as functions of plain arrays.
window.onnxdigits = {
  // The sessions the page opens with; the other models' load when first chosen or called.
  ready: siteReady.then(() => Promise.all(
    ["classifier", `${state.model}.encoder`, `${state.model}.generator`].map(session))),
  classify: async (images) => Array.from(await classify(images)),
  embed: async (model, images) => Array.from(await embed(model, images)),
  decode: async (model, z) => Array.from(await decode(model, z)),
  mnistForm: () => { const digit = mnistForm(pad); return digit && Array.from(digit); },
  sampleDigit,
};

$("ort-version").textContent = ort.env.versions ? ort.env.versions.common : "";
$("threads").textContent = ort.env.wasm.numThreads > 1
  ? `${ort.env.wasm.numThreads} threads` : "one thread";
start({ readDrawing, decodePng, loadModel, report });
