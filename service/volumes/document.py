"""What a volume job asks for (its JSON params) and what it keeps once done (its JSON result).

The params (``VolumeRequest.to_params``) are all a worker anywhere needs besides an in-process
payload: the source (``upload`` or ``pacs`` with the study and series UIDs), the model kind, the
series to pick, whether to store the SEG in the PACS, and the client who asked (jobs are shown
to their own client only, and to ``admin``).

The result (:func:`result_document`) holds the measures and never a voxel: totals, per lung, per
canonical slice (index, z, areas), the decisions, warnings, the model, timings, what the upload
held that was skipped, the preview's slice size, and the PACS ``store`` record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from service.imaging.volume import Volume
from service.pipeline.volume import LungMeasures, VolumeSegmentation

SKIPPED_REASONS = ("non_image", "localizer", "not_dicom", "duplicate", "other_series")
Source = Literal["upload", "pacs"]


@dataclass(frozen=True, repr=False)
class VolumeRequest:
    """One ``POST /v1/volumes``. UIDs are the client's own: never logged."""

    source: Source
    client: str
    model: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    store: bool = False

    def to_params(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "client": self.client,
            "model": self.model,
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
            "store": self.store,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VolumeRequest:
        return cls(
            source=params["source"],
            client=str(params.get("client") or ""),
            model=params.get("model"),
            series_uid=params.get("series_uid"),
            study_uid=params.get("study_uid"),
            store=bool(params.get("store")),
        )

    def __repr__(self) -> str:
        return f"VolumeRequest({self.source}, model={self.model}, store={self.store})"


def _round(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def _percent(value: float | None) -> float | None:
    return None if value is None else _round(value)


def _lung(measures: LungMeasures) -> dict[str, float | None]:
    return {
        "volume_ml": _round(measures.volume_ml),
        "infection_volume_ml": _round(measures.infection_volume_ml),
        "infection_percent": _percent(measures.infection_percent),
    }


def skipped_counts(volume: Volume) -> dict[str, int]:
    """How many uploaded objects the volume left out, by reason (every reason, 0 included)."""
    return {reason: int(volume.skipped.get(reason, 0)) for reason in SKIPPED_REASONS}


def result_document(
    result: VolumeSegmentation,
    *,
    skipped: Mapping[str, int],
    files: int,
    preview: tuple[int, int] | None,
    store: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The job's stored result (see the module docstring); ``preview``: (rows, columns) of
    the rendered slices; ``store``: the PACS record, None when not asked for."""
    return {
        "n_slices": result.n_slices,
        "shape": [int(n) for n in result.labels.shape],
        "input_shape": [int(n) for n in result.layout.shape],
        "input_slice_axis": result.input_slice_axis,
        "source_format": result.source_format,
        "spacing_mm": [_round(s, 4) for s in result.spacing_mm],
        "voxel_ml": float(result.voxel_ml),
        "lung_volume_ml": _round(result.lung_volume_ml),
        "infection_volume_ml": _round(result.infection_volume_ml),
        "infection_percent": _percent(result.infection_percent),
        "lungs": {
            "left": _lung(result.lungs.left),
            "right": _lung(result.lungs.right),
            "split": result.lungs.split,
        },
        "lung_found": bool(result.lung_found),
        "infection_detected": bool(result.infection_detected),
        "warnings": list(result.warnings),
        "model": {
            "name": result.model.name,
            "version": result.model.version,
            "kind": result.model.kind,
            "provider": result.provider,
            "precision": result.precision,
        },
        "fallback": result.fallback,
        "timings_ms": {k: _round(v, 1) for k, v in result.timings_ms.items()},
        "files": files,
        "skipped": dict(skipped),
        "preview": None if preview is None else {"rows": preview[0], "columns": preview[1]},
        "slices": [
            {
                "index": s.index,
                "input_index": s.input_index,
                "upload_index": s.upload_index,
                "z_mm": _round(s.z_mm),
                "lung_area_px": int(s.lung_area_px),
                "infection_area_px": int(s.infection_area_px),
                "lung_area_mm2": _round(s.lung_area_mm2, 2),
                "infection_area_mm2": _round(s.infection_area_mm2, 2),
                "score": s.score,
            }
            for s in result.slices
        ],
        "store": None if store is None else dict(store),
    }
