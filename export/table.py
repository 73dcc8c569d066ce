"""The validation table of the model cards as Markdown (for docs/models.md and the README).

``python -m export.table --models models`` prints one row per model and validation set, the
threshold baseline's numbers on the same images beside the model's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.benchmark.table import mean, number, text_table
from service.models.registry import latest_versions

HEADER = (
    "model",
    "set (images)",
    "lung DSC",
    "infection DSC (n)",
    "infection FP rate (n)",
    "COVID-19 detected (n)",
    "infection % MAE, COVID-19 (n)",
    "pixel acc. lung / inf.",
    "loss lung / inf.",
    "threshold: lung DSC / inf. DSC / FP rate",
)


def _pair(summary: dict[str, Any], metric: str) -> str:
    """``"lung / infection"`` means of one metric."""
    lung, infection = mean(summary, "lung", metric), mean(summary, "infection", metric)
    return f"{number(lung)} / {number(infection)}"


def cells(summary: dict[str, Any]) -> dict[str, str]:
    """Formatted numbers of one ``summarise(...)["all"]`` object."""
    fp = summary["infection_false_positive_rate"]
    infection_n = summary["infection"]["dice"]["n"]
    return {
        "lung": number(mean(summary, "lung", "dice")),
        "inf": f"{number(mean(summary, 'infection', 'dice'))} ({infection_n})",
        "fp": f"{number(fp['rate'], 2)} ({fp['n']})" if fp["n"] else "-",
        "acc": _pair(summary, "accuracy"),
        "loss": _pair(summary, "loss"),
    }


def covid_cells(group: dict[str, Any] | None) -> tuple[str, str]:
    """Sensitivity of the decision and the infection % error on the COVID-19 images of one
    ``summarise(...)["covid"]`` object ("-" where the card predates them or n is 0)."""
    if group is None:
        return "-", "-"
    detection = group.get("detection") or {}
    error = (group.get("infection_percent_error") or {}).get
    detected = f"{number(detection['rate'], 3)} ({detection['n']})" if detection.get("n") else "-"
    mae = f"{number(error('mean'), 1)} ({error('n')})" if error("n") else "-"
    return detected, mae


def rows(card: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table rows of one model card (one per validation set)."""
    out: list[tuple[str, ...]] = []
    for name, result in card.get("metrics", {}).items():
        model, base = cells(result["model"]["all"]), cells(result["threshold_baseline"]["all"])
        label = (
            f"{name}{' (external)' if 'external' in result['role'] else ''} ({result['n_images']})"
        )
        baseline = f"{base['lung']} / {base['inf'].split(' ')[0]} / {base['fp'].split(' ')[0]}"
        detected, mae = covid_cells(result["model"].get("covid"))
        out.append(
            (
                f"{card['name']} {card['version']}",
                label,
                model["lung"],
                model["inf"],
                model["fp"],
                detected,
                mae,
                model["acc"],
                model["loss"],
                baseline,
            )
        )
    return out


def table(models_dir: Path) -> str:
    """The whole Markdown table for the newest version of every model under ``models_dir``."""
    lines = []
    for directory in latest_versions(models_dir).values():
        lines += rows(json.loads((directory / "model.json").read_text(encoding="utf-8")))
    return text_table(HEADER, lines, markdown=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.table", description=__doc__)
    parser.add_argument("--models", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    sys.stdout.write(table(args.models))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
