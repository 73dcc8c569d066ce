"""Seeds, checkpoints (last + best) and the per-epoch metrics log of a run directory."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST = "last.pt"
BEST = "best.pt"
METRICS_LOG = "metrics.jsonl"
CONFIG_FILE = "config.json"
SPLIT_FILE = "split.json"
SUMMARY_FILE = "training.json"


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; returns the numpy generator the loop draws from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs to continue as if uninterrupted."""
    return {
        "numpy": rng.bit_generator.state,
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any], rng: np.random.Generator) -> None:
    """Inverse of :func:`rng_state` (``rng`` is updated in place)."""
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically (temp file, then rename): a kill never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save` (our own files: full unpickling is allowed)."""
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return payload


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one epoch's record as a JSON line to ``metrics.jsonl``."""
    with (run_dir / METRICS_LOG).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of ``metrics.jsonl`` (empty when there is none)."""
    path = run_dir / METRICS_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def truncate_metrics(run_dir: Path, last_epoch: int) -> None:
    """Drop log records after ``last_epoch`` (a resumed run repeats the later epochs)."""
    kept = [r for r in read_metrics(run_dir) if r["epoch"] <= last_epoch]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    (run_dir / METRICS_LOG).write_text(text, encoding="utf-8")
