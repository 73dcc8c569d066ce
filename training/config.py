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
            instead of leaving the channel out; e.g. Shenzhen's ``"normal"`` films.
    """

    name: str
    role: Role = "split"
    transpose: bool = False
    limit_train: int | None = None
    limit_val: int | None = None
    no_infection_findings: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobConfig:
    """Everything one training run needs; ``net`` holds the network's constructor arguments.

    ``init_from`` names a checkpoint whose weights start the training (a continued run);
    ``None`` starts from random weights.
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobConfig:
        """Inverse of :meth:`to_dict` (as read from ``config.json``)."""
        values = dict(data)
        values["sets"] = tuple(
            SetSpec(**{**s, "no_infection_findings": tuple(s.get("no_infection_findings", ()))})
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
    """The config of ``kind`` x ``modality`` for preset ``"small"`` or ``"full"``."""
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
