"""Numbers of a stored benchmark run, as the dashboard and the report show them.

Plain Python over the results that :func:`service.benchmark.jobs.score_models` stores (no
plotting here: the service imports this module, and the service never imports matplotlib).

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


def _mean(summary: dict[str, Any], structure: str, metric: str) -> float | None:
    value = summary.get(structure, {}).get(metric, {}).get("mean")
    return None if value is None else float(value)


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
                row[f"{structure}_{metric}"] = _mean(summary, structure, metric)
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
                        "lung_dice": _mean(e["summary"]["all"], "lung", "dice"),
                        "infection_dice": _mean(e["summary"]["all"], "infection", "dice"),
                        "ms_per_image": _ms_per_image(e),
                    }
                    for e in results.get("entries", [])
                ],
            }
        )
    return points
