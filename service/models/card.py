"""The model card: ``models/<name>/<version>/model.json`` beside ``model.onnx``.

The card is the contract between training and serving (as in nnU-Net's plans and Triton's
config): input name/shape/dtype, preprocessing and postprocessing parameters, output labels,
the decision head and its operating point, and the provenance (training data, split, metrics,
licenses, git commit, sha256 of the ONNX file). The service feeds a model only from its card,
and parses it strictly: a missing key is an error that names it, and so is an unknown
``schema_version``.

Schema versions:

* 1: one output, ``output`` (the probabilities ``(N, 2, H, W)``).
* 2: also ``score_output`` (the decision head's ``(N, 1)`` probability that infection is
  present) and ``decision`` (its operating point ``threshold`` and the lung checks:
  ``service.pipeline.params.DecisionParams``; what they were chosen on).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from service.errors import ModelLoadError
from service.imaging.types import Modality
from service.models.base import LABELS, THRESHOLD, ModelInfo
from service.pipeline.params import DecisionParams, PostprocessParams, PreprocessParams

CARD_FILE = "model.json"
ONNX_FILE = "model.onnx"
SCHEMA_VERSIONS = (1, 2)
MODALITIES: tuple[Modality, ...] = ("cxr", "ct")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_REQUIRED = {
    1: ("name", "version", "kind", "modality", "input", "output", "labels", "preprocess",
        "postprocess", "sha256"),
    2: ("name", "version", "kind", "modality", "input", "output", "score_output", "labels",
        "preprocess", "postprocess", "decision", "sha256"),
}  # fmt: skip


@dataclass(frozen=True)
class TensorSpec:
    """An ONNX input or output: name, shape (``-1`` or a string for dynamic axes), dtype."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, data: Any, key: str) -> TensorSpec:
        if not isinstance(data, dict) or "name" not in data or "shape" not in data:
            raise ModelLoadError(f"model card: {key} must be an object with name and shape")
        return cls(str(data["name"]), list(data["shape"]), str(data.get("dtype", "float32")))


@dataclass(frozen=True)
class ModelCard:
    """A parsed ``model.json``; ``provenance`` holds the descriptive rest verbatim."""

    name: str
    version: str
    kind: str
    modality: Modality
    input: TensorSpec
    output: TensorSpec
    labels: tuple[str, ...]
    preprocess: PreprocessParams
    postprocess: PostprocessParams
    sha256: str
    score_output: TensorSpec | None = None
    decision: DecisionParams | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def schema_version(self) -> int:
        """2 with a decision head (``score_output`` and ``decision``), else 1."""
        return 2 if self.score_output is not None else 1

    @property
    def decision_params(self) -> DecisionParams:
        """The card's decision section, or the a-priori rules for a card without one."""
        return self.decision or DecisionParams.a_priori(self.modality)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.version, self.kind, self.modality)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "modality": self.modality,
            "input": vars(self.input),
            "output": vars(self.output),
        }
        if self.score_output is not None:
            out["score_output"] = vars(self.score_output)
        out |= {
            "labels": list(self.labels),
            "preprocess": self.preprocess.to_dict(),
            "postprocess": self.postprocess.to_dict(),
        }
        if self.decision is not None:
            out["decision"] = self.decision.to_dict()
        return {**out, "sha256": self.sha256, **self.provenance}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Validate and parse a card; raises ModelLoadError naming the problem."""
        version = data.get("schema_version")
        if version not in SCHEMA_VERSIONS:
            raise ModelLoadError(
                f"model card schema_version {version!r} is not one this service reads "
                f"({', '.join(map(str, SCHEMA_VERSIONS))})"
            )
        missing = [key for key in _REQUIRED[version] if key not in data]
        if missing:
            raise ModelLoadError(f"model card (schema {version}) lacks {', '.join(missing)}")
        kind, modality = str(data["kind"]), data["modality"]
        if not _KIND.fullmatch(kind) or kind == THRESHOLD:
            raise ModelLoadError(f"model card kind {kind!r} is not a model kind")
        if modality not in MODALITIES:
            raise ModelLoadError(f"model card modality {modality!r} is not one of {MODALITIES}")
        labels = tuple(data["labels"])
        if labels != LABELS:
            raise ModelLoadError(f"model card labels must be {list(LABELS)}, got {list(labels)}")
        core = set(_REQUIRED[version]) | {"schema_version"}
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            kind=kind,
            modality=modality,
            input=TensorSpec.from_dict(data["input"], "input"),
            output=TensorSpec.from_dict(data["output"], "output"),
            labels=labels,
            preprocess=_params(PreprocessParams, data["preprocess"], "preprocess"),
            postprocess=_params(PostprocessParams, data["postprocess"], "postprocess"),
            sha256=str(data["sha256"]),
            score_output=(
                TensorSpec.from_dict(data["score_output"], "score_output") if version >= 2 else None
            ),
            decision=DecisionParams.from_dict(data["decision"]) if version >= 2 else None,
            provenance={k: v for k, v in data.items() if k not in core},
        )

    def write(self, directory: Path) -> Path:
        """Write ``model.json`` into ``directory`` (pretty-printed, stable key order)."""
        path = directory / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def _params(cls: Any, data: Any, key: str) -> Any:
    """``cls.from_dict(data)`` with every field required (no service default stands in for a
    training choice)."""
    if not isinstance(data, dict):
        raise ModelLoadError(f"model card: {key} must be an object")
    missing = [f.name for f in fields(cls) if f.name not in data]
    if missing:
        raise ModelLoadError(f"model card: {key} lacks {', '.join(missing)}")
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"model card: {key} is invalid: {err}") from err


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
