"""The model card: ``models/<name>/<version>/model.json`` beside ``model.onnx``.

The card is the contract between training and serving (as in nnU-Net's plans and Triton's
config): input name/shape/dtype, preprocessing and postprocessing parameters, output labels,
and the provenance (training data, split, metrics, licenses, git commit, sha256 of the ONNX file).
The service feeds a model only from its card.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from service.errors import ModelLoadError
from service.imaging.types import Modality
from service.models.base import LABELS, Kind, ModelInfo
from service.pipeline.params import PostprocessParams, PreprocessParams

CARD_FILE = "model.json"
ONNX_FILE = "model.onnx"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TensorSpec:
    """An ONNX input or output: name, shape (``-1`` or a string for dynamic axes), dtype."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"


@dataclass(frozen=True)
class ModelCard:
    """A parsed ``model.json``; ``provenance`` holds the descriptive rest verbatim."""

    name: str
    version: str
    kind: Kind
    modality: Modality
    input: TensorSpec
    output: TensorSpec
    labels: tuple[str, ...]
    preprocess: PreprocessParams
    postprocess: PostprocessParams
    sha256: str
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.version, self.kind, self.modality)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "modality": self.modality,
            "input": vars(self.input),
            "output": vars(self.output),
            "labels": list(self.labels),
            "preprocess": self.preprocess.to_dict(),
            "postprocess": self.postprocess.to_dict(),
            "sha256": self.sha256,
            **self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Validate and parse a card; raises ModelLoadError naming the problem."""
        try:
            card = cls(
                name=str(data["name"]),
                version=str(data["version"]),
                kind=data["kind"],
                modality=data["modality"],
                input=TensorSpec(**data["input"]),
                output=TensorSpec(**data["output"]),
                labels=tuple(data["labels"]),
                preprocess=PreprocessParams.from_dict(data["preprocess"]),
                postprocess=PostprocessParams.from_dict(data["postprocess"]),
                sha256=str(data["sha256"]),
                provenance={k: v for k, v in data.items() if k not in _CORE_KEYS},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelLoadError(f"model card is invalid: {err!r}") from err
        if card.kind not in get_args(Kind) or card.modality not in ("cxr", "ct"):
            raise ModelLoadError(f"model card has kind={card.kind!r} modality={card.modality!r}")
        if card.labels != LABELS:
            raise ModelLoadError(f"model card labels must be {list(LABELS)}, got {card.labels}")
        return card

    def write(self, directory: Path) -> Path:
        """Write ``model.json`` into ``directory`` (pretty-printed, stable key order)."""
        path = directory / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


_CORE_KEYS = {
    "schema_version",
    "name",
    "version",
    "kind",
    "modality",
    "input",
    "output",
    "labels",
    "preprocess",
    "postprocess",
    "sha256",
}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(directory: Path) -> ModelCard:
    """Read and validate ``directory/model.json``."""
    path = directory / CARD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return ModelCard.from_dict(data)
