"""``GET /v1/benchmark/history``: compact history of the stored benchmark runs (no image rows).

The dashboard reads runs and their results with ``GET /v1/benchmark`` and
``GET /v1/benchmark/{id}``; for the chart of Dice over runs it needs every run's summary numbers
without their per-image rows, which this endpoint returns. Include this router before the
benchmark router, whose ``/{run_id}`` would otherwise take ``history``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.api.deps import RunnerDep
from service.report.tables import history

router = APIRouter(prefix="/v1/benchmark", tags=["benchmark"])


class HistoryEntry(BaseModel):
    label: str = Field(description="model that ran, with the requested one when it fell back")
    requested: str
    model: str
    modality: str
    fallback: str | None
    lung_dice: float | None = Field(description="mean lung Dice over the set")
    infection_dice: float | None = Field(description="mean infection Dice (non-empty refs)")
    ms_per_image: float | None = Field(description="benchmark wall time per image (ms)")


class HistoryRun(BaseModel):
    id: str
    created: str
    set_name: str
    status: str
    n_images: int
    entries: list[HistoryEntry]


class History(BaseModel):
    runs: list[HistoryRun] = Field(description="oldest first")


@router.get("/history", response_model=History)
async def benchmark_history(
    runner: RunnerDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> History:
    """Summary numbers of the newest ``limit`` runs, oldest first, for charts over time."""
    records = await run_in_threadpool(runner.store.list, limit, True)
    return History(runs=[HistoryRun(**point) for point in history(records)])
