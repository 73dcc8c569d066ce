"""The model registry: every model under the models directory, loaded once.

Layout: ``<models_dir>/<name>/<version>/{model.onnx,model.json}``. For each name the highest
version is loaded. Models are found by the kind and modality their card declares (not by their
folder name). A model that fails to load is recorded with the reason instead of stopping the
service; requests for it fall back to the threshold segmenter (see ``Segmenter``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import ModelLoadError
from service.imaging.types import Modality
from service.models.card import CARD_FILE
from service.models.onnx_backend import OnnxBackend

log = logging.getLogger(__name__)
Key = tuple[str, str]
"""``(kind, modality)`` as a card declares them."""


def version_key(version: str) -> tuple[int | str, ...]:
    """Sort key for versions like ``1.2.10`` (numeric parts compare as numbers)."""
    return tuple(int(p) if p.isdigit() else p for p in version.replace("-", ".").split("."))


def latest_versions(models_dir: Path) -> dict[str, Path]:
    """``{name: <models_dir>/<name>/<highest version>}`` for every model folder found."""
    found: dict[str, Path] = {}
    if not models_dir.is_dir():
        return found
    for name_dir in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        versions = [p for p in name_dir.iterdir() if p.is_dir()]
        if versions:
            found[name_dir.name] = max(versions, key=lambda p: version_key(p.name))
    return found


def declared_key(directory: Path) -> Key | None:
    """``(kind, modality)`` a card says, read loosely (for a model whose card failed to parse:
    requests for it are then told why it is unavailable)."""
    try:
        data = json.loads((directory / CARD_FILE).read_text(encoding="utf-8"))
        return str(data["kind"]), str(data["modality"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load(
    directory: Path, providers: list[str], threads: int, precision: str, **cuda: Any
) -> OnnxBackend:
    try:
        return OnnxBackend(directory, providers, threads, precision=precision, **cuda)
    except ModelLoadError as err:
        if precision in ("auto", "fp32"):
            raise
        log.warning("%s: %s; loading fp32", directory.parent.name, err)
        return OnnxBackend(directory, providers, threads, precision="fp32", **cuda)


@dataclass
class ModelRegistry:
    """Loaded ONNX backends by name (``unet-cxr`` ...), the models that failed with why, and
    the index by the cards' ``(kind, modality)``."""

    models: dict[str, OnnxBackend] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    index: dict[Key, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        models_dir: Path,
        providers: list[str],
        intra_op_threads: int = 0,
        precision: str = "auto",
        cuda_options: dict[str, str] | None = None,
        max_batch: int = 1,
    ) -> ModelRegistry:
        """Load every model of ``models_dir``; failures are recorded, never raised.

        ``precision`` picks the ONNX variant (see ``OnnxBackend``); a model without the asked
        variant is loaded in fp32 instead. ``cuda_options`` and ``max_batch`` go to each
        ``OnnxBackend`` (they matter on CUDA only).
        """
        registry = cls()
        if not models_dir.is_dir():
            log.warning(
                "models directory %s does not exist: only the threshold segmenter", models_dir
            )
        for name, directory in latest_versions(models_dir).items():
            key = declared_key(directory)
            if key is not None:
                registry.index.setdefault(key, name)
            if not (directory / CARD_FILE).is_file():
                registry.unavailable[name] = f"{directory.name}/{CARD_FILE} is missing"
                continue
            try:
                backend = _load(
                    directory,
                    providers,
                    intra_op_threads,
                    precision,
                    cuda_options=cuda_options,
                    max_batch=max_batch,
                )
            except ModelLoadError as err:
                registry.mark_unavailable(name, str(err))
                continue
            registry.models[name] = backend
            registry.index[(backend.info.kind, backend.info.modality)] = name
        return registry

    def mark_unavailable(self, name: str, reason: str) -> None:
        """Take model ``name`` out of service (requests for it fall back), saying why."""
        self.models.pop(name, None)
        self.unavailable[name] = reason
        log.error("model %s unavailable: %s", name, reason)

    def find(self, kind: str, modality: Modality) -> OnnxBackend | None:
        """The loaded model of this kind and modality, if any."""
        name = self.index.get((kind, modality))
        return self.models.get(name) if name is not None else None

    def name_for(self, kind: str, modality: Modality) -> str | None:
        """The name of the model installed for this kind and modality (loaded or not)."""
        return self.index.get((kind, modality))

    def kinds(self) -> list[str]:
        """Every model kind installed (loaded or unavailable), sorted."""
        return sorted({kind for kind, _ in self.index})
