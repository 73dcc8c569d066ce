"""The benchmark store shared by several workers (leases, lapsed runs, shutdown, old databases)
and the runner's bounded queue."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from service.benchmark import jobs
from service.benchmark.jobs import BenchmarkRunner
from service.benchmark.store import LOST, RunStore
from service.datasets import LabelledSet
from service.errors import BusyError


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def _running(store: RunStore, run_id: str) -> None:
    store.create(run_id, "set", ["unet"], 3)
    store.set_status(run_id, "running")


def test_a_starting_worker_leaves_the_live_runs_of_another_alone(url: str):
    first = RunStore(url, owner="a")
    _running(first, "r1")
    second = RunStore(url, owner="b")
    assert second.mark_interrupted() == 0
    assert second.get("r1")["status"] == "running"
    assert first.heartbeat() == 1 and second.heartbeat() == 0


def test_a_run_whose_lease_lapsed_reads_and_is_recorded_as_interrupted(url: str):
    _running(RunStore(url, owner="a"), "r1")
    impatient = RunStore(url, owner="b", stale_after_s=0.0)
    time.sleep(0.01)
    shown = impatient.get("r1")
    assert (shown["status"], shown["error"]) == ("interrupted", LOST)
    assert impatient.mark_interrupted() == 1
    assert RunStore(url, owner="c").get("r1")["status"] == "interrupted"


def test_abandon_interrupts_only_the_owners_unfinished_runs(url: str):
    mine, other = RunStore(url, owner="a"), RunStore(url, owner="b")
    _running(mine, "r1")
    mine.create("r2", "set", ["unet"], 3)
    mine.create("r3", "set", ["unet"], 3)
    mine.set_status("r3", "done", results={"entries": []})
    _running(other, "r4")
    assert mine.abandon() == 2
    statuses = {run["id"]: run["status"] for run in other.list()}
    assert statuses == {"r1": "interrupted", "r2": "interrupted", "r3": "done", "r4": "running"}
    assert other.get("r1")["error"] == "the service stopped before the run finished"


def test_a_database_of_the_earlier_schema_gains_the_lease_columns(tmp_path: Path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE benchmark_runs (id VARCHAR(36) PRIMARY KEY, status VARCHAR(16), "
            "set_name VARCHAR(255), models JSON, n_images INTEGER, created DATETIME, "
            "finished DATETIME, error TEXT, results JSON)"
        )
        db.execute(
            "INSERT INTO benchmark_runs VALUES "
            "('old', 'running', 'set', '[\"unet\"]', 3, '2026-11-01 10:00:00', NULL, NULL, NULL)"
        )
    store = RunStore(f"sqlite:///{path}", owner="new")
    assert store.get("old")["status"] == "interrupted"  # no lease at all: lapsed
    assert store.get("old")["created"] == "2026-11-01T10:00:00+00:00"
    assert store.mark_interrupted() == 1
    _running(store, "fresh")
    assert store.get("fresh")["status"] == "running"


class _NoModels:
    """The runner needs a segmenter only to run jobs; these tests submit none."""


def test_the_runner_renews_the_lease_until_it_shuts_down(url: str):
    store = RunStore(url, owner="a", stale_after_s=0.3)
    _running(store, "r1")
    segmenter: Any = _NoModels()
    runner = BenchmarkRunner(store, segmenter, heartbeat_s=0.05)
    time.sleep(0.6)  # twice the lease: only the heartbeat keeps it
    assert store.get("r1")["status"] == "running"
    runner.shutdown()
    assert store.get("r1")["status"] == "interrupted"


def test_a_full_runner_refuses_and_removes_the_extracted_upload(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    release = threading.Event()

    def slow_scores(*_args: object) -> jobs.BenchmarkResults:
        release.wait(10)
        return jobs.BenchmarkResults("set", "lungseg", [])

    monkeypatch.setattr(jobs, "score_models", slow_scores)
    segmenter: Any = _NoModels()
    runner = BenchmarkRunner(RunStore(url), segmenter, max_pending=1, retry_after_s=7)
    labelled = LabelledSet("set", "lungseg", [])
    _, first = runner.submit(labelled, ["unet"])
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    with pytest.raises(BusyError) as busy:
        runner.submit(labelled, ["unet"], extracted)
    assert busy.value.retry_after_s == 7
    assert not extracted.exists()
    release.set()
    first.result(timeout=10)
    record, second = runner.submit(labelled, ["unet"])  # room again once the first ended
    second.result(timeout=10)
    assert runner.store.get(record["id"])["status"] == "done"
    runner.shutdown()
