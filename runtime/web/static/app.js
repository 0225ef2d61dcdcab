// The dementia-cgan page: runs the exported generator with onnxruntime-web, draws the same latent
// vectors as cgan-run (noise.js) and maps the output to pixels as cgan-run does, so image k of
// (model, seed, stage) is the image cgan-run writes. site.json (written by `cgan-web build`) says
// which model file, its metadata and where onnxruntime-web lies.

import { noise, NOISE_VERSION } from "./noise.js";
import { planCounts, PlanError } from "./balance.js";
import { greyPng, zip } from "./zip.js";

const BATCH = 16; // images per session call: keeps the page responsive and memory small
const MAX_BALANCE = 2048; // images the page makes for one balance plan; bigger plans are cgan-run --balance's work
const REAL_DEFAULTS = [24, 12, 6, 2]; // a small imbalanced example, shaped like the OASIS counts
const $ = (id) => document.getElementById(id);
const state = { ort: null, session: null, info: null, backend: "", lastRows: null };
// Milestones in ms since navigation (performance.now()), read by bench/test_bench_web.py.
window.cganTimes = {};

function setState(s) {
  document.body.dataset.state = s;
}

function fail(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  $("status").hidden = true;
  setState("error");
}

// ------------------------------------------------------------------ start-up

async function start() {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    fail("This browser has no WebAssembly, which the model needs: open the page in a current Chrome, Edge, Firefox or Safari.");
    return;
  }
  let site;
  try {
    const res = await fetch("site.json");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    site = await res.json();
  } catch (err) {
    fail(`site.json could not be read (${err.message}): serve the folder written by \`cgan-web build\`, e.g. with \`cgan-web serve\`.`);
    return;
  }
  if (site.noise_version !== NOISE_VERSION) {
    fail(`site.json asks for noise version ${site.noise_version}; this page draws version ${NOISE_VERSION}. Rebuild the site with cgan-web build.`);
    return;
  }
  state.site = site;
  state.info = site.model.info;
  showModel(site);

  state.backend = await pickBackend(site);
  const base = new URL(site.ort.base, location.href).href;
  const bundle = base + (state.backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs");
  try {
    state.ort = await import(bundle);
  } catch (err) {
    const hint = site.ort.local ? "the ort/ folder of the site is incomplete; rebuild it" : "build the site with --ort-dist to serve it from this folder";
    fail(`onnxruntime-web could not be loaded from ${bundle} (${err.message}): ${hint}.`);
    return;
  }
  const ort = state.ort;
  ort.env.wasm.wasmPaths = base;
  const threads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
  ort.env.wasm.numThreads = threads;
  const started = performance.now();
  const open = (backend) => ort.InferenceSession.create(site.model.file, { executionProviders: [backend], graphOptimizationLevel: "all" });
  let fallback = "";
  try {
    try {
      state.session = await open(state.backend);
    } catch (err) {
      if (state.backend !== "webgpu") throw err;
      // The WebGPU build runs the wasm backend too: a GPU that fails to start is not the end of the page.
      fallback = ` (WebGPU failed: ${String(err.message || err).split("\n")[0]})`;
      state.backend = "wasm";
      state.session = await open("wasm");
    }
    checkIo(state.session);
  } catch (err) {
    fail(`The model ${site.model.file} could not be loaded (${String(err.message || err).split("\n")[0]}). ` +
      "Rebuild the site from a model exported with cgan-export: cgan-web build MODEL --out site/.");
    return;
  }
  const isolated = self.crossOriginIsolated ? "cross-origin isolated" : "not cross-origin isolated: single-threaded";
  $("backend").textContent = state.backend === "webgpu"
    ? "WebGPU"
    : `WebAssembly SIMD, ${threads} thread${threads > 1 ? "s" : ""} (${isolated})${fallback}`;
  $("backend").textContent += ` · onnxruntime-web ${site.ort.version} from ${site.ort.local ? "this site" : site.ort.base}` +
    ` · model loaded in ${Math.round(performance.now() - started)} ms`;
  window.cganTimes.modelLoadedMs = performance.now();
  $("status").textContent = "Ready.";
  $("app").hidden = false;
  wire();
  setState("ready");
  await guard(() => showGrid());
  window.cganTimes.firstGridMs = performance.now();
}

