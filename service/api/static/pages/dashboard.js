// Dashboard: the stored benchmark results, read through the public API.
//   GET /v1/benchmark            runs (newest first, without results)
//   GET /v1/benchmark/{id}       one run's results: entries with summary, rows and timing
//   GET /v1/benchmark/history    every run's summary numbers, for the chart over time
import { boxStrip, hbars, lines } from "./charts.js";
import { PALETTE, fmt, getJson, node } from "./common.js";

const $ = (id) => document.getElementById(id);
const GROUPS = [
  { key: "covid", name: "COVID-19", color: "#c2410c" },
  { key: "non_covid", name: "non-COVID", color: "#1d6fb8" },
];

function label(entry) {
  const ran = entry.model.name;
  return entry.fallback ? `${entry.requested} → ${ran} (fallback)` : ran;
}

function shortLabel(entry) {
  return entry.fallback ? `${entry.requested}→${entry.model.kind}` : entry.model.name;
}

function mean(summary, structure, metric) {
  return summary[structure]?.[metric]?.mean ?? null;
}

function seedTable(entries) {
  const head = node("thead", {},
    node("tr", {},
      node("th", { class: "text", rowspan: 2, scope: "col", text: "Model (what ran)" }),
      node("th", { class: "text", rowspan: 2, scope: "col", text: "Modality" }),
      node("th", { rowspan: 2, scope: "col", text: "Images" }),
      node("th", { colspan: 3, scope: "colgroup", text: "Lung" }),
      node("th", { colspan: 4, scope: "colgroup", text: "Infection" }),
      node("th", { rowspan: 2, scope: "col", text: "Infection FP rate" }),
      node("th", { rowspan: 2, scope: "col", text: "ms / image" })),
    node("tr", {}, ...["Accuracy", "Loss", "DSC", "Accuracy", "Loss", "DSC", "n"].map(
      (t) => node("th", { scope: "col", text: t }))));
  const body = node("tbody");
  for (const entry of entries) {
    const s = entry.summary.all;
    const fp = s.infection_false_positive_rate;
    const cells = [
      node("th", { class: "text", scope: "row", text: label(entry) }),
      node("td", { class: "text", text: entry.modality.toUpperCase() }),
      node("td", { text: String(s.n_images) }),
      ...["accuracy", "loss", "dice"].map((m) => node("td", { text: fmt(mean(s, "lung", m)) })),
      ...["accuracy", "loss", "dice"].map(
        (m) => node("td", { text: fmt(mean(s, "infection", m)) })),
      node("td", { text: String(s.infection.dice.n) }),
      node("td", { text: fp.rate === null ? "—" : `${fmt(fp.rate, 2)} (n=${fp.n})` }),
      node("td", { text: fmt(entry.timing?.ms_per_image, 1) }),
    ];
    body.append(node("tr", {}, ...cells));
  }
  const caption = node("caption", {
    text: "Means over the run's images (higher is better, except loss and FP rate)" });
  return node("table", { id: "seed" }, caption, head, body);
}

function diceChart(entries, structure) {
  const groups = entries.map((entry) => {
    const values = { covid: [], non_covid: [] };
    for (const row of entry.rows) {
      const score = row[structure];
      if (!score || (structure === "infection" && score.ref_empty)) continue;
      values[row.covid ? "covid" : "non_covid"].push(score.dice);
    }
    return {
      label: `${shortLabel(entry)} (${entry.modality.toUpperCase()})`,
      series: GROUPS.map((g) => ({ name: g.name, color: g.color, values: values[g.key] })),
    };
  });
  const what = structure === "lung" ? "Lung" : "Infection";
  const title = `${what} Dice per image, by model`;
  const figure = node("figure", { class: "chart" });
  figure.append(boxStrip({ title, yLabel: "Dice (DSC, 0–1)", groups, legendItems: GROUPS }));
  figure.append(node("figcaption", { text: structure === "lung"
    ? "Each dot is one image; box = quartiles, thick line = median, whiskers = 1.5 IQR."
    : "Only images whose reference infection is non-empty; the others count towards the " +
      "infection false-positive rate of the table." }));
  return figure;
}

function latencyChart(entries) {
  const items = entries.map((entry, i) => ({
    label: `${label(entry)} (${entry.modality.toUpperCase()})`,
    value: entry.timing?.ms_per_image ?? 0,
    color: PALETTE[i % PALETTE.length],
  }));
  const figure = node("figure", { class: "chart" });
  figure.append(hbars({ title: "Benchmark time per image", xLabel: "milliseconds per image",
    items }));
  figure.append(node("figcaption", { text: "Wall time of the benchmark per image: decoding, " +
    "preprocessing, inference and scoring, on the service's machine and execution provider." }));
  return figure;
}

