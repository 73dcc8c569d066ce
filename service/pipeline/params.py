"""Parameters of the pipeline stages, as a model card carries them.

Training builds these objects, the export writes them into ``model.json`` (``to_dict``), and the
service reads them back (``from_dict``): no constant of the service repeats a training choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from service.errors import ModelLoadError


@dataclass(frozen=True)
class CtWindow:
    """A CT display window in Hounsfield units (``level`` = centre, ``width`` > 0)."""

    level: float = -500.0
    width: float = 1500.0

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2


@dataclass(frozen=True)
class Clahe:
    """Contrast-limited adaptive histogram equalisation as OpenCV applies it to 8-bit images."""

    clip_limit: float = 2.0
    tile_grid: int = 8


@dataclass(frozen=True)
class PreprocessParams:
    """How an image becomes the model's input tensor.

    Attributes:
        size: model input ``(height, width)`` in pixels; images are resized to it (the original
            size is kept for the way back).
        mean, std: normalisation of the [0, 1] display image: ``(x - mean) / std``.
        ct_window: window mapping Hounsfield units to [0, 1] display values (CT DICOM only;
            8-bit CT slices arrive already windowed).
        ct_clahe: CLAHE applied after windowing HU, because the training slices had it; ``None``
            to skip.
        ct_minmax: min-max normalise each windowed slice to [0, 1], as the training slices were.
        denoise_sigma: Gaussian noise reduction at model resolution, sigma in pixels (0 = off).
    """

    size: tuple[int, int] = (256, 256)
    mean: float = 0.5
    std: float = 0.25
    ct_window: CtWindow = field(default_factory=CtWindow)
    ct_clahe: Clahe | None = field(default_factory=Clahe)
    ct_minmax: bool = True
    denoise_sigma: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessParams:
        """Build from a model card's ``preprocess`` object; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelLoadError(f"unknown preprocess keys in model card: {sorted(unknown)}")
        values = dict(data)
        if "size" in values:
            values["size"] = tuple(int(v) for v in values["size"])
        if isinstance(values.get("ct_window"), dict):
            values["ct_window"] = CtWindow(**values["ct_window"])
        if isinstance(values.get("ct_clahe"), dict):
            values["ct_clahe"] = Clahe(**values["ct_clahe"])
        return cls(**values)


@dataclass(frozen=True)
class PostprocessParams:
    """How the model's probabilities become the final masks.

    Attributes:
        threshold: probability at or above which a pixel is foreground (both outputs).
        lung_components: keep at most this many largest lung components (2: left and right).
        min_component_fraction: drop lung components smaller than this fraction of the largest.
        fill_holes: fill holes inside each lung component.
        infection_in_lung: restrict infection to the (post-processed) lung mask.
        min_infection_fraction: drop infection components smaller than this fraction of the lung
            area (specks of a few pixels on healthy lungs); 0 keeps everything.
        min_lung_air_fraction: where Hounsfield units are known (CT DICOM), drop lung components
            in which fewer than this fraction of pixels are air (below ``lung_air_hu``): a lung
            holds air, muscle or bowel do not. 0 disables the check.
        lung_air_hu: the HU below which a pixel counts as air for that check.
    """

    threshold: float = 0.5
    lung_components: int = 2
    min_component_fraction: float = 0.1
    fill_holes: bool = True
    infection_in_lung: bool = True
    min_infection_fraction: float = 0.0
    min_lung_air_fraction: float = 0.0
    lung_air_hu: float = -500.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PostprocessParams:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelLoadError(f"unknown postprocess keys in model card: {sorted(unknown)}")
        return cls(**data)


A_PRIORI_LUNG = {"cxr": (0.05, 0.85, 0.0), "ct": (0.002, 0.85, 500.0)}
"""``(min_lung_fraction, min_lung_confidence, min_lung_area_mm2)`` for models whose card has no
decision section (schema 1), for the threshold segmenter and for the export's cards: chosen
before looking at any validation image from what a chest image is (CXR lungs cover 14-45 % of
the film on COVID-QU-Ex training images, a CT slice through the lungs at least a fraction of a
percent and, where the pixel spacing is known, at least 5 cm², a disc of 2.5 cm: smaller air
is a sinus, the mastoid or bowel gas, and a lung's tip that small is not measurable on one
slice) and from the shipped models' certainty on their training images (mean lung probability
inside the mask 0.95-0.99); see docs/models.md. CXR has no area check (0: the fraction
covers films)."""


@dataclass(frozen=True)
class DecisionParams:
    """How a frame's image-level decisions are made (``service.pipeline.decide``).

    Attributes:
        threshold: operating point of the decision head (infection detected when its score is
            at least this), ``None`` for a model without a head (then any infection left after
            post-processing counts).
        min_lung_fraction: the lung must cover at least this fraction of the frame.
        min_lung_confidence: the model's mean lung probability inside its lung mask must be at
            least this (not checked for a backend without probabilities).
        min_lung_inside_body: where Hounsfield units are known, at least this fraction of the
            lung must lie inside the body.
        min_lung_area_mm2: where the pixel spacing is known, the lung must cover at least this
            many mm² (0: not checked).
        notes: the rest of the card's ``decision`` object (what it was chosen on, its
            sensitivity there), kept verbatim.
    """

    threshold: float | None
    min_lung_fraction: float
    min_lung_confidence: float
    min_lung_inside_body: float = 0.5
    min_lung_area_mm2: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def a_priori(cls, modality: str) -> DecisionParams:
        """The rules for a model without a decision section (see ``A_PRIORI_LUNG``)."""
        fraction, confidence, area = A_PRIORI_LUNG[modality]
        return cls(
            None,
            fraction,
            confidence,
            min_lung_area_mm2=area,
            notes={"source": "a priori (no decision head)"},
        )

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "notes"}
        return {**values, **self.notes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionParams:
        """From a card's ``decision`` object: every field but ``notes`` required, the other
        keys kept as notes."""
        names = [f.name for f in fields(cls) if f.name != "notes"]
        missing = [n for n in names if n not in data]
        if missing:
            raise ModelLoadError(f"model card: decision lacks {', '.join(missing)}")
        values = {n: data[n] for n in names}
        threshold = values["threshold"]
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ModelLoadError(f"model card: decision.threshold {threshold} is not in [0, 1]")
        return cls(**values, notes={k: v for k, v in data.items() if k not in names})