async function pickBackend(site) {
  const forced = new URLSearchParams(location.search).get("backend");
  if (forced === "wasm" || !site.ort.webgpu || !navigator.gpu) return "wasm";
  try {
    return (await navigator.gpu.requestAdapter()) ? "webgpu" : "wasm";
  } catch {
    return "wasm";
  }
}

function checkIo(session) {
  const inputs = [...session.inputNames].sort().join(",");
  if (inputs !== "stage,z" || session.outputNames.length !== 1 || session.outputNames[0] !== "image") {
    throw new Error(`inputs ${session.inputNames} and outputs ${session.outputNames}; the contract needs inputs z, stage and output image`);
  }
}

function showModel(site) {
  const info = site.model.info;
  for (const select of [$("stage"), $("interp-stage")]) {
    info.stage_names.forEach((name, i) => select.add(new Option(`${i}: ${name}`, String(i))));
  }
  info.stage_names.forEach((name, i) => {
    const input = Object.assign(document.createElement("input"), { id: `real-${i}`, type: "number", min: "0", value: String(REAL_DEFAULTS[i] ?? 0) });
    const label = Object.assign(document.createElement("label"), { textContent: `${i}: ${name}, real` });
    label.append(input);
    $("real-counts").append(label);
  });
  $("stage").add(new Option("all stages", "all"), 0);
  $("stage").value = "all";
  $("noise").textContent = `version ${site.noise_version}: image k of seed S is drawn from Philox4x32-10 ` +
    "(as cgan-run draws it), independent of stage and batch";
  const rows = [
    ["model", site.model.source],
    ["file", `${site.model.file} (${(site.model.bytes / 1e6).toFixed(1)} MB, sha256 ${site.model.sha256.slice(0, 16)}…)`],
    ["image", `${info.img_size}×${info.img_size}, ${info.channels} channel(s), ${info.num_classes} stages, ${info.precision}`],
  ];
  for (const [key, value] of Object.entries(info.provenance)) rows.push([key.replace(/^cgan\./, ""), value]);
  const dl = $("provenance");
  for (const [key, value] of rows) {
    dl.append(Object.assign(document.createElement("dt"), { textContent: key }));
    dl.append(Object.assign(document.createElement("dd"), { textContent: value }));
  }
}

// ------------------------------------------------------------------ generation

function toPixels(data, offset, count) {
  // cgan-run's mapping in float32 arithmetic: round((x - lo) * 255 / (hi - lo)), half to even, clipped.
  const [lo, hi] = state.info.output_range;
  const flo = Math.fround(lo), scale = Math.fround(255 / (hi - lo));
  const out = new Uint8ClampedArray(count);
  for (let i = 0; i < count; i++) {
    const v = Math.fround(Math.fround(data[offset + i] - flo) * scale);
    const f = Math.floor(v), d = v - f;
    out[i] = d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
  }
  return out;
}

// One session call per BATCH rows: z is Float32Array [b * z_dim], stages an int array; returns images.
async function runModel(z, stages) {
  const { ort, info } = state;
  const size = info.channels * info.img_size * info.img_size;
  const images = [];
  for (let i0 = 0; i0 < stages.length; i0 += BATCH) {
    const b = Math.min(BATCH, stages.length - i0);
    const feeds = {
      z: new ort.Tensor("float32", z.slice(i0 * info.z_dim, (i0 + b) * info.z_dim), [b, info.z_dim]),
      stage: new ort.Tensor("int64", BigInt64Array.from(stages.slice(i0, i0 + b), (s) => BigInt(s)), [b]),
    };
    const t0 = performance.now();
    const out = await state.session.run(feeds);
    const ms = performance.now() - t0;
    window.cganTimes.firstBatchMs ??= performance.now();
    $("timing").textContent = `${ms.toFixed(0)} ms for a batch of ${b} (${(ms / b).toFixed(1)} ms per image)`;
    const data = out.image.data;
    for (let j = 0; j < b; j++) images.push(toPixels(data, j * size, size));
  }
  return images;
}

function wholeNumber(id, what) {
  const text = $(id).value.trim();
  if (!/^\d+$/.test(text) || BigInt(text) >= 1n << 64n) throw new InputError(`${what} must be a whole number from 0 to 2^64-1, got "${text}"`);
  return text;
}

