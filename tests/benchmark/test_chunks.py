"""Benchmarks of a server-side set in chunks (``service.benchmark.jobs``): the bounds, the merge
(equal to the one-process result, here in process on SQLite; tests/jobs/test_queue.py runs it
on two replicas sharing PostgreSQL), and a chunk that fails failing its run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.benchmark.jobs import (
    BenchmarkRunner,
    chunk_bounds,
    merge_chunks,
    score_chunk,
    score_models,
)
from service.benchmark.store import RunStore
from service.datasets import read_set
from service.errors import InvalidInputError
from service.models.segmenter import Segmenter, SegmenterConfig

QU_LAYOUT = Path("files") / "covid-qu-ex-layout"


def test_chunk_bounds() -> None:
    assert chunk_bounds(12, 5) == [(0, 5), (5, 10), (10, 12)]
    assert chunk_bounds(10, 5) == [(0, 5), (5, 10)]
    assert chunk_bounds(3, 50) == [(0, 3)]
    assert chunk_bounds(0, 50) == [(0, 0)]
    with pytest.raises(ValueError):
        chunk_bounds(3, 0)


def _without_timing(results: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(results))
    for entry in out["entries"]:
        entry.pop("timing")
    return out


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(SegmenterConfig(None))  # the threshold segmenter


def test_a_chunked_run_in_process_equals_the_one_process_result(
    tmp_path: Path, data_dir: Path, segmenter: Segmenter
) -> None:
    path = data_dir / QU_LAYOUT
    labelled = read_set(path, name="qu")
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    runner = BenchmarkRunner(store, segmenter, sets={"qu": path}, chunk_images=4)
    try:
        record, future = runner.submit(labelled, ["threshold"], server_side=True)
        future.result(timeout=120)
        run = store.get(record["id"])
        chunks = store.chunks(record["id"])
    finally:
        runner.shutdown()
    assert run is not None and run["status"] == "done"
    assert [(c["start"], c["stop"], c["status"], c["attempts"]) for c in chunks] == [
        (0, 4, "done", 1),
        (4, 8, "done", 1),
        (8, 12, "done", 1),
    ]
    assert {c["worker"] for c in chunks} == {store.owner}
    alone = score_models(segmenter, labelled, ["threshold"]).to_dict()
    assert _without_timing(run["results"]) == _without_timing(alone)
    assert sum(e["timing"]["n_images"] for e in run["results"]["entries"]) == 12


def test_chunks_scored_by_different_models_are_not_merged(
    data_dir: Path, segmenter: Segmenter
) -> None:
    labelled = read_set(data_dir / QU_LAYOUT, name="qu")
    first = score_chunk(segmenter, labelled, ["threshold"], 0, 2)
    second = score_chunk(segmenter, labelled, ["threshold"], 2, 4)
    assert merge_chunks([first, second]).entries[0].timing.n_images == 4
    second["entries"][0]["model"]["version"] = "other"
    with pytest.raises(InvalidInputError, match="same models"):
        merge_chunks([first, second])


def test_a_chunk_whose_set_is_unknown_to_its_worker_fails_the_run(
    tmp_path: Path, data_dir: Path, segmenter: Segmenter
) -> None:
    labelled = read_set(data_dir / QU_LAYOUT, name="qu")
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    runner = BenchmarkRunner(store, segmenter, sets={}, chunk_images=6)  # no set "qu" here
    try:
        record, future = runner.submit(labelled, ["threshold"], server_side=True)
        future.result(timeout=60)
        run = store.get(record["id"])
    finally:
        runner.shutdown()
    assert run is not None and run["status"] == "failed"
    assert "LUNGSEG_BENCHMARK_SETS" in run["error"]
