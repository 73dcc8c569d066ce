"""The model registry: every model under the models directory, loaded once.

Layout: ``<models_dir>/<name>/<version>/{model.onnx,model.json}``. For each name the highest
version is loaded. A model that fails to load is recorded with the reason instead of stopping the
service; requests for it fall back to the threshold segmenter (see ``Segmenter``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import ModelLoadError
from service.models.card import CARD_FILE
from service.models.onnx_backend import OnnxBackend

log = logging.getLogger(__name__)


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
    """Loaded ONNX backends by name (``unet-cxr`` ...) and the models that failed, with why."""

    models: dict[str, OnnxBackend] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

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
                registry.unavailable[name] = str(err)
                log.error("model %s unavailable: %s", name, err)
                continue
            registry.models[backend.info.name] = backend
        return registry

    def find(self, kind: str, modality: str) -> OnnxBackend | None:
        """The loaded model of this kind and modality, if any."""
        return self.models.get(f"{kind}-{modality}")
