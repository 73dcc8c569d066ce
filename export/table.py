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

from service.models.registry import latest_versions

HEADER = (
    "| model | set (images) | lung DSC | infection DSC (n) | infection FP rate (n) | "
    "pixel acc. lung / inf. | loss lung / inf. | threshold: lung DSC / inf. DSC / FP rate |\n"
    "|---|---|---|---|---|---|---|---|"
)


def _mean(summary: dict[str, Any], structure: str, metric: str) -> float | None:
    value = summary[structure][metric]["mean"]
    return None if value is None else float(value)


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pair(summary: dict[str, Any], metric: str) -> str:
    """``"lung / infection"`` means of one metric."""
    return f"{_f(_mean(summary, 'lung', metric))} / {_f(_mean(summary, 'infection', metric))}"


def cells(summary: dict[str, Any]) -> dict[str, str]:
    """Formatted numbers of one ``summarise(...)["all"]`` object."""
    fp = summary["infection_false_positive_rate"]
    return {
        "lung": _f(_mean(summary, "lung", "dice")),
        "inf": f"{_f(_mean(summary, 'infection', 'dice'))} ({summary['infection']['dice']['n']})",
        "fp": f"{_f(fp['rate'], 2)} ({fp['n']})" if fp["n"] else "-",
        "acc": _pair(summary, "accuracy"),
        "loss": _pair(summary, "loss"),
    }


def rows(card: dict[str, Any]) -> list[str]:
    """Table rows of one model card (one per validation set)."""
    out = []
    for name, result in card.get("metrics", {}).items():
        model, base = cells(result["model"]["all"]), cells(result["threshold_baseline"]["all"])
        label = (
            f"{name}{' (external)' if 'external' in result['role'] else ''} ({result['n_images']})"
        )
        out.append(
            f"| {card['name']} {card['version']} | {label} | {model['lung']} | {model['inf']} | "
            f"{model['fp']} | {model['acc']} | {model['loss']} | "
            f"{base['lung']} / {base['inf'].split(' ')[0]} / {base['fp'].split(' ')[0]} |"
        )
    return out


def table(models_dir: Path) -> str:
    """The whole Markdown table for the newest version of every model under ``models_dir``."""
    lines = [HEADER]
    for directory in latest_versions(models_dir).values():
        lines += rows(json.loads((directory / "model.json").read_text(encoding="utf-8")))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.table", description=__doc__)
    parser.add_argument("--models", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    sys.stdout.write(table(args.models) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
