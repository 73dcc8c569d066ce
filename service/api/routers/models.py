"""``GET /v1/models``: every model with its card and execution provider, and what is missing."""

from __future__ import annotations

import onnxruntime as ort
from fastapi import APIRouter, Depends

from service.api.auth import BENCHMARK, SEGMENT
from service.api.deps import SegmenterDep, require
from service.api.errors import problems
from service.api.schemas import ModelEntry, ModelsResponse

# The cards are what a client of either scope needs to choose a model and cite it.
router = APIRouter(
    prefix="/v1",
    tags=["models"],
    dependencies=[Depends(require(SEGMENT, BENCHMARK))],
    responses=problems(400, 401, 403),
)


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
