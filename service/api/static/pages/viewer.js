// Viewer: one upload, one or two models, masks drawn over the decoded image.
//   POST /v1/render                    the decoded first frame as a PNG (DICOM, HU windowed)
//   POST /v1/segment?format=png        masks as base64 PNG (0/255) in the same size and order
import { apiFetch, fmt, node } from "./common.js";

const $ = (id) => document.getElementById(id);
const LUNG = [47, 127, 208];
const INFECTION = [242, 142, 28];
const shown = []; // [{figure, base, masks, body}] kept to redraw when the opacity changes

async function post(path, file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const response = await apiFetch(path, { method: "POST", body: form });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || `${path}: HTTP ${response.status}`);
  }
  return response;
}

async function maskBits(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const image = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(image.width, image.height);
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const rgba = context.getImageData(0, 0, image.width, image.height).data;
  const bits = new Uint8Array(image.width * image.height);
  for (let i = 0; i < bits.length; i += 1) bits[i] = rgba[i * 4] > 127 ? 1 : 0;
  return bits;
}

function edge(bits, i, x, y, w, h, t) {
  return (x < t || !bits[i - t]) || (x >= w - t || !bits[i + t]) ||
    (y < t || !bits[i - t * w]) || (y >= h - t || !bits[i + t * w]);
}

async function compose(base, masks, opacity) {
  const { width: w, height: h } = base;
  const canvas = new OffscreenCanvas(w, h);
  const context = canvas.getContext("2d");
  context.drawImage(base, 0, 0);
  const image = context.getImageData(0, 0, w, h);
  const px = image.data;
  const t = Math.max(1, Math.round(Math.max(w, h) / 500));
  for (let y = 0, i = 0; y < h; y += 1) {
    for (let x = 0; x < w; x += 1, i += 1) {
      const infected = masks.infection[i] && masks.lung[i];
      if (!masks.lung[i]) continue;
      const colour = infected ? INFECTION : LUNG;
      const border = edge(infected ? masks.infection : masks.lung, i, x, y, w, h, t);
      const a = border ? 0.95 : opacity;
      for (let c = 0; c < 3; c += 1) px[i * 4 + c] = px[i * 4 + c] * (1 - a) + colour[c] * a;
    }
  }
  context.putImageData(image, 0, 0);
  return URL.createObjectURL(await canvas.convertToBlob({ type: "image/png" }));
}

function details(body) {
  const frameNote = body.n_frames > 1 ? ` (frame 1 of ${body.n_frames} shown; totals below)` : "";
  const rows = [
    ["Model that ran", `${body.model.name} ${body.model.version} (${body.model.kind}, ` +
      `${body.model.provider})`],
    ["Modality", body.modality.toUpperCase() + frameNote],
    ["Image", `${body.width} × ${body.height} px`],
    ["Lung area", `${body.lung_area_px} px` +
      (body.lung_area_mm2 != null ? ` (${fmt(body.lung_area_mm2 / 100, 1)} cm²)` : "")],
    ["Infection area", `${body.infection_area_px} px` +
      (body.infection_area_mm2 != null ? ` (${fmt(body.infection_area_mm2 / 100, 1)} cm²)` : "")],
    ["Time", `${fmt(body.timings_ms.total, 0)} ms (inference ${fmt(body.timings_ms.infer, 0)} ms)`],
  ];
  return node("dl", {}, ...rows.flatMap(([k, v]) => [node("dt", { text: k }),
    node("dd", { text: v })]));
}

const RESEARCH = "research software, not a medical device: not for diagnosis";

// What the image shows, said as the service decided it: no lung, no infection, or infection
// with its score; the research-use note beside every percentage.
function verdict(body) {
  const note = node("span", { class: "research-note", text: ` (${RESEARCH})` });
  const score = `decision score ${fmt(body.infection_score, 2)}`;
  if (!body.lung_found) {
    return node("div", { class: "verdict no-lung", "data-verdict": "no-lung" },
      node("span", { class: "percent", text: "No lung found" }),
      node("p", { class: "warning", text: (body.warnings || []).join("; ") }), note);
  }
  if (!body.infection_detected) {
    return node("div", { class: "verdict no-infection", "data-verdict": "no-infection" },
      "Infection: ", node("span", { class: "percent calm", "data-value": "0",
        text: "not detected" }), ` (${score})`, note);
  }
  const percent = node("span", { class: "percent", "data-value": String(body.infection_percent),
    text: `${fmt(body.infection_percent, 2)} %` });
  return node("div", { class: "verdict infection", "data-verdict": "infection" },
    "Infection detected: ", percent, ` of the lung (${score})`, note);
}

function caption(requested, body) {
  const parts = [verdict(body), details(body)];
  if (body.fallback) {
    parts.unshift(node("p", { class: "notice", role: "alert" },
      `${body.model.kind} ran instead of ${requested}: ${body.fallback}`));
  }
  return node("figcaption", {}, node("strong", { text: `Asked for: ${requested}` }), ...parts);
}

function altText(body) {
  const what = !body.lung_found ? "no lung found" : !body.infection_detected
    ? "lungs outlined, no infection detected"
    : `infection ${fmt(body.infection_percent, 2)} % of the lung`;
  return `${body.modality.toUpperCase()} image, ${body.model.name}: ${what}`;
}

async function draw(entry) {
  const opacity = Number($("opacity").value) / 100;
  const url = await compose(entry.base, entry.masks, opacity);
  const img = entry.figure.querySelector("img");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = url;
  await img.decode();
}

async function segmentWith(file, model, base) {
  const params = new URLSearchParams({ modality: $("modality").value, model, format: "png" });
  const body = await (await post(`/v1/segment?${params}`, file)).json();
  const masks = body.masks || body.frames[0].masks;
  const bits = { lung: await maskBits(masks.lung), infection: await maskBits(masks.infection) };
  const figure = node("figure", { class: "result", "data-model": model },
    node("img", { alt: altText(body), width: body.width, height: body.height }),
    caption(model, body));
  const entry = { figure, base, masks: bits, body };
  await draw(entry);
  return entry;
}

async function run(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const models = [...new Set([$("model").value, $("compare").value].filter(Boolean))];
  $("run").disabled = true;
  document.body.dataset.state = "busy";
  $("status").textContent = `segmenting ${file.name} with ${models.join(" and ")}…`;
  try {
    const base = await createImageBitmap(await (await post("/v1/render", file)).blob());
    const entries = await Promise.all(models.map((m) => segmentWith(file, m, base)));
    shown.splice(0, shown.length, ...entries);
    $("results").replaceChildren(...entries.map((e) => e.figure));
    $("status").textContent = `${file.name}: done`;
    document.body.dataset.state = "done";
  } catch (error) {
    $("status").replaceChildren(node("p", { class: "notice error" }, `Error: ${error.message}`));
    document.body.dataset.state = "error";
  } finally {
    $("run").disabled = false;
  }
}

function setupDrop() {
  const drop = $("drop");
  const input = $("file");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
    }
  });
}

setupDrop();
$("segment-form").addEventListener("submit", run);
$("opacity").addEventListener("change", () => Promise.all(shown.map(draw)));