function count(id, what, lo, hi) {
  const v = Number($(id).value);
  if (!Number.isInteger(v) || v < lo || v > hi) throw new InputError(`${what} must be a whole number from ${lo} to ${hi}, got "${$(id).value}"`);
  return v;
}

class InputError extends Error {}

const fileName = (stage, seed, k) => `stage${stage}_seed${seed}_${String(k).padStart(8, "0")}.png`;

async function showGrid() {
  const seed = wholeNumber("seed", "Seed"), start = BigInt(wholeNumber("start", "Start"));
  const n = count("count", "Images per stage", 1, 256);
  const choice = $("stage").value;
  const stages = choice === "all" ? state.info.stage_names.map((_, i) => i) : [Number(choice)];
  const z = noise(seed, start, n, state.info.z_dim);
  const rows = [];
  for (const s of stages) {
    const images = await runModel(z, Array(n).fill(s));
    rows.push({
      label: `${s}: ${state.info.stage_names[s]}`,
      cells: images.map((px, i) => ({ px, stage: s, seed, k: start + BigInt(i), caption: `k=${start + BigInt(i)}` })),
    });
  }
  render("grid", `Seed ${seed}, images ${start}–${start + BigInt(n - 1)}`, rows, null);
}

async function showProgression() {
  const seed = wholeNumber("seed", "Seed"), start = BigInt(wholeNumber("start", "Start"));
  const n = count("count", "Images per stage", 1, 256);
  const stages = state.info.stage_names.map((_, i) => i);
  const z = noise(seed, start, n, state.info.z_dim);
  const zAll = new Float32Array(n * stages.length * state.info.z_dim);
  const labels = [];
  for (let i = 0; i < n; i++) {
    for (const s of stages) {
      zAll.set(z.subarray(i * state.info.z_dim, (i + 1) * state.info.z_dim), labels.length * state.info.z_dim);
      labels.push(s);
    }
  }
  const images = await runModel(zAll, labels);
  const rows = [];
  for (let i = 0; i < n; i++) {
    const k = start + BigInt(i);
    rows.push({
      label: `k=${k}`,
      cells: stages.map((s, j) => ({ px: images[i * stages.length + j], stage: s, seed, k, caption: state.info.stage_names[s] })),
    });
  }
  const cols = stages.map((s) => `${s}: ${state.info.stage_names[s]}`);
  render("progression", `Progression, seed ${seed}: the same noise at every stage`, rows, cols);
}

function slerp(a, b, t) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  const omega = Math.acos(Math.min(1, Math.max(-1, dot / Math.sqrt(na * nb))));
  const out = new Float32Array(a.length);
  const so = Math.sin(omega);
  for (let i = 0; i < a.length; i++) {
    out[i] = so < 1e-6 ? (1 - t) * a[i] + t * b[i] : (Math.sin((1 - t) * omega) * a[i] + Math.sin(t * omega) * b[i]) / so;
  }
  return out;
}

async function showInterpolation() {
  const seedA = wholeNumber("seed-a", "From seed"), seedB = wholeNumber("seed-b", "To seed");
  const k = BigInt(wholeNumber("start", "Start"));
  const steps = count("steps", "Steps", 2, 64);
  const s = Number($("interp-stage").value);
  const zDim = state.info.z_dim;
  const a = noise(seedA, k, 1, zDim), b = noise(seedB, k, 1, zDim);
  const z = new Float32Array(steps * zDim);
  for (let i = 0; i < steps; i++) {
    const t = i / (steps - 1);
    z.set(i === 0 ? a : i === steps - 1 ? b : slerp(a, b, t), i * zDim);
  }
  const images = await runModel(z, Array(steps).fill(s));
  const cells = images.map((px, i) => {
    const t = i / (steps - 1);
    const ends = i === 0 ? { seed: seedA, k } : i === steps - 1 ? { seed: seedB, k } : { seed: null, k: null };
    return { px, stage: s, ...ends, caption: `t=${t.toFixed(2)}` };
  });
  const title = `Spherical interpolation at stage ${s} (${state.info.stage_names[s]}), image ${k} of seed ${seedA} → seed ${seedB}`;
  render("interpolation", title, [{ label: `${s}: ${state.info.stage_names[s]}`, cells }], null);
}