function historyChart(runs, setName) {
  const same = runs.filter((r) => r.set_name === setName && r.status === "done");
  const keys = [...new Set(same.flatMap((r) => r.entries.map((e) => `${e.label}|${e.modality}`)))];
  const series = [];
  keys.forEach((key, i) => {
    const [name, modality] = key.split("|");
    for (const [structure, dash] of [["lung", ""], ["infection", "6 4"]]) {
      series.push({
        name: `${name} ${modality.toUpperCase()} ${structure}`,
        color: PALETTE[i % PALETTE.length],
        dash,
        values: same.map((r) => r.entries.find(
          (e) => `${e.label}|${e.modality}` === key)?.[`${structure}_dice`] ?? null),
      });
    }
  });
  const xs = same.map((r) => r.created.slice(5, 19).replace("T", " "));
  const figure = node("figure", { class: "chart" });
  figure.append(lines({ title: `Mean Dice over runs on “${setName}”`,
    xLabel: "run (start time, UTC)", yLabel: "mean Dice (DSC, 0–1)", xs, series }));
  figure.append(node("figcaption", {
    text: "Solid: lung Dice; dashed: infection Dice (images with infection). One point per run." }));
  return figure;
}

function historyTable(runs) {
  const head = node("thead", {}, node("tr", {}, ...["Started (UTC)", "Set", "Status", "Images",
    "Lung DSC per model", "Infection DSC per model"].map(
    (t, i) => node("th", { scope: "col", class: i < 3 || i > 3 ? "text" : "", text: t }))));
  const body = node("tbody");
  for (const run of [...runs].reverse()) {
    const per = (key) => run.entries.map((e) => `${e.label}: ${fmt(e[key])}`).join("; ") || "—";
    body.append(node("tr", {},
      node("td", { class: "text", text: run.created.slice(0, 19).replace("T", " ") }),
      node("td", { class: "text", text: run.set_name }),
      node("td", { class: "text", text: run.status }),
      node("td", { text: String(run.n_images) }),
      node("td", { class: "text", text: per("lung_dice") }),
      node("td", { class: "text", text: per("infection_dice") })));
  }
  return node("table", { id: "history" }, node("caption", { text: "All stored runs, newest first" }),
    head, body);
}

async function showRun(id, history) {
  $("status").textContent = "loading the run…";
  const run = await getJson(`/v1/benchmark/${encodeURIComponent(id)}`);
  const entries = run.results?.entries || [];
  $("run-meta").textContent = `set “${run.set_name}”, ${run.n_images} images, ` +
    `finished ${(run.finished || "").slice(0, 19).replace("T", " ")} UTC`;
  $("fallbacks").replaceChildren(...entries.filter((e) => e.fallback).map((e) => node("p",
    { class: "notice" }, `${e.model.kind} ran instead of ${e.requested} (${e.modality.toUpperCase()}): ${e.fallback}`)));
  $("seed-table").replaceChildren(seedTable(entries));
  $("dice-charts").replaceChildren(diceChart(entries, "lung"), diceChart(entries, "infection"));
  $("latency-chart").replaceChildren(latencyChart(entries));
  $("history-chart").replaceChildren(historyChart(history, run.set_name));
  $("history-table").replaceChildren(historyTable(history));
  $("status").textContent = "";
  document.body.dataset.loaded = id;
}

async function main() {
  try {
    const [{ runs }, { runs: history }] = await Promise.all([
      getJson("/v1/benchmark?limit=100"), getJson("/v1/benchmark/history?limit=100")]);
    const done = runs.filter((r) => r.status === "done");
    const select = $("run-select");
    if (!done.length) {
      select.replaceChildren(node("option", { text: "no finished run" }));
      $("status").replaceChildren(node("p", { class: "notice" }, "No benchmark results are " +
        "stored yet: POST a labelled set (zip) to /v1/benchmark, then reload this page."));
      $("history-table").replaceChildren(historyTable(history));
      return;
    }
    select.replaceChildren(...done.map((r) => node("option", { value: r.id,
      text: `${r.created.slice(0, 16).replace("T", " ")} · ${r.set_name} · ${r.n_images} images` +
        ` · ${r.models.join(", ")}` })));
    select.disabled = false;
    select.addEventListener("change", () => showRun(select.value, history).catch(fail));
    await showRun(done[0].id, history);
  } catch (error) {
    fail(error);
  }
}

function fail(error) {
  $("status").replaceChildren(node("p", { class: "notice error" }, `Error: ${error.message}`));
}

main();
