// Volume viewer: one CT volume (zip of a DICOM series, its files, or a NIfTI) as a job, then
// scrolled slice by slice with the lung and infection overlays.
//   POST /v1/volumes                                   the job (202 + its document)
//   GET  /v1/volumes/{id}                              polled for the progress bar, then the result
//   GET  /v1/volumes/{id}/mask?format=rle&layout=canonical   the masks, slice by slice
//   GET  /v1/volumes/{id}/slices/{index}.png?window=…  the slice (canonical: patient's right left)
import { apiFetch, fmt, getJson, node } from "./common.js";

const $ = (id) => document.getElementById(id);
const LUNG = [47, 127, 208];
const INFECTION = [242, 142, 28];
const RESEARCH = "research use only: not a diagnosis, not for treatment decisions";
const POLL_MS = 400;
const CACHED = 160; // decoded slice images kept (least recently drawn dropped)

const view = { job: null, rows: [], masks: [], images: new Map(), index: 0, drawing: null };

// pycocotools' compressed RLE string -> run lengths (rleFrString).
function runs(text) {
  const counts = [];
  for (let p = 0; p < text.length;) {
    let x = 0;
    let k = 0;
    let more = 1;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p += 1;
      k += 1;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// A COCO RLE ({size: [h, w], counts}) as a row-major bit array (RLE runs are column-major).
function decode(rle) {
  const [h, w] = rle.size;
  const bits = new Uint8Array(h * w);
  let i = 0;
  runs(rle.counts).forEach((length, n) => {
    if (n % 2) {
      for (let j = i; j < i + length; j += 1) bits[(j % h) * w + Math.floor(j / h)] = 1;
    }
    i += length;
  });
  return bits;
}

async function slicePicture(index, window) {
  const key = `${window}/${index}`;
  if (view.images.has(key)) {
    const found = view.images.get(key);
    view.images.delete(key);
    view.images.set(key, found); // most recently used last
    return found;
  }
  const response = await apiFetch(
    `/v1/volumes/${view.job.id}/slices/${index}.png?window=${window}`);
  if (!response.ok) throw new Error(`slice ${index}: HTTP ${response.status}`);
  const picture = await createImageBitmap(await response.blob());
  view.images.set(key, picture);
  while (view.images.size > CACHED) view.images.delete(view.images.keys().next().value);
  return picture;
}

function overlay(context, masks, w, h, opacity) {
  const image = context.getImageData(0, 0, w, h);
  const px = image.data;
  const { lung, infection } = masks;
  for (let y = 0, i = 0; y < h; y += 1) {
    for (let x = 0; x < w; x += 1, i += 1) {
      if (!lung[i]) continue;
      const inside = infection[i];
      const bits = inside ? infection : lung;
      const border = x === 0 || x === w - 1 || y === 0 || y === h - 1 ||
        !bits[i - 1] || !bits[i + 1] || !bits[i - w] || !bits[i + w];
      const colour = inside ? INFECTION : LUNG;
      const a = border ? 0.95 : opacity;
      for (let c = 0; c < 3; c += 1) px[i * 4 + c] = px[i * 4 + c] * (1 - a) + colour[c] * a;
    }
  }
  context.putImageData(image, 0, 0);
}

async function draw(index) {
  view.index = index;
  const ticket = Symbol("draw");
  view.drawing = ticket;
  const [, h, w] = view.job.result.shape;
  const picture = await slicePicture(index, $("window").value);
  if (view.drawing !== ticket) return; // a later slice was asked for meanwhile
  const canvas = $("canvas");
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingEnabled = true;
  context.drawImage(picture, 0, 0, w, h); // large volumes' slices are stored shrunk
  overlay(context, view.masks[index], w, h, Number($("opacity").value) / 100);
  const row = view.rows[index];
  const total = view.rows.length;
  $("slice").value = String(index);
  $("frame").dataset.slice = String(index);
  canvas.setAttribute("aria-label", `CT slice ${index + 1} of ${total} (z ${fmt(row.z_mm, 1)} ` +
    `mm) with the lung (blue) and infection (orange) overlays`);
  $("slice-info").textContent = `Slice ${index + 1} of ${total} · z ${fmt(row.z_mm, 1)} mm · ` +
    `lung ${fmt(row.lung_area_mm2 / 100, 1)} cm² · infection ` +
    `${fmt(row.infection_area_mm2 / 100, 1)} cm²`;
  document.body.dataset.slice = String(index);
}

function go(index) {
  const last = view.rows.length - 1;
  const next = Math.max(0, Math.min(last, index));
  if (next !== view.index || view.drawing === null) draw(next).catch(showError);
}

function percentCell(value) {
  if (value === null || value === undefined) {  // no lung: no percentage of it
    return node("td", {}, node("span", { class: "percent none", "data-value": "",
      text: "no lung found" }));
  }
  return node("td", {}, node("span", { class: "percent", "data-value": String(value),
    text: `${fmt(value, 2)} %` }), node("span", { class: "research", text: RESEARCH }));
}

function measures(result) {
  const lungs = [["Both lungs", {
    volume_ml: result.lung_volume_ml,
    infection_volume_ml: result.infection_volume_ml,
    infection_percent: result.infection_percent,
  }], ["Left lung (patient's left)", result.lungs.left],
  ["Right lung (patient's right)", result.lungs.right]];
  const body = lungs.map(([name, m]) => node("tr", { "data-lung": name.split(" ")[0].toLowerCase() },
    node("td", { class: "text", text: name }), node("td", { text: `${fmt(m.volume_ml, 1)} mL` }),
    node("td", { text: `${fmt(m.infection_volume_ml, 1)} mL` }), percentCell(m.infection_percent)));
  const table = node("table", { id: "lung-table" },
    node("caption", { text: "Volumes and infection per lung" }),
    node("thead", {}, node("tr", {}, node("th", { class: "text", text: "" }),
      node("th", { text: "lung" }), node("th", { text: "infection" }),
      node("th", { text: "infection % of lung" }))),
    node("tbody", {}, ...body));
  const model = result.model;
  const facts = [
    ["Lung found", result.lung_found ? "yes" : "no"],
    ["Infection detected", result.infection_detected ? "yes" : "no"],
    ["How the lungs were told apart", result.lungs.split],
    ["Slices", `${result.n_slices} (${result.spacing_mm.map((s) => fmt(s, 2)).join(" × ")} mm)`],
    ["Model that ran", `${model.name} ${model.version} (${model.kind}, ${model.provider}, ` +
      `${model.precision})`],
    ["Skipped", Object.entries(result.skipped).filter(([, n]) => n)
      .map(([why, n]) => `${n} ${why.replace("_", " ")}`).join(", ") || "nothing"],
    ["Time", `${fmt(result.timings_ms.total / 1000, 1)} s (inference ` +
      `${fmt((result.timings_ms.infer || 0) / 1000, 1)} s)`],
  ];
  const parts = [table, node("dl", {}, ...facts.flatMap(([k, v]) => [node("dt", { text: k }),
    node("dd", { text: v })]))];
  if (result.fallback) parts.unshift(node("p", { class: "notice", role: "alert", text: result.fallback }));
  for (const warning of result.warnings) parts.push(node("p", { class: "notice", text: warning }));
  parts.push(downloads(result));
  return parts;
}

function downloads(result) {
  const files = [["mask", "mask (NIfTI)", "lungseg-labels.nii.gz"],
    ["mask?format=rle", "masks (RLE JSON)", "lungseg-slices.json"],
    ["fhir", "FHIR Bundle", "lungseg-report.fhir.json"]];
  if (result.source_format === "dicom") files.splice(1, 0, ["seg", "DICOM SEG", "lungseg-seg.dcm"]);
  const buttons = files.map(([path, label, name]) => {
    const button = node("button", { type: "button", text: `Download ${label}` });
    button.addEventListener("click", async () => {
      const response = await apiFetch(`/v1/volumes/${view.job.id}/${path}`);
      if (!response.ok) return showError(new Error(`${label}: HTTP ${response.status}`));
      const link = node("a", { href: URL.createObjectURL(await response.blob()), download: name });
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    });
    return button;
  });
  return node("div", { class: "downloads" }, ...buttons);
}

function showError(error) {
  $("status").replaceChildren(node("p", { class: "notice error" }, `Error: ${error.message}`));
  document.body.dataset.state = "error";
}

async function waitDone(job) {
  const bar = $("progress");
  $("progress-box").hidden = false;
  for (;;) {
    const { done, total } = job.progress;
    bar.max = total || 1;
    bar.value = done;
    $("progress-label").textContent = total
      ? `Segmenting: ${done} of ${total} slices (${job.status})` : `Assembling (${job.status})…`;
    if (!["queued", "running"].includes(job.status)) return job;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    job = await getJson(`/v1/volumes/${job.id}`);
  }
}

async function show(job) {
  const result = job.result;
  const rle = await getJson(`/v1/volumes/${job.id}/mask?format=rle&layout=canonical`);
  view.job = job;
  view.rows = result.slices;
  view.masks = rle.slices.map((s) => ({ lung: decode(s.lung), infection: decode(s.infection) }));
  view.images.clear();
  view.drawing = null;
  const [, rowMm, columnMm] = result.spacing_mm;
  const [, h, w] = result.shape;
  $("canvas").style.aspectRatio = `${w * columnMm} / ${h * rowMm}`;
  const slider = $("slice");
  slider.max = String(result.n_slices - 1);
  $("measures").replaceChildren(...measures(result));
  $("volume").hidden = false;
  await draw(Math.floor(result.n_slices / 2));
}

async function run(event) {
  event.preventDefault();
  const files = [...$("files").files];
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  $("run").disabled = true;
  $("volume").hidden = true;
  document.body.dataset.state = "busy";
  $("status").textContent = `uploading ${files.length} file(s)…`;
  try {
    const params = new URLSearchParams({ model: $("model").value });
    const response = await apiFetch(`/v1/volumes?${params}`, { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const series = (body.series || []).map((s) => `${s.description || "no description"} ` +
        `(${s.modality}, ${s.instances} instances)`).join("; ");
      throw new Error((body.detail || `HTTP ${response.status}`) + (series ? ` [${series}]` : ""));
    }
    $("status").textContent = "";
    const job = await waitDone(body);
    if (job.status !== "done") throw new Error(`the job ${job.status}: ${job.error}`);
    $("progress-box").hidden = true;
    await show(job);
    $("status").textContent = `done: ${job.result.n_slices} slices`;
    document.body.dataset.state = "done";
  } catch (error) {
    showError(error);
  } finally {
    $("run").disabled = false;
  }
}

function setup() {
  $("volume-form").addEventListener("submit", run);
  $("slice").addEventListener("input", () => go(Number($("slice").value)));
  $("window").addEventListener("change", () => view.job && draw(view.index).catch(showError));
  $("opacity").addEventListener("change", () => view.job && draw(view.index).catch(showError));
  $("frame").addEventListener("wheel", (event) => {
    if (!view.job) return;
    event.preventDefault();
    go(view.index + (event.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  $("frame").addEventListener("keydown", (event) => {
    if (!view.job) return;
    const steps = { ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10,
      PageDown: -10 };
    if (event.key in steps) go(view.index + steps[event.key]);
    else if (event.key === "Home") go(0);
    else if (event.key === "End") go(view.rows.length - 1);
    else return;
    event.preventDefault();
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) $("files").files = e.dataTransfer.files;
  });
}

setup();
