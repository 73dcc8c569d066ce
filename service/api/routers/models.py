"""``GET /v1/models``: every model with its card and execution provider, and what is missing."""

from __future__ import annotations

import onnxruntime as ort
from fastapi import APIRouter

from service.api.deps import SegmenterDep
from service.api.schemas import ModelEntry, ModelsResponse

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=ModelsResponse)
def list_models(segmenter: SegmenterDep) -> ModelsResponse:
    """Loaded models (card + provider), unavailable models with the reason, fallbacks."""
    entries = [
        ModelEntry(
            name=b.info.name,
            version=b.info.version,
            kind=b.info.kind,
            modality=b.info.modality,
            provider=b.provider,
            precision=b.precision,
            card=b.card.to_dict(),
        )
        for b in segmenter.registry.models.values()
    ]
    return ModelsResponse(
        models=entries,
        unavailable=dict(segmenter.registry.unavailable),
        fallback=[t.info.name for t in segmenter.thresholds.values()],
        providers_available=ort.get_available_providers(),
    )
