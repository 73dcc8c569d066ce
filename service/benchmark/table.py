"""Tables of benchmark results: the one place that reads numbers out of a summary.

Plain Python over summaries as :func:`service.benchmark.evaluate.summarise` makes them (as
dicts: stored runs and model cards hold them as JSON); used by the CLI, the dashboard's
history, the offline report and the model-card table of the export (no plotting here).

* :func:`text_table`: aligned plain-text or Markdown tables of string cells;
* the seed's table: pixel accuracy, loss and Dice (DSC) per model and modality, lung and
  infection (the ``all`` summary means);
* per-image Dice values per model, split COVID-19 / non-COVID (for box and strip plots);
* the history of runs: Dice and latency per model and run, without per-image rows.
"""

from __future__ import annotations

from typing import Any

STRUCTURES = ("lung", "infection")
GROUPS = {"covid": "COVID-19", "non_covid": "non-COVID"}
SEED_METRICS = ("accuracy", "loss", "dice")


def entry_label(entry: dict[str, Any]) -> str:
    """``unet-cxr``; ``unet → threshold-cxr (fallback)`` when another model ran than asked."""
    ran = str(entry["model"]["name"])
    if entry.get("fallback"):
        return f"{entry['requested']} → {ran} (fallback)"
    return ran


def mean(summary: dict[str, Any], structure: str, metric: str) -> float | None:
    """The mean of ``metric`` for ``structure`` in one group summary (``None`` if undefined)."""
    value = summary.get(structure, {}).get(metric, {}).get("mean")
    return None if value is None else float(value)


def number(value: float | None, digits: int = 3) -> str:
    """``0.969`` or ``-`` for an undefined value."""
    return "-" if value is None else f"{value:.{digits}f}"


def mean_std(stat: dict[str, Any]) -> str:
    """``0.969±0.027`` or ``-``."""
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.3f}±{stat['std']:.3f}"


def text_table(
    header: tuple[str, ...], lines: list[tuple[str, ...]], markdown: bool = False
) -> str:
    """An aligned plain-text table, or a Markdown one."""
    if markdown:
        rows = [header, tuple("---" for _ in header), *lines]
        return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"
    everything = [header, *lines]
    widths = [max(len(line[i]) for line in everything) for i in range(len(header))]
    return (
        "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in everything
        )
        + "\n"
    )


def _ms_per_image(entry: dict[str, Any]) -> float | None:
    timing = entry.get("timing") or {}
    value = timing.get("ms_per_image")
    return None if value is None else float(value)


def seed_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, modality): identity, fallback, n, lung/infection acc/loss/DSC."""
    rows = []
    for entry in results.get("entries", []):
        summary = entry["summary"]["all"]
        row: dict[str, Any] = {
            "label": entry_label(entry),
            "requested": entry["requested"],
            "model": entry["model"]["name"],
            "version": entry["model"]["version"],
            "kind": entry["model"]["kind"],
            "modality": entry["modality"],
            "fallback": entry.get("fallback"),
            "n_images": summary["n_images"],
            "infection_fp_rate": summary["infection_false_positive_rate"]["rate"],
            "ms_per_image": _ms_per_image(entry),
        }
        for structure in STRUCTURES:
            for metric in SEED_METRICS:
                row[f"{structure}_{metric}"] = mean(summary, structure, metric)
            row[f"{structure}_n"] = summary[structure]["dice"]["n"]
        rows.append(row)
    return rows


def dice_values(results: dict[str, Any], structure: str) -> list[dict[str, Any]]:
    """Per entry: ``{"label", "modality", "covid": [...], "non_covid": [...]}`` per-image Dice.

    Infection Dice is defined only for images whose reference infection is non-empty (as in the
    summaries); images without a reference mask for ``structure`` are left out.
    """
    out = []
    for entry in results.get("entries", []):
        values: dict[str, list[float]] = {"covid": [], "non_covid": []}
        for row in entry.get("rows", []):
            score = row.get(structure)
            if score is None or (structure == "infection" and score["ref_empty"]):
                continue
            values["covid" if row["covid"] else "non_covid"].append(float(score["dice"]))
        out.append({"label": entry_label(entry), "modality": entry["modality"], **values})
    return out


def history(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compact history of stored runs (oldest first): per run, per entry Dice and latency."""
    points = []
    for run in sorted(runs, key=lambda r: str(r["created"])):
        results = run.get("results") or {}
        points.append(
            {
                "id": run["id"],
                "created": run["created"],
                "set_name": run["set_name"],
                "status": run["status"],
                "n_images": run["n_images"],
                "entries": [
                    {
                        "label": entry_label(e),
                        "requested": e["requested"],
                        "model": e["model"]["name"],
                        "modality": e["modality"],
                        "fallback": e.get("fallback"),
                        "lung_dice": mean(e["summary"]["all"], "lung", "dice"),
                        "infection_dice": mean(e["summary"]["all"], "infection", "dice"),
                        "ms_per_image": _ms_per_image(e),
                    }
                    for e in results.get("entries", [])
                ],
            }
        )
    return points


GROUPS_ALL = ("all", "covid", "non_covid")


HEADER = (
    "set",
    "model",
    "group",
    "n",
    "lung Dice",
    "lung IoU",
    "lung acc",
    "lung loss",
    "inf Dice (n)",
    "inf loss",
    "inf FP rate (n)",
)


def result_lines(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table lines of one result: all images, then COVID-19 / non-COVID when both occur."""
    summary = result["summary"]
    groups = [g for g in GROUPS_ALL if summary[g]["n_images"] > 0]
    if len(groups) == 2:  # all images are in one class: "all" says it already
        groups = ["all"]
    name = result["set"] + (f"/{result['split']}" if result["split"] else "")
    lines: list[tuple[str, ...]] = []
    for group in groups:
        s = summary[group]
        lung, inf, fp = s["lung"], s["infection"], s["infection_false_positive_rate"]
        lines.append(
            (
                name,
                result["model"]["name"],
                group,
                str(s["n_images"]),
                mean_std(lung["dice"]),
                number(lung["iou"]["mean"]),
                number(lung["accuracy"]["mean"]),
                number(lung["loss"]["mean"]),
                f"{mean_std(inf['dice'])} ({inf['dice']['n']})",
                number(inf["loss"]["mean"]),
                f"{number(fp['rate'])} ({fp['n']})",
            )
        )
    return lines