// ------------------------------------------------------------------ balance

function balancePlan() {
  const real = state.info.stage_names.map((_, i) => $(`real-${i}`).value);
  let want;
  try {
    want = planCounts(real, $("rule").value, $("rule-value").value);
  } catch (err) {
    throw err instanceof PlanError ? new InputError(err.message) : err;
  }
  const body = $("plan-table").tBodies[0];
  body.replaceChildren();
  const cells = (values) => {
    const tr = document.createElement("tr");
    for (const v of values) tr.append(Object.assign(document.createElement("td"), { textContent: v }));
    body.append(tr);
  };
  state.info.stage_names.forEach((name, i) => cells([`${i}: ${name}`, Number(real[i]), want[i], Number(real[i]) + want[i]]));
  const sum = (a) => a.reduce((x, y) => x + Number(y), 0);
  cells(["all", sum(real), sum(want), sum(real) + sum(want)]);
  $("plan-table").hidden = false;
  $("plan-table").dataset.plan = want.join(",");
  return want;
}

async function showBalance() {
  const seed = wholeNumber("seed", "Seed");
  const want = balancePlan();
  const total = want.reduce((a, b) => a + b, 0);
  if (total > MAX_BALANCE) {
    throw new InputError(`This plan generates ${total.toLocaleString("en")} images; the page makes at most ${MAX_BALANCE.toLocaleString("en")}. ` +
      "Run cgan-run --balance DATA for it (same model, same seed: the same images).");
  }
  const rows = [];
  for (const [s, n] of want.entries()) {
    if (n === 0) continue;
    const images = await runModel(noise(seed, 0n, n, state.info.z_dim), Array(n).fill(s));
    rows.push({
      label: `${s}: ${state.info.stage_names[s]} (+${n})`,
      cells: images.map((px, k) => ({ px, stage: s, seed, k: BigInt(k), caption: `k=${k}` })),
    });
  }
  render("balance", `Balance plan, seed ${seed}: ${total} generated image${total === 1 ? "" : "s"}`, rows, null);
  state.balance = { seed, rows, zip: total > 0 && state.info.channels === 1 }; // the ZIP holds grey PNGs
}

