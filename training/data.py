"""Training data: labelled sets read with ``service.datasets``, split, prepared and cached.

Every image goes through the service's own decoder (``sets.load_image``) and
``service.pipeline.preprocess.prepare`` (display values at model resolution), so training sees
exactly what the service will feed the model. Prepared images are cached in memory as float16
(masks as uint8), which makes an epoch cost only augmentation and the network.

Splits: COVID-QU-Ex keeps its official Train/Val split (it has no patient ids); sets in our
layout are split by ``group`` (patient) with a seeded permutation, so no patient is in both.
Where a set asks for it (``SetSpec.holdout_fraction`` / ``holdout_tail``) part of the training
side is held back as the *holdout*: never trained on, it chooses the decision head's operating
point (validation stays untouched for that).

Besides the masks every sample carries an image-level decision label (``Sample.covid``) and a
decision weight (1 where ``SetSpec.decision_findings`` match its finding, else 0).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.datasets import LabelledSet, Sample, load_image, load_mask, read_set
from service.pipeline.params import PreprocessParams
from service.pipeline.preprocess import prepare, resize
from training.config import SetSpec

log = logging.getLogger(__name__)
LOAD_THREADS = 2
SERIES_FINDING = "not COVID-19"


def read_series(root: Path, name: str) -> LabelledSet:
    """A folder of DICOM slices of one patient, without masks, as a :class:`LabelledSet`.

    The slices are ordered cranio-caudally (``ImagePositionPatient`` z descending; then
    ``InstanceNumber``, then the file name), so "the last third" is a contiguous block. Each
    sample is not COVID-19 (``covid=False``), has no lung and no infection mask; the group is
    the DICOM PatientID. The licence is the first line of ``SOURCE.txt`` mentioning one.
    """
    import pydicom  # the service's DICOM reader; imported here, only series sets need it

    rows = []
    for path in sorted(root.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        position = ds.get("ImagePositionPatient")
        z = float(position[2]) if position is not None else 0.0
        rows.append((-z, int(ds.get("InstanceNumber", 0) or 0), path, str(ds.get("PatientID", ""))))
    rows.sort(key=lambda r: (r[0], r[1], r[2].name))
    source = root / "SOURCE.txt"
    terms = ""
    if source.is_file():
        lines = source.read_text(encoding="utf-8").splitlines()
        terms = next((ln.strip() for ln in lines if "CC BY" in ln or "licen" in ln.lower()), "")
    samples = [
        Sample(
            id=path.stem,
            image=path,
            lung=None,
            infection=None,
            group=patient or root.name,
            finding=SERIES_FINDING,
            covid=False,
            modality="ct",
            license=terms,
        )
        for _, _, path, patient in rows
    ]
    log.info("read series %s: %d slices", name, len(samples))
    return LabelledSet(name=name, layout="dicom-series", samples=samples)


def read_spec(root: Path, spec: SetSpec) -> LabelledSet:
    """Read the set ``spec`` names under the data ``root`` in its layout."""
    if spec.layout == "dicom-series":
        return read_series(root / spec.name, spec.name)
    return read_set(root / spec.name, spec.name)


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


def hold_out(train: list[Sample], spec: SetSpec, seed: int) -> tuple[list[Sample], list[Sample]]:
    """``(train, holdout)``: the set's holdout taken from its training side.

    ``holdout_tail``: the last ``round(tail x n)`` samples in the set's order (a contiguous
    block of a series). ``holdout_fraction``: per finding (sorted), ``round(fraction x n)``
    samples chosen by a permutation seeded with ``seed``, so the holdout is stratified by class
    and depends only on the samples and the seed. Both keep the original order.
    """
    if spec.holdout_tail > 0:
        n = min(len(train), round(spec.holdout_tail * len(train)))
        return train[: len(train) - n], train[len(train) - n :]
    if spec.holdout_fraction <= 0:
        return train, []
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for finding in sorted({s.finding for s in train}):
        ids = sorted(s.id for s in train if s.finding == finding)
        n = round(spec.holdout_fraction * len(ids))
        held.update(ids[i] for i in rng.permutation(len(ids))[:n])
    return [s for s in train if s.id not in held], [s for s in train if s.id in held]


def split_set(
    labelled: LabelledSet, spec: SetSpec, val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """``(train, val)`` samples of one set according to its role (see :class:`SetSpec`);
    the training side still includes the holdout (:func:`hold_out`)."""
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
    """The samples of one set on each side of the split (holdout: held back from training)."""

    spec: SetSpec
    train: list[Sample]
    val: list[Sample]
    holdout: list[Sample] = field(default_factory=list)


def make_splits(
    root: Path, specs: Sequence[SetSpec], val_fraction: float, seed: int
) -> list[SetSplit]:
    """Read every set under ``root`` and split it."""
    splits = []
    for spec in specs:
        labelled = read_spec(root, spec)
        train, val = split_set(labelled, spec, val_fraction, seed)
        train, holdout = hold_out(train, spec, seed)
        log.info(
            "%s: %d train, %d val, %d holdout (%s)",
            spec.name,
            len(train),
            len(val),
            len(holdout),
            spec.role,
        )
        splits.append(SetSplit(spec, train, val, holdout))
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
                "holdout": [x.id for x in s.holdout],
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
        labels: float32 ``(N,)`` decision label: 1 = COVID-19 (``Sample.covid``), else 0.
        label_weights: float32 ``(N,)``: 1 where the label trains/validates the decision head.
    """

    ids: list[str]
    sets: list[str]
    images: np.ndarray
    masks: np.ndarray
    weights: np.ndarray
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    label_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.ids):
            self.labels = np.zeros(len(self.ids), np.float32)
            self.label_weights = np.zeros(len(self.ids), np.float32)

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
    items: Sequence[tuple[Sample, SetSpec]],
    params: PreprocessParams,
    desc: str = "load",
    infection_on_negatives: bool = True,
) -> Cached:
    """Load and prepare ``(sample, spec)`` pairs into a :class:`Cached` (2 threads).

    ``infection_on_negatives=False``: images that train the decision head as negatives
    (non-COVID) leave the infection channel out of the pixel loss (weight 0): the map is
    learned on COVID-19 images only and the head alone learns what is not COVID-19.
    """
    height, width = params.size
    images = np.zeros((len(items), height, width), np.float16)
    masks = np.zeros((len(items), 2, height, width), np.uint8)
    weights = np.zeros((len(items), 2), np.float32)

    def one(index: int) -> None:
        sample, spec = items[index]
        no_infection = spec.no_infection(sample.finding)
        image, mask, weight = load_sample(sample, params, spec.transpose, no_infection)
        if not infection_on_negatives and not sample.covid and spec.trains_decision(sample.finding):
            weight[1] = 0.0
        images[index], masks[index], weights[index] = image, mask, weight

    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        list(tqdm(pool.map(one, range(len(items))), total=len(items), desc=desc, mininterval=5))
    return Cached(
        ids=[s.id for s, _ in items],
        sets=[spec.name for _, spec in items],
        images=images,
        masks=masks,
        weights=weights,
        labels=np.array([s.covid for s, _ in items], np.float32),
        label_weights=np.array([spec.trains_decision(s.finding) for s, spec in items], np.float32),
    )


def cache_splits(
    splits: Sequence[SetSplit], params: PreprocessParams, infection_on_negatives: bool = True
) -> tuple[Cached, Cached, Cached]:
    """Prepared ``(train, val, holdout)`` caches; external sets' samples are not loaded here;
    ``infection_on_negatives`` applies to the training side only (see :func:`cache`)."""
    train = [(s, sp.spec) for sp in splits for s in sp.train]
    val = [(s, sp.spec) for sp in splits if sp.spec.role != "external" for s in sp.val]
    holdout = [(s, sp.spec) for sp in splits for s in sp.holdout]
    return (
        cache(train, params, "load train", infection_on_negatives),
        cache(val, params, "load val"),
        cache(holdout, params, "load holdout"),
    )


def calibration_batch(data: Cached, count: int, seed: int) -> np.ndarray:
    """``count`` seeded rows of ``data`` (unaugmented), e.g. for the warm start's BatchNorm
    statistics; spread over the whole set, in row order."""
    count = min(count, len(data))
    return np.sort(np.random.default_rng(seed).choice(len(data), count, replace=False))
