"""Command line benchmark: score the threshold segmenter or an exported model on labelled sets.

Usage::

    python -m service.benchmark --set ../shared/data/cxr-covidqu --split Val --model threshold
    python -m service.benchmark --set DIR [--set DIR ...] --model models/unet-cxr/1.0.0 \\
        [--modality cxr|ct] [--split Val] [--limit N] [--json out.json]

Each set is read with :func:`service.datasets.read_set` (our layout or COVID-QU-Ex),
scored with :func:`service.benchmark.evaluate.evaluate` and summarised with
:func:`~service.benchmark.evaluate.summarise`; a compact table goes to stdout, the full results
(summaries and, unless ``--no-rows``, per-image rows) to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from service.benchmark.evaluate import evaluate, finite_or_none, summarise
from service.benchmark.table import HEADER, result_lines, text_table
from service.datasets import Sample, read_set
from service.errors import LungsegError
from service.imaging.types import Modality
from service.models.base import THRESHOLD, Backend
from service.models.onnx_backend import OnnxBackend, choose_providers
from service.models.threshold import ThresholdBackend

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service.benchmark", description="Score a segmenter on labelled sets."
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        required=True,
        type=Path,
        help="labelled set folder (our layout or COVID-QU-Ex); repeatable",
    )
    parser.add_argument(
        "--model",
        default=THRESHOLD,
        help="'threshold' or a models/<name>/<version> folder (default threshold)",
    )
    parser.add_argument(
        "--modality",
        choices=("cxr", "ct"),
        help="score only samples of this modality (default: every modality)",
    )
    parser.add_argument(
        "--split",
        help="COVID-QU-Ex split to keep (Train, Val, Test); samples "
        "of sets without splits are all kept",
    )
    parser.add_argument("--limit", type=int, help="score at most N samples per set")
    parser.add_argument("--json", type=Path, help="write summaries and per-image rows here")
    parser.add_argument(
        "--no-rows",
        dest="rows",
        action="store_false",
        help="leave the per-image rows out of --json (summaries only)",
    )
    parser.add_argument(
        "--provider",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="ONNX Runtime execution provider for a model folder",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def select(samples: list[Sample], args: argparse.Namespace) -> list[Sample]:
    """Samples of the requested split (where a sample has one) and modality, at most ``limit``."""
    kept = [
        s
        for s in samples
        if (args.split is None or s.split is None or s.split == args.split)
        and (args.modality is None or s.modality == args.modality)
    ]
    return kept if args.limit is None else kept[: max(args.limit, 0)]


class Backends:
    """The backend for each modality: one threshold segmenter per modality, or one model."""

    def __init__(self, model: str, provider: str) -> None:
        self.model = model
        self.provider = provider
        self._cache: dict[Modality, Backend[Any]] = {}
        self._onnx: OnnxBackend | None = None

    def for_modality(self, modality: Modality) -> Backend[Any] | None:
        """The backend for ``modality``; ``None`` when the model is of another modality."""
        if self.model == THRESHOLD:
            if modality not in self._cache:
                self._cache[modality] = ThresholdBackend(modality)
            return self._cache[modality]
        if self._onnx is None:
            self._onnx = OnnxBackend(Path(self.model), providers=choose_providers(self.provider))
        return self._onnx if self._onnx.info.modality == modality else None


def json_safe(value: Any) -> Any:
    """Recursively replace NaN/inf floats by ``None`` so that the output is strict JSON."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def score_set(root: Path, args: argparse.Namespace, backends: Backends) -> list[dict[str, Any]]:
    """Score one set; one result per modality found in it (usually one)."""
    labelled = read_set(root)
    samples = select(labelled.samples, args)
    results = []
    for modality in sorted({s.modality for s in samples}):
        backend = backends.for_modality(modality)
        group = [s for s in samples if s.modality == modality]
        if backend is None:
            log.warning(
                "%s: %d %s samples skipped: the model is not for %s",
                labelled.name,
                len(group),
                modality,
                modality,
            )
            continue
        start = time.perf_counter()
        rows = evaluate(backend, group, progress=lambda done: log.debug("%d scored", done))
        seconds = time.perf_counter() - start
        log.info(
            "%s: %s scored %d images in %.1f s",
            labelled.name,
            backend.info.name,
            len(rows),
            seconds,
        )
        results.append(
            {
                "set": labelled.name,
                "path": str(root),
                "layout": labelled.layout,
                "split": args.split if any(s.split for s in group) else None,
                "modality": modality,
                "model": {**asdict(backend.info), "provider": backend.provider},
                "n_images": len(rows),
                "seconds": round(seconds, 2),
                "summary": summarise(rows).to_dict(),
                "rows": [r.to_dict() for r in rows] if args.rows else None,
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit status (0 ok, 1 error)."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    backends = Backends(args.model, args.provider)
    results: list[dict[str, Any]] = []
    try:
        for root in args.sets:
            results.extend(score_set(root, args, backends))
    except LungsegError as err:
        log.error("%s", err)
        return 1
    sys.stdout.write(text_table(HEADER, [line for r in results for line in result_lines(r)]))
    if args.json is not None:
        payload = {
            "model": args.model,
            "split": args.split,
            "modality": args.modality,
            "limit": args.limit,
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_safe(payload), indent=1) + "\n", encoding="utf-8")
        log.info("wrote %s", args.json)
    return 0
