"""Score a backend on a labelled set: per-image rows and summaries split COVID-19 / non-COVID.

The same code produces the model cards' validation metrics (export), the README's baseline table
and the ``/v1/benchmark`` results, so their numbers agree. Each sample is decoded once and runs
through the one request path (``service.pipeline.run``), with its probabilities kept at the
image's size for the loss.

Conventions:

* Lung metrics are averaged over images that have a lung reference.
* Infection Dice/IoU are averaged over images whose infection reference is non-empty; images with
  an empty reference instead count towards ``infection_false_positive_rate``: the fraction of them
  where the prediction has any infection pixel.
* The loss is :func:`service.pipeline.metrics.dice_bce_loss` of the probabilities against the
  reference, per structure; ``None`` for a backend without probabilities (the threshold
  segmenter decides pixels, it has no probabilities to score).
* The masks scored are the service's: after the image-level decisions (no lung found: empty;
  infection not detected: no infection), so an image whose infection was missed scores an
  infection Dice of 0. ``detection`` is the share of a group's images where infection was
  detected (sensitivity for COVID-19 images, the false-detection rate for the others);
  ``infection_percent_error`` the absolute difference of the infection percentage of the lung
  from the reference's, in points, over images with both masks and a lung found.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.datasets import Sample, load_image, load_mask
from service.imaging.types import DecodedImage
from service.models.base import Backend
from service.pipeline import metrics
from service.pipeline.result import FrameResult
from service.pipeline.run import run

METRICS = ("dice", "iou", "accuracy", "sensitivity", "specificity", "loss")
Runner = Callable[[Backend[Any], DecodedImage], list[FrameResult]]
"""Runs a backend on a decoded image with its probabilities kept (``pipeline.run`` by default;
the service passes its ``Segmenter.run``, which holds the worker's limits)."""


@dataclass(frozen=True)
class StructureScore:
    """Metrics of one structure (lung or infection) on one image."""

    dice: float
    iou: float
    accuracy: float
    sensitivity: float
    specificity: float
    loss: float | None
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
    infection_percent: float | None
    lung_found: bool = True
    infection_detected: bool = False
    infection_score: float = 0.0
    infection_percent_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> ImageScore:
        """The row back from :meth:`to_dict` (JSON keeps every float as it was)."""
        values = dict(row)
        for name in ("lung", "infection"):
            if values.get(name) is not None:
                values[name] = StructureScore(**values[name])
        return cls(**values)


@dataclass(frozen=True)
class Stat:
    """Mean and standard deviation of ``n`` values (``None`` when there are none)."""

    mean: float | None
    std: float | None
    n: int


@dataclass(frozen=True)
class StructureSummary:
    dice: Stat
    iou: Stat
    accuracy: Stat
    sensitivity: Stat
    specificity: Stat
    loss: Stat


@dataclass(frozen=True)
class FalsePositiveRate:
    """Share of the ``n`` images with an empty infection reference where some was predicted."""

    rate: float | None
    n: int


@dataclass(frozen=True)
class Rate:
    """Share of the ``n`` images of a group where something holds (None when ``n`` is 0)."""

    rate: float | None
    n: int


@dataclass(frozen=True)
class GroupSummary:
    n_images: int
    lung: StructureSummary
    infection: StructureSummary
    infection_false_positive_rate: FalsePositiveRate
    detection: Rate
    lung_found: Rate
    infection_percent_error: Stat


@dataclass(frozen=True)
class Summary:
    """Summaries of all images, the COVID-19 ones and the others."""

    all: GroupSummary
    covid: GroupSummary
    non_covid: GroupSummary

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_structure(prob: np.ndarray | None, pred: np.ndarray, ref: np.ndarray) -> StructureScore:
    """Score a bool mask (and its float ``(H, W)`` probabilities, if any) against a reference."""
    loss = None if prob is None else float(metrics.dice_bce_loss(prob[None, None], ref[None, None]))
    return StructureScore(
        dice=metrics.dice(pred, ref),
        iou=metrics.iou(pred, ref),
        accuracy=metrics.pixel_accuracy(pred, ref),
        sensitivity=metrics.sensitivity(pred, ref),
        specificity=metrics.specificity(pred, ref),
        loss=loss,
        ref_empty=not ref.any(),
        pred_empty=not pred.any(),
    )


def score_sample(sample: Sample, image: DecodedImage, frame: FrameResult) -> ImageScore:
    """Score the first frame's result of ``sample`` at the image's own size."""
    size = (image.height, image.width)
    probs = frame.probabilities
    lung_ref = load_mask(sample.lung, size)
    inf_ref = load_mask(sample.infection, size)
    masks = frame.masks
    decision = frame.decision
    error = None
    percent = frame.stats.infection_percent
    if lung_ref is not None and inf_ref is not None and lung_ref.any() and percent is not None:
        reference = 100.0 * np.count_nonzero(inf_ref & lung_ref) / np.count_nonzero(lung_ref)
        error = abs(percent - reference)
    return ImageScore(
        id=sample.id,
        group=sample.group,
        finding=sample.finding,
        covid=sample.covid,
        lung=None
        if lung_ref is None
        else score_structure(None if probs is None else probs[0], masks.lung, lung_ref),
        infection=None
        if inf_ref is None
        else score_structure(None if probs is None else probs[1], masks.infection, inf_ref),
        infection_percent=percent,
        lung_found=decision.lung_found if decision else True,
        infection_detected=decision.infection_detected if decision else bool(masks.infection.any()),
        infection_score=decision.infection_score if decision else 0.0,
        infection_percent_error=error,
    )


def _run_kept(backend: Backend[Any], image: DecodedImage) -> list[FrameResult]:
    return run(backend, image, frames=[0], keep_probabilities=True)


def evaluate(
    backend: Backend[Any],
    samples: Iterable[Sample],
    progress: Callable[[int], None] | None = None,
    runner: Runner | None = None,
) -> list[ImageScore]:
    """Run ``backend`` on every sample (first frame) and score it; ``progress(done)`` per image."""
    go = runner or _run_kept
    rows: list[ImageScore] = []
    for sample in samples:
        image = load_image(sample)
        rows.append(score_sample(sample, image, go(backend, image)[0]))
        if progress is not None:
            progress(len(rows))
    return rows


def _stats(values: list[float | None]) -> Stat:
    known = [v for v in values if v is not None]
    if not known:
        return Stat(None, None, 0)
    arr = np.asarray(known, dtype=np.float64)
    return Stat(float(arr.mean()), float(arr.std()), len(known))


def _structure_summary(scores: list[StructureScore]) -> StructureSummary:
    return StructureSummary(**{m: _stats([getattr(s, m) for s in scores]) for m in METRICS})


def summarise_group(rows: list[ImageScore]) -> GroupSummary:
    """Summary of some rows: lung metrics, infection metrics (non-empty refs), FP rate."""
    lung = [r.lung for r in rows if r.lung is not None]
    infection = [r.infection for r in rows if r.infection is not None]
    positive = [s for s in infection if not s.ref_empty]
    negative = [s for s in infection if s.ref_empty]
    false_pos = sum(1 for s in negative if not s.pred_empty)
    return GroupSummary(
        n_images=len(rows),
        lung=_structure_summary(lung),
        infection=_structure_summary(positive),
        infection_false_positive_rate=FalsePositiveRate(
            rate=false_pos / len(negative) if negative else None, n=len(negative)
        ),
        detection=_rate([r.infection_detected for r in rows]),
        lung_found=_rate([r.lung_found for r in rows]),
        infection_percent_error=_stats([r.infection_percent_error for r in rows]),
    )


def _rate(flags: list[bool]) -> Rate:
    return Rate(sum(flags) / len(flags) if flags else None, len(flags))


def summarise(rows: list[ImageScore]) -> Summary:
    """Summaries of benchmark rows: all, COVID-19, non-COVID."""
    return Summary(
        all=summarise_group(rows),
        covid=summarise_group([r for r in rows if r.covid]),
        non_covid=summarise_group([r for r in rows if not r.covid]),
    )


def finite_or_none(value: float | None) -> float | None:
    """JSON-safe float: NaN/inf become ``None``."""
    return value if value is not None and math.isfinite(value) else None
