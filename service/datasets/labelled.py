"""A labelled set: samples (image + lung/infection mask paths) with their class and patient."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service.imaging.types import Modality


@dataclass(frozen=True)
class Sample:
    """One labelled image of a set; paths are absolute, masks ``None`` where the set has none."""

    id: str
    image: Path
    lung: Path | None
    infection: Path | None
    group: str
    finding: str
    covid: bool
    modality: Modality
    split: str | None = None
    license: str = ""


@dataclass(frozen=True)
class LabelledSet:
    """A named list of samples; ``layout`` is ``"lungseg"`` or ``"covid-qu-ex"``."""

    name: str
    layout: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def has_lung(self) -> bool:
        return any(s.lung is not None for s in self.samples)

    @property
    def has_infection(self) -> bool:
        return any(s.infection is not None for s in self.samples)