async function downloadZip() {
  // stage{s}/ folders (a layout cgan-train and cgan-run --balance read) and the manifest cgan-run writes
  const { seed, rows } = state.balance;
  const sha = state.site.model.sha256, size = state.info.img_size;
  const files = [], manifest = ["file,stage,model_sha256,seed,k,noise_version"];
  for (const row of rows) {
    for (const c of row.cells) {
      const name = `stage${c.stage}/${fileName(c.stage, seed, c.k)}`;
      const text = { Software: "dementia-cgan", Comment: "Synthetic image. For research and education only; never for diagnosis.",
        "cgan.seed": String(seed), "cgan.noise_version": String(NOISE_VERSION), "cgan.stage": row.label.replace(/ \(\+\d+\)$/, "") };
      files.push({ name, data: await greyPng(c.px, size, text) });
      manifest.push(`${name},${c.stage},${sha},${seed},${c.k},${NOISE_VERSION}`);
    }
  }
  files.push({ name: "generated.csv", data: new TextEncoder().encode(manifest.join("\n") + "\n") });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(zip(files));
  a.download = `balance_seed${seed}.zip`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// ------------------------------------------------------------------ drawing and download

function cellCanvas(px) {
  const size = state.info.img_size, ch = state.info.channels;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const img = ctx.createImageData(size, size);
  const plane = size * size;
  for (let p = 0; p < plane; p++) {
    // channels-first output: grey for one channel, RGB from the first three otherwise
    const r = px[p], g = ch >= 3 ? px[plane + p] : r, b = ch >= 3 ? px[2 * plane + p] : r;
    img.data.set([r, g, b, 255], 4 * p);
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

function download(canvas, name) {
  canvas.toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
}

function render(kind, title, rows, colLabels) {
  const grid = $("grid");
  grid.replaceChildren();
  const display = Math.max(128, state.info.img_size);
  if (colLabels) {
    const head = document.createElement("div");
    head.className = "row head";
    head.append(Object.assign(document.createElement("div"), { className: "label" }));
    for (const c of colLabels) {
      const col = Object.assign(document.createElement("div"), { className: "col", textContent: c });
      col.style.width = `${display}px`;
      head.append(col);
    }
    grid.append(head);
  }
  let total = 0;
  for (const row of rows) {
    const div = document.createElement("div");
    div.className = "row";
    div.append(Object.assign(document.createElement("div"), { className: "label", textContent: row.label }));
    for (const cell of row.cells) {
      const fig = document.createElement("figure");
      const canvas = cellCanvas(cell.px);
      canvas.style.width = canvas.style.height = `${display}px`;
      canvas.dataset.stage = String(cell.stage);
      if (cell.seed !== null) {
        canvas.dataset.seed = String(cell.seed);
        canvas.dataset.k = String(cell.k);
      }
      const name = cell.seed !== null ? fileName(cell.stage, cell.seed, cell.k) : `interpolation_${cell.caption.replace("=", "")}.png`;
      canvas.title = `${name}: click to download`;
      canvas.addEventListener("click", () => download(canvas, name));
      fig.append(canvas, Object.assign(document.createElement("figcaption"), { textContent: cell.caption }));
      div.append(fig);
      total++;
    }
    grid.append(div);
  }
  $("title").textContent = title;
  grid.dataset.kind = kind;
  grid.dataset.count = String(total);
  grid.dataset.run = String(Number(grid.dataset.run) + 1);
  state.lastRows = { kind, title, rows, colLabels };
  $("download-grid").disabled = false;
}

function gridCanvas() {
  // The shown grid as one labelled PNG, like cgan-run's contact sheet.
  const { title, rows, colLabels } = state.lastRows;
  const size = state.info.img_size, cell = Math.max(size, 96), gap = 2, line = 22, font = "13px sans-serif";
  const measure = document.createElement("canvas").getContext("2d");
  measure.font = font;
  const labelW = 12 + Math.max(...rows.map((r) => measure.measureText(r.label).width));
  const cols = Math.max(...rows.map((r) => r.cells.length));
  const top = line * (colLabels ? 2 : 1);
  const canvas = document.createElement("canvas");
  canvas.width = Math.ceil(Math.max(labelW + cols * (cell + gap), measure.measureText(title).width + 12));
  canvas.height = top + rows.length * (cell + gap);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  ctx.font = font;
  ctx.fillStyle = "#ccc";
  ctx.textBaseline = "middle";
  ctx.fillText(title, 6, line / 2);
  ctx.fillStyle = "#fff";
  if (colLabels) colLabels.forEach((c, j) => ctx.fillText(c, labelW + j * (cell + gap) + 4, line * 1.5));
  rows.forEach((row, i) => {
    const y = top + i * (cell + gap);
    ctx.fillText(row.label, 6, y + cell / 2);
    row.cells.forEach((c, j) => ctx.drawImage(cellCanvas(c.px), labelW + j * (cell + gap), y, cell, cell));
  });
  return canvas;
}

// ------------------------------------------------------------------ controls

async function guard(action) {
  setState("busy");
  $("error").hidden = true;
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  try {
    await action();
    setState("ready");
  } catch (err) {
    const box = $("error");
    box.textContent = err instanceof InputError ? err.message : `Generation failed: ${err.message || err}`;
    box.hidden = false;
    setState("ready");
  } finally {
    for (const b of document.querySelectorAll("button")) {
      b.disabled = (b.id === "download-grid" && !state.lastRows) || (b.id === "download-zip" && !state.balance?.zip);
    }
  }
}

function wire() {
  $("generate").addEventListener("click", () => guard(showGrid));
  $("progression").addEventListener("click", () => guard(showProgression));
  $("interpolate").addEventListener("click", () => guard(showInterpolation));
  $("download-grid").addEventListener("click", () => download(gridCanvas(), `${state.lastRows.kind}.png`));
  $("plan").addEventListener("click", () => guard(async () => balancePlan()));
  $("balance-generate").addEventListener("click", () => guard(showBalance));
  $("download-zip").addEventListener("click", () => guard(downloadZip));
}

start().catch((err) => fail(`The page could not start: ${err.message || err}`));
