"""Validation metrics of an exported model, measured the way the service's benchmark measures.

The exported ONNX file is run through the service's own :class:`OnnxBackend` and scored with
``service.benchmark.evaluate`` (``evaluate`` + ``summarise``), so ``/v1/benchmark`` on the same
images reproduces the card's numbers. The threshold segmenter runs on the same images as the
baseline. The images are the run's validation ids (``split.json``) and every image of its
external sets (never trained on).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from service.benchmark.evaluate import ImageScore, evaluate, summarise, summarise_group
from service.datasets import Sample, read_set
from service.models.base import Backend
from service.models.onnx_backend import OnnxBackend
from service.models.threshold import ThresholdBackend
from training.config import JobConfig

log = logging.getLogger(__name__)


def validation_samples(
    config: JobConfig, split_file: Path, data_root: Path
) -> dict[str, list[Sample]]:
    """``{set: samples}`` of the validation side of ``split_file`` (external sets included).

    The ids come from ``split.json``; MedSeg-style transposed sets are left out (the service
    does not transpose, so their scores would not be comparable).
    """
    split = json.loads(split_file.read_text(encoding="utf-8"))["sets"]
    chosen: dict[str, list[Sample]] = {}
    for spec in config.sets:
        ids = set(split.get(spec.name, {}).get("val", []))
        if not ids or spec.transpose:
            continue
        labelled = read_set(data_root / spec.name, spec.name)
        chosen[spec.name] = [s for s in labelled.samples if s.id in ids]
    return chosen


def measure(backend: Backend, samples: list[Sample], desc: str) -> dict[str, Any]:
    """``summarise(evaluate(backend, samples))`` with a progress bar and the wall time."""
    started = time.perf_counter()
    with tqdm(total=len(samples), desc=desc, mininterval=5, leave=False) as bar:
        rows = evaluate(backend, samples, progress=lambda done: bar.update(done - bar.n))
    summary = summarise(rows).to_dict()
    per_finding = by_finding(rows)
    if per_finding:
        summary["by_finding"] = per_finding
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


def by_finding(rows: list[ImageScore]) -> dict[str, Any]:
    """The summary of each finding (COVID-QU-Ex: COVID-19, Non-COVID, Normal) of a set that
    has more than one; empty otherwise."""
    findings = sorted({r.finding for r in rows})
    if len(findings) < 2:
        return {}
    return {f: asdict(summarise_group([r for r in rows if r.finding == f])) for f in findings}


def validation_metrics(
    config: JobConfig, model_dir: Path, split_file: Path, data_root: Path, threads: int = 2
) -> dict[str, Any]:
    """Per validation set: the exported model's and the threshold baseline's summaries.

    Returns:
        ``{set: {"n_images", "role", "model": summarise(...), "threshold_baseline": ...}}``; each
        summary also ``by_finding`` where the set has several findings.
    """
    model = OnnxBackend(model_dir, intra_op_threads=threads)
    baseline = ThresholdBackend(modality="ct" if config.modality == "ct" else "cxr")
    roles = {s.name: s.role for s in config.sets}
    results: dict[str, Any] = {}
    for name, samples in validation_samples(config, split_file, data_root).items():
        log.info("%s: validating on %s (%d images)", config.name, name, len(samples))
        results[name] = {
            "n_images": len(samples),
            "role": "external (never trained on)" if roles[name] == "external" else "validation",
            "model": measure(model, samples, f"{config.name} on {name}"),
            "threshold_baseline": measure(baseline, samples, f"threshold on {name}"),
        }
    return results
