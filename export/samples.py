"""Samples of a model's training or validation side, as recorded in its ``split.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from service.datasets import Sample, read_set
from service.errors import InvalidInputError

log = logging.getLogger(__name__)


def split_samples(model_dir: Path, data_root: Path, side: str, limit: int) -> list[Sample]:
    """Up to ``limit`` samples of a model's ``train`` or ``val`` side (its ``split.json``),
    spread evenly over the labelled sets found under ``data_root`` (a set without masks, such as
    the CT negatives series ``files/ct-series-chest-hu``, is left out, with a log line)."""
    split = json.loads((model_dir / "split.json").read_text(encoding="utf-8"))["sets"]
    chosen: list[Sample] = []
    for name, parts in split.items():
        ids = set(parts.get(side, []))
        if not ids or not (data_root / name).is_dir():
            continue
        try:
            labelled = read_set(data_root / name, name)
        except InvalidInputError:
            log.info("%s: no labelled images (masks), left out of the %s samples", name, side)
            continue
        chosen += [s for s in labelled.samples if s.id in ids]
    step = max(1, len(chosen) // limit)
    return chosen[::step][:limit]
