"""``python -m training``: train the networks of a preset, one job after the other.

Example::

    python -m training --preset small --data ../shared/data --out runs/small
    python -m training --preset full --model unet --modality cxr --out runs/full --resume
    python -m training --preset finetune --model unet --modality cxr --out runs/v2 \
        --init models/unet-cxr/2.0.0/model.onnx     # warm start from a shipped model
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from training.config import PRESETS, JobConfig, jobs
from training.loop import set_seed_in, train_job

log = logging.getLogger("training")
DATA_ENV = "LUNGSEG_DATA_DIR"


def default_data_dir() -> Path:
    """``$LUNGSEG_DATA_DIR``, else ``../shared/data`` (relative to the working directory)."""
    return Path(os.environ.get(DATA_ENV, "../shared/data"))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="small",
        help="small: minutes on a CPU; full: the shipped 1.x models; finetune: 2.0.0 (decision "
        "head, holdout, clinical-image augmentation), to start with --init <model.onnx>",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=default_data_dir(),
        help=f"root of the labelled sets (default ${DATA_ENV} or ../shared/data)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/small"),
        help="run directory; each job writes <out>/<name>/",
    )
    parser.add_argument("--model", choices=("unet", "cnn", "all"), default="all")
    parser.add_argument("--modality", choices=("cxr", "ct", "all"), default="all")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/<name>/last.pt")
    parser.add_argument("--seed", type=int, default=None, help="override the preset's seed (42)")
    parser.add_argument(
        "--lr", type=float, default=None, help="override the preset's learning rate"
    )
    parser.add_argument("--version", default=None, help="override the model version (semver)")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from these weights (one job only): a checkpoint, e.g. "
        "runs/full/unet-cxr/best.pt, or a shipped ONNX model, e.g. "
        "models/unet-cxr/2.0.0/model.onnx (BatchNorm re-inflated, training/warmstart.py)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="override torch's threads (preset: 2)"
    )
    parser.add_argument(
        "--no-infection-negatives",
        dest="infection_on_negatives",
        action="store_false",
        help="non-COVID images train the decision head only, not the infection map",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def overrides(config: JobConfig, args: argparse.Namespace) -> JobConfig:
    """The config with ``--lr``, ``--version`` and ``--init`` applied where given."""
    changes: dict[str, object] = {}
    if args.lr is not None:
        changes["lr"] = args.lr
    if args.version is not None:
        changes["version"] = args.version
    if args.init is not None:
        changes["init_from"] = str(args.init)
    if not args.infection_on_negatives:
        changes["infection_on_negatives"] = False
    if getattr(args, "threads", None) is not None:
        changes["threads"] = args.threads
    return replace(config, **changes)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Run every selected job; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.data.is_dir():
        log.error("data directory %s not found (set --data or $%s)", args.data, DATA_ENV)
        return 2
    selected = jobs(args.model, args.modality, args.preset)
    if args.init is not None and len(selected) != 1:
        log.error("--init needs exactly one job (--model and --modality)")
        return 2
    for config in selected:
        config = overrides(set_seed_in(config, args.seed), args)
        log.info(
            "training %s (%s preset) into %s", config.name, args.preset, args.out / config.name
        )
        summary = train_job(config, args.data, args.out / config.name, args.resume, args.epochs)
        log.info(
            "%s done: best epoch %d score %.4f, %.0f s",
            config.name,
            summary["best_epoch"],
            summary["best_val_score"],
            summary["wall_time_s"],
        )
    return 0
