"""The report's gallery: COVID-19 and non-COVID cases of the run's set with overlays.

Each case is one PNG: the reference masks, then each model's masks (lung one colour, infection
another) with the reference outlined. The masks are computed again with the service's own
``Segmenter`` (the stored run keeps scores, not masks), with the model that ran in the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from service.datasets import Sample, load_image, load_mask
from service.encoders.display import display_frame
from service.models.segmenter import Segmenter
from service.pipeline.metrics import dice

LUNG_COLOUR = "#2f7fd0"
INFECTION_COLOUR = "#f28e1c"
LUNG_RGB = np.array([0x2F, 0x7F, 0xD0], dtype=np.float32)
INFECTION_RGB = np.array([0xF2, 0x8E, 0x1C], dtype=np.float32)
REF_LUNG = "#ffe14d"
REF_INFECTION = "#ff2d55"
MAX_SIDE = 384


@dataclass(frozen=True)
class GalleryCase:
    """One gallery PNG (``file`` relative to the report folder) and what it shows."""

    sample: Sample
    file: str
    alt: str
    panels: list[str]


def _score(row: dict[str, Any]) -> float:
    structure = row.get("lung") or row.get("infection") or {}
    return float(structure.get("dice", 0.0))


def pick_cases(results: dict[str, Any], samples: dict[str, Sample], per_class: int) -> list[Sample]:
    """Up to ``per_class`` COVID-19 and non-COVID cases: the worst, median and best (and evenly
    spaced between) by the first entry's lung Dice; COVID-19 cases with reference infection."""
    rows = [r for r in results["entries"][0]["rows"] if r["id"] in samples]
    picked = []
    for covid in (True, False):
        group = [r for r in rows if r["covid"] == covid]
        with_infection = [r for r in group if r["infection"] and not r["infection"]["ref_empty"]]
        ranked = sorted(with_infection if covid and with_infection else group, key=_score)
        if not ranked or per_class < 1:
            continue
        indices = np.unique(np.linspace(0, len(ranked) - 1, per_class).round().astype(int))
        picked += [samples[ranked[i]["id"]] for i in indices]
    return picked


def _shrink(gray: np.ndarray, *masks: np.ndarray | None) -> tuple[np.ndarray, list[Any]]:
    scale = MAX_SIDE / max(gray.shape)
    if scale >= 1:
        return gray, list(masks)
    size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    shrunk = [
        None
        if m is None
        else cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        for m in masks
    ]
    return small, shrunk


def overlay(gray: np.ndarray, lung: np.ndarray | None, infection: np.ndarray | None) -> np.ndarray:
    """RGB uint8: lung blue (40 %), infection orange (60 %) over the grayscale image."""
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    if lung is not None:
        rgb[lung] = rgb[lung] * 0.6 + LUNG_RGB * 0.4
    if infection is not None:
        rgb[infection] = rgb[infection] * 0.4 + INFECTION_RGB * 0.6
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _outline(ax: Any, lung: np.ndarray | None, infection: np.ndarray | None) -> None:
    for mask, colour in ((lung, REF_LUNG), (infection, REF_INFECTION)):
        if mask is not None and mask.any():
            ax.contour(mask.astype(np.uint8), levels=[0.5], colors=colour, linewidths=1.0)


def _dice_text(pred: np.ndarray, ref: np.ndarray | None) -> str:
    return "—" if ref is None or not ref.any() else f"{dice(pred, ref):.2f}"


def render_case(sample: Sample, models: list[str], segmenter: Segmenter, path: Path) -> list[str]:
    """Draw ``sample`` with the reference and each model kind's masks; returns panel captions."""
    image = load_image(sample)
    gray = display_frame(image)
    lung_ref = load_mask(sample.lung, gray.shape)
    inf_ref = load_mask(sample.infection, gray.shape)
    captions = ["reference (expert masks)"]
    panels = [_shrink(gray, lung_ref, inf_ref)]
    for kind in models:
        seg = segmenter.segment_image(image, sample.modality, kind)
        masks = seg.frames[0].masks
        fallback = f" (asked {kind}: fallback)" if seg.fallback else ""
        percent = seg.frames[0].stats.infection_percent
        share = "no lung found" if percent is None else f"infection {percent:.1f} % of lung"
        captions.append(
            f"{seg.model.name} {seg.model.version}{fallback}\nlung DSC "
            f"{_dice_text(masks.lung, lung_ref)} · infection DSC "
            f"{_dice_text(masks.infection, inf_ref)} · {share}"
        )
        panels.append(_shrink(gray, masks.lung, masks.infection))
    refs = _shrink(gray, lung_ref, inf_ref)[1]
    fig = Figure(figsize=(3.2 * len(panels), 3.9))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for i, (ax, (small, (lung, infection)), caption) in enumerate(
        zip(axes, panels, captions, strict=True)
    ):
        ax.imshow(overlay(small, lung, infection))
        if i > 0:
            _outline(ax, *refs)
        ax.set_title(caption, fontsize=7)
        ax.set_axis_off()
    fig.legend(
        handles=[
            Patch(color=LUNG_COLOUR, label="lung"),
            Patch(color=INFECTION_COLOUR, label="infection"),
            Line2D([], [], color=REF_LUNG, label="reference lung outline"),
            Line2D([], [], color=REF_INFECTION, label="reference infection outline"),
        ],
        loc="lower center",
        ncol=4,
        fontsize=7,
        frameon=False,
    )
    fig.suptitle(
        f"{sample.id} · {sample.finding or 'no finding'} · {sample.modality.upper()}", fontsize=8
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.94))
    fig.savefig(path, dpi=96, facecolor="white")
    return captions


def build_gallery(
    results: dict[str, Any],
    samples: dict[str, Sample],
    segmenter: Segmenter,
    out: Path,
    per_class: int = 3,
) -> list[GalleryCase]:
    """Render the picked cases into ``out/gallery``; one PNG per case."""
    folder = out / "gallery"
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for n, sample in enumerate(pick_cases(results, samples, per_class)):
        kinds = [e["model"]["kind"] for e in results["entries"] if e["modality"] == sample.modality]
        name = f"case-{n + 1:02d}-{'covid' if sample.covid else 'non-covid'}.png"
        captions = render_case(sample, list(dict.fromkeys(kinds)), segmenter, folder / name)
        what = "COVID-19" if sample.covid else "non-COVID"
        models = ", ".join(c.split("\n")[0] for c in captions[1:])
        alt = (
            f"{what} {sample.modality.upper()} {sample.id}: reference masks, then the lung "
            f"(blue) and infection (orange) found by {models}"
        )
        cases.append(GalleryCase(sample, f"gallery/{name}", alt, captions))
    return cases
