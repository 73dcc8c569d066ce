"""Training data: labelled sets read with ``service.datasets``, split, prepared and cached.

Every image goes through the service's own decoder (``sets.load_image``) and
``service.pipeline.preprocess.prepare`` (display values at model resolution), so training sees
exactly what the service will feed the model. Prepared images are cached in memory as float16
(masks as uint8), which makes an epoch cost only augmentation and the network.

Splits: COVID-QU-Ex keeps its official Train/Val split (it has no patient ids); sets in our
layout are split by ``group`` (patient) with a seeded permutation, so no patient is in both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.datasets import LabelledSet, Sample, load_image, load_mask, read_set
from service.pipeline.params import PreprocessParams
from service.pipeline.preprocess import prepare, resize
from training.config import SetSpec

log = logging.getLogger(__name__)
LOAD_THREADS = 2


def split_by_group(
    samples: Sequence[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Split samples into ``(train, val)`` by group: every group lies wholly in one of them.

    ``round(val_fraction x groups)`` groups (at least one when there are two or more) go to
    validation, chosen by a permutation seeded with ``seed`` over the sorted group names, so the
    split depends only on the groups and the seed. A single group stays in training.
    """
    groups = sorted({s.group for s in samples})
    n_val = max(1, round(val_fraction * len(groups))) if len(groups) > 1 else 0
    order = np.random.default_rng(seed).permutation(len(groups))
    val_groups = {groups[i] for i in order[:n_val]}
    train = [s for s in samples if s.group not in val_groups]
    val = [s for s in samples if s.group in val_groups]
    return train, val


def _limit(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """At most ``limit`` samples, a seeded random subset in the original order."""
    if limit is None or len(samples) <= limit:
        return samples
    keep = np.sort(np.random.default_rng(seed).choice(len(samples), limit, replace=False))
    return [samples[i] for i in keep]


def split_set(
    labelled: LabelledSet, spec: SetSpec, val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """``(train, val)`` samples of one set according to its role (see :class:`SetSpec`)."""
    samples = labelled.samples
    if spec.role == "external":
        train, val = [], list(samples)
    elif spec.role == "train":
        train, val = list(samples), []
    elif labelled.layout == "covid-qu-ex" and any(s.split for s in samples):
        train = [s for s in samples if s.split == "Train"]
        val = [s for s in samples if s.split == "Val"]
    else:
        train, val = split_by_group(samples, val_fraction, seed)
    return _limit(train, spec.limit_train, seed), _limit(val, spec.limit_val, seed + 1)


@dataclass
class SetSplit:
    """The samples of one set on each side of the split."""

    spec: SetSpec
    train: list[Sample]
    val: list[Sample]


def make_splits(
    root: Path, specs: Sequence[SetSpec], val_fraction: float, seed: int
) -> list[SetSplit]:
    """Read every set under ``root`` and split it."""
    splits = []
    for spec in specs:
        labelled = read_set(root / spec.name, spec.name)
        train, val = split_set(labelled, spec, val_fraction, seed)
        log.info("%s: %d train, %d val (%s)", spec.name, len(train), len(val), spec.role)
        splits.append(SetSplit(spec, train, val))
    return splits


def write_split(splits: Sequence[SetSplit], path: Path, seed: int) -> None:
    """Record the split (sample ids per set and side, the seed) as JSON at ``path``."""
    record = {
        "seed": seed,
        "sets": {
            s.spec.name: {
                "role": s.spec.role,
                "train": [x.id for x in s.train],
                "val": [x.id for x in s.val],
                "val_groups": sorted({x.group for x in s.val}),
            }
            for s in splits
        },
    }
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


@dataclass
class Cached:
    """Prepared samples in memory.

    Attributes:
        ids, sets: sample id and set name per row.
        images: float16 ``(N, H, W)`` display values in [0, 1] at model resolution.
        masks: uint8 0/1 ``(N, 2, H, W)`` (lung, infection); 0 where the set has no such mask.
        weights: float32 ``(N, 2)``: 1 where the mask exists, 0 where it does not (masked loss).
    """

    ids: list[str]
    sets: list[str]
    images: np.ndarray
    masks: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def load_sample(
    sample: Sample, params: PreprocessParams, transpose: bool = False, no_infection: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode, (transpose,) prepare one sample; ``no_infection``: a missing infection mask
    means an empty one (the image cannot show infection), so that channel is trained too.

    Returns:
        float32 ``params.size`` display image in [0, 1], uint8 ``(2, *params.size)`` masks and
        float32 ``(2,)`` channel weights.
    """
    decoded = load_image(sample)
    frame, shape = decoded.frame(0), (decoded.height, decoded.width)
    refs = [load_mask(sample.lung, shape), load_mask(sample.infection, shape)]
    if no_infection and refs[1] is None:
        refs[1] = np.zeros(shape, dtype=bool)
    if transpose:
        frame = frame.T
        refs = [None if r is None else r.T for r in refs]
    image = prepare(frame, decoded.units, params)
    masks = np.zeros((2, *params.size), np.uint8)
    for channel, ref in enumerate(refs):
        if ref is not None:
            masks[channel] = resize(ref.astype(np.float32), params.size) >= 0.5
    weights = np.array([r is not None for r in refs], np.float32)
    return image, masks, weights


def cache(
    items: Sequence[tuple[Sample, SetSpec]], params: PreprocessParams, desc: str = "load"
) -> Cached:
    """Load and prepare ``(sample, spec)`` pairs into a :class:`Cached` (2 threads)."""
    height, width = params.size
    images = np.zeros((len(items), height, width), np.float16)
    masks = np.zeros((len(items), 2, height, width), np.uint8)
    weights = np.zeros((len(items), 2), np.float32)

    def one(index: int) -> None:
        sample, spec = items[index]
        no_infection = sample.finding.lower() in spec.no_infection_findings
        image, mask, weight = load_sample(sample, params, spec.transpose, no_infection)
        images[index], masks[index], weights[index] = image, mask, weight

    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        list(tqdm(pool.map(one, range(len(items))), total=len(items), desc=desc, mininterval=5))
    return Cached(
        ids=[s.id for s, _ in items],
        sets=[spec.name for _, spec in items],
        images=images,
        masks=masks,
        weights=weights,
    )


def cache_splits(splits: Sequence[SetSplit], params: PreprocessParams) -> tuple[Cached, Cached]:
    """Prepared ``(train, val)`` caches; external sets' samples are not loaded here."""
    train = [(s, sp.spec) for sp in splits for s in sp.train]
    val = [(s, sp.spec) for sp in splits if sp.spec.role != "external" for s in sp.val]
    return cache(train, params, "load train"), cache(val, params, "load val")
