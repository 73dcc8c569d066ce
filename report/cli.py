"""``python -m report``: a static HTML report of one benchmark run.

    python -m report --run RUN --set DIR --out DIR [--database-url URL] [--models DIR]

``RUN`` is a JSON file (the body of ``GET /v1/benchmark/{id}``, or its ``results`` alone), or a
run id, or ``latest`` (the newest finished run) in the results database. ``--set`` is the
labelled set the run scored (for the gallery's images and reference masks).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from report import plots
from report.gallery import build_gallery
from report.html import Figures, page
from service.benchmark.store import RunStore
from service.benchmark.table import history, seed_rows
from service.datasets import read_set
from service.errors import LungsegError
from service.models.segmenter import Segmenter, SegmenterConfig

log = logging.getLogger("lungseg.report")
REPO_ROOT = Path(__file__).resolve().parents[2]


class ReportError(Exception):
    """The run or the set cannot be used for a report."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m report", description=__doc__)
    parser.add_argument("--run", required=True, help="run JSON file, run id, or 'latest'")
    parser.add_argument("--set", required=True, type=Path, help="the run's labelled set folder")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "LUNGSEG_DATABASE_URL", f"sqlite:///{REPO_ROOT / 'var' / 'lungseg.db'}"
        ),
        help="results database (SQLAlchemy URL; default: $LUNGSEG_DATABASE_URL or the service's)",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=Path(os.environ.get("LUNGSEG_MODELS_DIR", REPO_ROOT / "models")),
        help="models folder for the gallery's segmentations (default: the service's)",
    )
    parser.add_argument("--per-class", type=int, default=3, help="gallery cases per class")
    return parser


def load_run(spec: str, database_url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run record and the stored runs (for the history; empty for a JSON file)."""
    path = Path(spec)
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        record = data if "results" in data else {"results": data, "set_name": data.get("set")}
        return record, []
    store = RunStore(database_url)
    try:
        runs = store.list(500, with_results=True)
    finally:
        store.engine.dispose()
    done = [r for r in runs if r["status"] == "done"]
    record = (
        done[0] if spec == "latest" and done else next((r for r in runs if r["id"] == spec), None)
    )
    if record is None:
        raise ReportError(f"no run {spec!r} in {database_url} (and no such file)")
    return record, runs


def build(args: argparse.Namespace) -> Path:
    """Write ``index.html`` and its PNGs into ``args.out``; returns the HTML file."""
    record, runs = load_run(args.run, args.database_url)
    results = record.get("results")
    if record.get("status", "done") != "done" or not results or not results.get("entries"):
        raise ReportError(f"run {record.get('id')} has no results (status {record.get('status')})")
    labelled = read_set(args.set)
    samples = {s.id: s for s in labelled.samples}
    scored = {row["id"] for e in results["entries"] for row in e["rows"]}
    if not scored & set(samples):
        raise ReportError(f"none of the run's images is in {args.set}: is it the run's set?")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = seed_rows(results)
    set_name = record.get("set_name") or results.get("set", "")
    history_png = plots.history(history(runs), set_name, out / "history.png")
    segmenter = Segmenter(SegmenterConfig(args.models if args.models.is_dir() else None))
    figures = Figures(
        metrics=plots.metrics_bars(rows, out / "metrics.png").name,
        dice=plots.dice_distributions(results, rows, out / "dice.png").name,
        latency=plots.latency(rows, out / "latency.png").name,
        history=history_png.name if history_png else None,
        gallery=build_gallery(results, samples, segmenter, out, args.per_class),
    )
    target = out / "index.html"
    target.write_text(page(record, rows, figures), encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        target = build(args)
    except (ReportError, LungsegError, OSError, ValueError) as err:
        log.error("no report: %s", err)
        return 1
    log.info("report written to %s", target)
    return 0
