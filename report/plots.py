"""The report's charts as PNG files (matplotlib; imported by the report only, never the service).

Every chart has labelled axes with units and shows the run's measured numbers as stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from service.benchmark.table import GROUPS, STRUCTURES, dice_values

GROUP_COLOURS = {"covid": "#c2410c", "non_covid": "#1d6fb8"}
STRUCTURE_COLOURS = {"lung": "#2f7fd0", "infection": "#f28e1c"}
PALETTE = ["#1d6fb8", "#c2410c", "#2e7d32", "#7b3fa0", "#8c6d1f", "#0f7c86"]
DPI = 100
YLABELS = {
    "accuracy": "fraction of pixels right (0–1)",
    "loss": "loss (lower is better)",
    "dice": "Dice (0–1)",
}


def short_label(row: dict[str, Any], modalities: int) -> str:
    """Compact model label for an axis: ``unet→threshold`` for a fallback, with the modality."""
    label = f"{row['requested']}→{row['kind']}\n(fallback)" if row["fallback"] else row["model"]
    return f"{label}\n{row['modality'].upper()}" if modalities > 1 else label


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def metrics_bars(rows: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy, loss and Dice per model, lung and infection side by side (means over the set)."""
    modalities = len({r["modality"] for r in rows})
    labels = [short_label(r, modalities) for r in rows]
    fig = Figure(figsize=(max(8.0, 2.2 * len(rows) + 3), 3.6))
    axes = fig.subplots(1, 3)
    x = np.arange(len(rows))
    for ax, metric, title in zip(
        axes,
        ("accuracy", "loss", "dice"),
        ("Pixel accuracy", "Loss (Dice + BCE)", "Dice (DSC)"),
        strict=True,
    ):
        for offset, structure in ((-0.2, "lung"), (0.2, "infection")):
            values = [r[f"{structure}_{metric}"] for r in rows]
            heights = [np.nan if v is None else v for v in values]
            bars = ax.bar(x + offset, heights, 0.38, color=STRUCTURE_COLOURS[structure])
            bars.set_label(structure)
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel(YLABELS[metric], fontsize=8)
        if metric != "loss":
            ax.set_ylim(0, 1.08)
        ax.grid(axis="y", color="#e5e9ee")
        ax.set_axisbelow(True)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("Means over the run's images (infection: images with infection)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)


def dice_distributions(results: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> Path:
    """Box + strip plots of per-image Dice per model, COVID-19 vs non-COVID, lung and infection."""
    modalities = len({r["modality"] for r in rows})
    labels = [short_label(r, modalities) for r in rows]
    fig = Figure(figsize=(max(8.0, 2.4 * len(rows) * 2), 4.0))
    axes = fig.subplots(1, len(STRUCTURES))
    rng = np.random.default_rng(0)
    for ax, structure in zip(axes, STRUCTURES, strict=True):
        for i, entry in enumerate(dice_values(results, structure)):
            for j, group in enumerate(GROUPS):
                values = entry[group]
                pos = i + (j - 0.5) * 0.36
                colour = GROUP_COLOURS[group]
                if values:
                    ax.boxplot(
                        [values],
                        positions=[pos],
                        widths=0.28,
                        showfliers=False,
                        medianprops={"color": colour, "linewidth": 2},
                        boxprops={"color": colour},
                        whiskerprops={"color": colour},
                        capprops={"color": colour},
                    )
                    jitter = rng.uniform(-0.1, 0.1, len(values))
                    ax.scatter(pos + jitter, values, s=9, color=colour, alpha=0.65, zorder=3)
                ax.text(pos, 1.035, f"n={len(values)}", ha="center", fontsize=7, color="#57606a")
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_ylim(0, 1.09)
        ax.set_ylabel("Dice per image (DSC, 0–1)", fontsize=8)
        title = "Lung" if structure == "lung" else "Infection (images with infection)"
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", color="#e5e9ee")
    handles = [
        Line2D([], [], marker="o", ls="", color=GROUP_COLOURS[group], label=name)
        for group, name in GROUPS.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)


def latency(rows: list[dict[str, Any]], path: Path) -> Path:
    """Horizontal bars: benchmark wall time per image (ms) per model."""
    modalities = len({r["modality"] for r in rows})
    labels = [short_label(r, modalities).replace("\n", " ") for r in rows]
    values = [r["ms_per_image"] or 0.0 for r in rows]
    fig = Figure(figsize=(7.5, 0.5 * len(rows) + 1.4))
    ax = fig.subplots()
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(rows))]
    bars = ax.barh(range(len(rows)), values, color=colours)
    ax.bar_label(bars, fmt="%.1f ms", fontsize=8, padding=2)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds per image (decode, inference and scoring)", fontsize=8)
    ax.set_xlim(0, max([*values, 1.0]) * 1.2)
    ax.set_title("Benchmark time per image", fontsize=10)
    ax.grid(axis="x", color="#e5e9ee")
    ax.set_axisbelow(True)
    fig.tight_layout()
    return _save(fig, path)


def history(points: list[dict[str, Any]], set_name: str, path: Path) -> Path | None:
    """Mean Dice per model over the finished runs on ``set_name``; ``None`` with < 2 runs."""
    runs = [p for p in points if p["set_name"] == set_name and p["status"] == "done"]
    if len(runs) < 2:
        return None
    keys = list(dict.fromkeys((e["label"], e["modality"]) for r in runs for e in r["entries"]))
    fig = Figure(figsize=(max(7.0, 0.7 * len(runs) + 4), 4.0))
    ax = fig.subplots()
    x = np.arange(len(runs))
    for i, (label, modality) in enumerate(keys):
        for structure, style in (("lung", "-"), ("infection", "--")):
            values = [
                next(
                    (
                        e[f"{structure}_dice"]
                        for e in r["entries"]
                        if (e["label"], e["modality"]) == (label, modality)
                    ),
                    None,
                )
                for r in runs
            ]
            y = [np.nan if v is None else v for v in values]
            ax.plot(
                x,
                y,
                style,
                marker="o",
                color=PALETTE[i % len(PALETTE)],
                label=f"{label} {modality.upper()} {structure}",
            )
    ax.set_xticks(
        x,
        [str(r["created"])[5:16].replace("T", " ") for r in runs],
        fontsize=7,
        rotation=30,
        ha="right",
    )
    ax.set_xlabel("run (start time, UTC)", fontsize=8)
    ax.set_ylabel("mean Dice (DSC, 0–1)", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"Mean Dice over runs on “{set_name}” (solid: lung, dashed: infection)", fontsize=10
    )
    ax.grid(color="#e5e9ee")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _save(fig, path)
