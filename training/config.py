"""Training configuration: one :class:`JobConfig` per network x modality, built from presets.

A job's config is written to its run directory (``config.json``) and read back by the export,
so the model card states exactly what training did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from service.pipeline.params import Clahe, CtWindow, PostprocessParams, PreprocessParams
from training.augment import AugmentParams

Role = Literal["split", "train", "external"]
Layout = Literal["labelled", "dicom-series"]
ANY_FINDING = "*"
PRESETS = ("small", "full", "finetune")
MODELS = ("unet", "cnn")
MODALITIES = ("cxr", "ct")


@dataclass(frozen=True)
class SetSpec:
    """How a job uses one labelled set (a folder under the data root).

    Attributes:
        name: folder name, e.g. ``"cxr-covidqu"``.
        role: ``"split"`` = train/validation split (official split for COVID-QU-Ex, else by
            group); ``"train"`` = all samples train (a set with one unknown group cannot be
            split); ``"external"`` = validation only, never trained on.
        transpose: transpose image and masks on load (MedSeg slices are stored transposed).
        limit_train, limit_val: keep at most this many samples (random with the seed); ``None``
            keeps all.
        no_infection_findings: ``finding`` values (lower case) whose images cannot show COVID-19
            infection: where such an image has no infection mask, an empty one is used (weight 1)
            instead of leaving the channel out; e.g. Shenzhen's ``"normal"`` films. ``"*"``
            matches every finding.
        layout: ``"labelled"`` (``service.datasets.read_set``: ours or COVID-QU-Ex) or
            ``"dicom-series"`` (a folder of ``.dcm`` slices of one patient without masks, e.g.
            ``files/ct-series-chest-hu``: decoded and prepared exactly as the service does).
        decision_findings: ``finding`` values (lower case; ``"*"`` = all) whose images train
            and validate the image-level decision head, with label ``Sample.covid``; other
            images get decision weight 0 (e.g. Shenzhen tuberculosis films: not COVID-19, but
            infection may be present, so neither label is right).
        holdout_fraction: this fraction of the training side, seeded and stratified by finding,
            is held back (never trained on) as the *holdout* that chooses the decision's
            operating point.
        holdout_tail: this fraction of the training side, the last slices of a series in
            cranio-caudal order (a contiguous block: neighbouring slices look alike), is held
            back as holdout instead.
    """

    name: str
    role: Role = "split"
    transpose: bool = False
    limit_train: int | None = None
    limit_val: int | None = None
    no_infection_findings: tuple[str, ...] = ()
    layout: Layout = "labelled"
    decision_findings: tuple[str, ...] = ()
    holdout_fraction: float = 0.0
    holdout_tail: float = 0.0

    def no_infection(self, finding: str) -> bool:
        """An image of this finding cannot show COVID-19 infection (empty target, weight 1)."""
        return _matches(finding, self.no_infection_findings)

    def trains_decision(self, finding: str) -> bool:
        """An image of this finding has a decision label (weight 1)."""
        return _matches(finding, self.decision_findings)


def _matches(finding: str, findings: tuple[str, ...]) -> bool:
    return ANY_FINDING in findings or finding.lower() in findings


@dataclass(frozen=True)
class JobConfig:
    """Everything one training run needs; ``net`` holds the network's constructor arguments.

    ``init_from`` names a checkpoint whose weights start the training (a continued run), or a
    shipped ``model.onnx`` (BatchNorm fused; re-inflated by :mod:`training.warmstart`); ``None``
    starts from random weights.

    ``decision_weight`` is the lambda of the decision head's binary cross-entropy in the loss
    (``dice_bce_loss + lambda * BCE(score, label)`` over images with a decision label);
    ``decision_balance`` weights that BCE so that both classes of the training side count
    equally (the CT negatives are one patient's slices, ~10 % of the training slices).
    """

    name: str
    kind: str
    modality: str
    net: dict[str, Any]
    sets: tuple[SetSpec, ...]
    preprocess: PreprocessParams
    postprocess: PostprocessParams = field(default_factory=PostprocessParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8
    val_fraction: float = 0.2
    seed: int = 42
    threads: int = 2
    channels_last: bool = True
    version: str = "1.0.0"
    init_from: str | None = None
    infection_on_negatives: bool = True
    decision_weight: float = 0.5
    decision_balance: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobConfig:
        """Inverse of :meth:`to_dict` (as read from ``config.json``)."""
        values = dict(data)
        values["sets"] = tuple(
            SetSpec(
                **{
                    **s,
                    "no_infection_findings": tuple(s.get("no_infection_findings", ())),
                    "decision_findings": tuple(s.get("decision_findings", ())),
                }
            )
            for s in data["sets"]
        )
        values["preprocess"] = PreprocessParams.from_dict(data["preprocess"])
        values["postprocess"] = PostprocessParams.from_dict(data["postprocess"])
        values["augment"] = AugmentParams(**data["augment"])
        return cls(**values)


def _sets(modality: str, small: bool) -> tuple[SetSpec, ...]:
    """The sets of a modality; the small preset keeps a few samples of each."""

    def lim(n: int) -> int | None:
        return n if small else None

    if modality == "cxr":
        return (
            SetSpec("cxr-covidqu", "split", limit_train=lim(320), limit_val=lim(60)),
            SetSpec(
                "cxr-shenzhen",
                "split",
                limit_train=lim(32),
                limit_val=lim(8),
                no_infection_findings=("normal",),
            ),
            SetSpec("cxr-covid19-gb", "external", limit_val=lim(12)),
        )
    return (
        SetSpec("ct-covid19-majun", "split", limit_train=lim(160), limit_val=lim(40)),
        SetSpec("ct-covid19-medseg", "train", transpose=True, limit_train=lim(16)),
    )


def _finetune_sets(modality: str) -> tuple[SetSpec, ...]:
    """The sets of the ``finetune`` preset (2.0.0: decision head, holdout; docs/models.md).

    CXR: every COVID-QU-Ex Train class (COVID-19 label 1; Non-COVID and Normal: empty infection
    target, label 0), 10 % of it held back as holdout (stratified by class); Shenzhen normal
    films label 0, tuberculosis films no decision label (infection possible, not COVID-19) and
    no infection target. CT: majun (10 % of its training slices held back) and MedSeg, all
    COVID-19; the only CT slices without COVID-19 are the 64 HU slices of one lung-tumour
    patient (``files/ct-series-chest-hu``): decision label 0, empty infection target, lung not
    supervised (no masks); its last third (caudal block) held back.
    """
    if modality == "cxr":
        return (
            SetSpec("cxr-covidqu", "split", decision_findings=(ANY_FINDING,), holdout_fraction=0.1),
            SetSpec(
                "cxr-shenzhen",
                "split",
                no_infection_findings=("normal",),
                decision_findings=("normal",),
            ),
            SetSpec("cxr-covid19-gb", "external", decision_findings=(ANY_FINDING,)),
        )
    return (
        SetSpec(
            "ct-covid19-majun", "split", decision_findings=(ANY_FINDING,), holdout_fraction=0.1
        ),
        SetSpec("ct-covid19-medseg", "train", transpose=True, decision_findings=(ANY_FINDING,)),
        SetSpec(
            CT_NEGATIVE_SERIES,
            "train",
            layout="dicom-series",
            no_infection_findings=(ANY_FINDING,),
            decision_findings=(ANY_FINDING,),
            holdout_tail=1 / 3,
        ),
    )


CT_NEGATIVE_SERIES = "files/ct-series-chest-hu"

# Augmentation of the finetune preset: the failure cases of clinical images (docs/models.md).
FINETUNE_AUGMENT = {
    "cxr": AugmentParams(
        collimation_prob=0.25,
        marker_prob=0.3,
        jpeg_prob=0.3,
        tone_prob=0.5,
        unsharp_prob=0.3,
    ),
    "ct": AugmentParams(marker_prob=0.2, jpeg_prob=0.3, tone_prob=0.3, tone_strength=0.08),
}

# Finetune preset (2.0.0): warm start from the shipped ONNX model (--init), the decision head.
# Sized for the budget of about 60 / 25 / 15 / 10 minutes (unet-cxr / cnn-cxr / unet-ct / cnn-ct)
# at the speed measured on this 2-core machine on 2026-12-01 (fwd+bwd, batch 8, 256 px: U-Net
# 6.5 img/s, CNN 11-16 img/s; about half the earlier figures): unet-cxr ~10 min per epoch
# (3,398 training images + validation of 936 and holdout of 370), cnn-cxr ~5 min, unet-ct
# ~90 s (458 slices), cnn-ct ~40 s.
FINETUNE: dict[tuple[str, str], dict[str, Any]] = {
    ("unet", "cxr"): {"net": {"base_channels": 12, "depth": 4}, "epochs": 5, "patience": 3},
    ("unet", "ct"): {"net": {"base_channels": 12, "depth": 4}, "epochs": 9, "patience": 5},
    ("cnn", "cxr"): {"net": {"base_channels": 8, "depth": 4}, "epochs": 5, "patience": 3},
    ("cnn", "ct"): {"net": {"base_channels": 8, "depth": 4}, "epochs": 13, "patience": 6},
}

# Full preset, sized for about 3 hours of 2-core CPU for all four (see docs/models.md).
FULL: dict[tuple[str, str], dict[str, Any]] = {
    ("unet", "cxr"): {"net": {"base_channels": 12, "depth": 4}, "epochs": 12, "patience": 4},
    ("unet", "ct"): {"net": {"base_channels": 12, "depth": 4}, "epochs": 40, "patience": 10},
    ("cnn", "cxr"): {"net": {"base_channels": 8, "depth": 4}, "epochs": 8, "patience": 3},
    ("cnn", "ct"): {"net": {"base_channels": 8, "depth": 4}, "epochs": 30, "patience": 8},
}
# Small preset: every network in a few CPU minutes (128 px, a subset of each set).
SMALL: dict[str, Any] = {
    "net": {"base_channels": 8, "depth": 3},
    "epochs": 8,
    "patience": 8,
    "batch_size": 8,
    "lr": 3e-3,
}


def ct_preprocess(size: int) -> PreprocessParams:
    """CT: the HU -> display mapping that makes DICOM slices look like the training slices.

    The ct-covid19-majun slices were made from HU volumes by a per-slice min-max over the full
    HU range and OpenCV CLAHE with clip limit 7 on an 8x8 grid (dstaroff/COVID19-CT-Segmentation,
    ``preprocessing.enhance``). A window of -1000..1500 HU (clips the -3024 padding outside the
    scanner's field of view and metal) followed by min-max and the same CLAHE reproduces that
    look: air ~0.1, lung ~0.16-0.24, fat ~0.45, soft tissue ~0.65, bone ~0.9 (docs/models.md).
    """
    return PreprocessParams(
        size=(size, size),
        ct_window=CtWindow(level=250.0, width=2500.0),
        ct_minmax=True,
        ct_clahe=Clahe(clip_limit=7.0, tile_grid=8),
    )


def postprocess_for(modality: str) -> PostprocessParams:
    """Post-processing the service applies (chosen without the validation split, docs/models.md).

    CXR: drop infection components under 1 % of the lung area; on 600 COVID-QU-Ex *training*
    images the largest fraction that left the infection Dice unchanged. CT: in HU input, drop
    lung components of which under 20 % of the pixels are air (< -500 HU): a lung, even one
    with consolidation, holds air; paraspinal muscle and bowel, which the CT models mistake for
    consolidated lung on slices without lungs, do not.
    """
    if modality == "ct":
        return PostprocessParams(min_lung_air_fraction=0.2, lung_air_hu=-500.0)
    return PostprocessParams(min_infection_fraction=0.01)


def job(kind: str, modality: str, preset: str) -> JobConfig:
    """The config of ``kind`` x ``modality`` for preset ``"small"``, ``"full"`` or
    ``"finetune"`` (2.0.0: decision head, holdout, clinical-image augmentation, lr 3e-4; meant
    to start from the shipped model with ``--init models/<name>/<version>/model.onnx``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {PRESETS}")
    if preset == "finetune":
        full = job(kind, modality, "full")
        changes = FINETUNE[(kind, modality)]
        return replace(
            full,
            sets=_finetune_sets(modality),
            augment=FINETUNE_AUGMENT[modality],
            net={**changes["net"], "score_head": True, "score_dropout": 0.2},
            epochs=changes["epochs"],
            patience=changes["patience"],
            lr=3e-4,
            version="2.0.0",
        )
    small = preset == "small"
    size = 128 if small else 256
    pre = ct_preprocess(size) if modality == "ct" else PreprocessParams(size=(size, size))
    base = JobConfig(
        name=f"{kind}-{modality}",
        kind=kind,
        modality=modality,
        net={},
        sets=_sets(modality, small),
        preprocess=pre,
        postprocess=postprocess_for(modality),
        version="0.1.0" if small else "1.0.0",
    )
    return replace(base, **(SMALL if small else FULL[(kind, modality)]))


def jobs(model: str, modality: str, preset: str) -> list[JobConfig]:
    """Configs for ``--model unet|cnn|all`` x ``--modality cxr|ct|all``."""
    kinds = MODELS if model == "all" else (model,)
    mods = MODALITIES if modality == "all" else (modality,)
    return [job(k, m, preset) for k in kinds for m in mods]
