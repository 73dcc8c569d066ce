"""Score a backend on a labelled set: per-image rows and summaries split COVID-19 / non-COVID.

The same code produces the model cards' validation metrics (export), the README's baseline table
and the ``/v1/benchmark`` results, so their numbers agree.

Conventions:

* Lung metrics are averaged over images that have a lung reference.
* Infection Dice/IoU are averaged over images whose infection reference is non-empty; images with
  an empty reference instead count towards ``infection_false_positive_rate``: the fraction of them
  where the prediction has any infection pixel.
* The loss is :func:`service.pipeline.metrics.dice_bce_loss` of the raw probabilities (resized to
  the reference's size) against the reference, per structure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.datasets import Sample, load_image, load_mask
from service.models.base import Backend
from service.pipeline import metrics
from service.pipeline.measure import infection_stats
from service.pipeline.postprocess import to_masks, upsample

METRICS = ("dice", "iou", "accuracy", "sensitivity", "specificity", "loss")


@dataclass(frozen=True)
class StructureScore:
    """Metrics of one structure (lung or infection) on one image."""

    dice: float
    iou: float
    accuracy: float
    sensitivity: float
    specificity: float
    loss: float
    ref_empty: bool
    pred_empty: bool


@dataclass(frozen=True)
class ImageScore:
    """One row of a benchmark: the image, its class and the scores of both structures."""

    id: str
    group: str
    finding: str
    covid: bool
    lung: StructureScore | None
    infection: StructureScore | None
    infection_percent: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_structure(prob: np.ndarray, pred: np.ndarray, ref: np.ndarray) -> StructureScore:
    """Score a float ``(H, W)`` probability map and its bool mask against a bool reference."""
    loss = metrics.dice_bce_loss(prob[None, None], ref[None, None])
    return StructureScore(
        dice=metrics.dice(pred, ref),
        iou=metrics.iou(pred, ref),
        accuracy=metrics.pixel_accuracy(pred, ref),
        sensitivity=metrics.sensitivity(pred, ref),
        specificity=metrics.specificity(pred, ref),
        loss=float(loss),
        ref_empty=not ref.any(),
        pred_empty=not pred.any(),
    )


def score_sample(backend: Backend, sample: Sample, probs: np.ndarray) -> ImageScore:
    """Score a backend's ``(2, h, w)`` probabilities for ``sample`` at the image's own size."""
    image = load_image(sample)
    size = (image.height, image.width)
    hu = image.frame(0) if image.units == "hu" else None
    masks = to_masks(probs, size, backend.postprocess, hu)
    full = upsample(probs, size)
    lung_ref = load_mask(sample.lung, size)
    inf_ref = load_mask(sample.infection, size)
    return ImageScore(
        id=sample.id,
        group=sample.group,
        finding=sample.finding,
        covid=sample.covid,
        lung=None if lung_ref is None else score_structure(full[0], masks.lung, lung_ref),
        infection=None if inf_ref is None else score_structure(full[1], masks.infection, inf_ref),
        infection_percent=infection_stats(masks.lung, masks.infection).infection_percent,
    )


def _batches(items: list[Sample], size: int) -> Iterator[list[Sample]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def evaluate(
    backend: Backend,
    samples: Iterable[Sample],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[ImageScore]:
    """Run ``backend`` on every sample (first frame) and score it; ``progress(done)`` per batch."""
    rows: list[ImageScore] = []
    for batch in _batches(list(samples), batch_size):
        images = [load_image(s) for s in batch]
        inputs = [backend.prepare(img.frame(0), img.units) for img in images]
        for sample, probs in zip(batch, backend.infer(inputs), strict=True):
            rows.append(score_sample(backend, sample, probs))
        if progress is not None:
            progress(len(rows))
    return rows


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": len(values)}


def _structure_summary(scores: list[StructureScore]) -> dict[str, Any]:
    return {m: _stats([getattr(s, m) for s in scores]) for m in METRICS}


def summarise_group(rows: list[ImageScore]) -> dict[str, Any]:
    """Summary of some rows: lung metrics, infection metrics (non-empty refs), FP rate."""
    lung = [r.lung for r in rows if r.lung is not None]
    infection = [r.infection for r in rows if r.infection is not None]
    positive = [s for s in infection if not s.ref_empty]
    negative = [s for s in infection if s.ref_empty]
    false_pos = sum(1 for s in negative if not s.pred_empty)
    return {
        "n_images": len(rows),
        "lung": _structure_summary(lung),
        "infection": _structure_summary(positive),
        "infection_false_positive_rate": {
            "rate": false_pos / len(negative) if negative else None,
            "n": len(negative),
        },
    }


def summarise(rows: list[ImageScore]) -> dict[str, Any]:
    """``{"all": ..., "covid": ..., "non_covid": ...}`` summaries of benchmark rows."""
    return {
        "all": summarise_group(rows),
        "covid": summarise_group([r for r in rows if r.covid]),
        "non_covid": summarise_group([r for r in rows if not r.covid]),
    }


def finite_or_none(value: float | None) -> float | None:
    """JSON-safe float: NaN/inf become ``None``."""
    return value if value is not None and math.isfinite(value) else None
