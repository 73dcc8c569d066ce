"""``python -m export``: every finished run under ``--runs`` -> ONNX + model card under ``--out``.

Example::

    python -m export --runs runs/small --data ../shared/data --out build/models
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from export.run import export_run, is_run
from training.cli import DATA_ENV, default_data_dir

log = logging.getLogger("export")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runs",
        type=Path,
        required=True,
        help="a run directory of `python -m training` (holding <name>/ subfolders)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=default_data_dir(),
        help=f"root of the labelled sets (default ${DATA_ENV} or ../shared/data)",
    )
    parser.add_argument("--out", type=Path, default=Path("build/models"), help="models directory")
    parser.add_argument("--only", nargs="*", default=None, help="names to export (default all)")
    parser.add_argument("--no-metrics", action="store_true", help="skip the validation metrics")
    parser.add_argument(
        "--repo", type=Path, default=Path("."), help="git checkout (for the commit)"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Export every selected run; returns the exit code (1 when there is none)."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runs = (
        sorted(p for p in args.runs.iterdir() if p.is_dir() and is_run(p))
        if args.runs.is_dir()
        else []
    )
    if args.only:
        runs = [p for p in runs if p.name in args.only]
    if not runs:
        log.error("no finished runs (config.json, best.pt, training.json) under %s", args.runs)
        return 1
    for run_dir in runs:
        export_run(run_dir, args.data, args.out, args.repo, with_metrics=not args.no_metrics)
    return 0
