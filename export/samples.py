"""Samples of a model's training or validation side, as recorded in its ``split.json``."""

from __future__ import annotations

import json
from pathlib import Path

from service.datasets import Sample, read_set


def split_samples(model_dir: Path, data_root: Path, side: str, limit: int) -> list[Sample]:
    """Up to ``limit`` samples of a model's ``train`` or ``val`` side (its ``split.json``),
    spread evenly over the sets found under ``data_root``."""
    split = json.loads((model_dir / "split.json").read_text(encoding="utf-8"))["sets"]
    chosen: list[Sample] = []
    for name, parts in split.items():
        ids = set(parts.get(side, []))
        if ids and (data_root / name).is_dir():
            chosen += [s for s in read_set(data_root / name, name).samples if s.id in ids]
    step = max(1, len(chosen) // limit)
    return chosen[::step][:limit]
