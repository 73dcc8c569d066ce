"""The benchmark store shared by several workers (leases, lapsed runs recorded by the next worker
that sees them, races, shutdown, old databases) and the runner's bounded queue; every test on
SQLite and on PostgreSQL (``store_url``)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text, update

from service.benchmark import jobs
from service.benchmark.jobs import BenchmarkRunner
from service.benchmark.store import LOST, Heartbeat, Run, RunStore, now
from service.datasets import LabelledSet
from service.errors import BusyError

FOREVER = 1e9  # a store that never finds a lease lapsed reads the rows as they are


def _running(store: RunStore, run_id: str) -> None:
    store.create(run_id, "set", ["unet"], 3)
    store.set_status(run_id, "running")


def _crashed(url: str, *run_ids: str) -> None:
    """Running runs of a worker that died two minutes ago (its last heartbeat): their lease has
    lapsed for a store of the default ``stale_after_s`` (60 s)."""
    dead = RunStore(url, owner="dead")
    for run_id in run_ids:
        _running(dead, run_id)
    with dead.engine.begin() as db:
        db.execute(
            update(Run).where(Run.id.in_(run_ids)).values(heartbeat=now() - dt.timedelta(minutes=2))
        )
    dead.close()


def _row(url: str, run_id: str) -> dict[str, Any]:
    """The run as its row holds it (nothing read as lapsed)."""
    store = RunStore(url, owner="reader", stale_after_s=FOREVER)
    try:
        row = store.get(run_id)
    finally:
        store.close()
    assert row is not None
    return row


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released at the same moment; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(10)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=30) for future in futures]


def test_a_starting_worker_leaves_the_live_runs_of_another_alone(store_url: str):
    first = RunStore(store_url, owner="a")
    _running(first, "r1")
    second = RunStore(store_url, owner="b")
    assert second.mark_interrupted() == 0
    assert second.get("r1")["status"] == "running"
    assert [r["status"] for r in second.list()] == ["running"]
    assert first.heartbeat() == 1 and second.heartbeat() == 0
    assert _row(store_url, "r1")["status"] == "running"


def test_reading_a_run_whose_lease_lapsed_records_its_row_as_interrupted(store_url: str):
    _crashed(store_url, "r1")
    impatient = RunStore(store_url, owner="b")
    shown = impatient.get("r1")
    assert (shown["status"], shown["error"]) == ("interrupted", LOST)
    assert shown["finished"] is not None
    assert _row(store_url, "r1") == shown  # the row itself, not only what was shown
    assert impatient.mark_interrupted() == 0  # nothing left to mark
    assert impatient.get("r1") == shown  # marked once: the finished time stays


def test_listing_records_the_lapsed_runs_and_no_other(store_url: str):
    _crashed(store_url, "lost1", "lost2")
    live = RunStore(store_url, owner="live", stale_after_s=FOREVER)
    _running(live, "alive")
    live.create("done", "set", ["unet"], 3)
    live.set_status("done", "done", results={"entries": []})
    impatient = RunStore(store_url, owner="b")
    shown = {r["id"]: (r["status"], r["error"]) for r in impatient.list()}
    assert shown == {
        "lost1": ("interrupted", LOST),
        "lost2": ("interrupted", LOST),
        "alive": ("running", None),
        "done": ("done", None),
    }
    assert [_row(store_url, i)["status"] for i in ("lost1", "lost2", "alive", "done")] == [
        "interrupted",
        "interrupted",
        "running",
        "done",
    ]


def test_mark_interrupted_records_lapsed_runs_of_any_owner(store_url: str):
    _crashed(store_url, "r1")
    impatient = RunStore(store_url, owner="b")
    assert impatient.mark_interrupted() == 1
    assert impatient.mark_interrupted() == 0
    row = _row(store_url, "r1")
    assert (row["status"], row["error"]) == ("interrupted", LOST) and row["finished"]


def test_two_workers_marking_at_once_write_each_run_once(store_url: str):
    ids = [f"r{i}" for i in range(20)]
    _crashed(store_url, *ids)
    first = RunStore(store_url, owner="a")
    second = RunStore(store_url, owner="b")
    counts = _together(first.mark_interrupted, second.mark_interrupted)
    assert sum(counts) == len(ids)
    assert {_row(store_url, i)["status"] for i in ids} == {"interrupted"}


def test_two_workers_reading_a_lapsed_run_at_once_agree_on_one_write(store_url: str):
    for round_ in range(5):
        run_id = f"r{round_}"
        _crashed(store_url, run_id)
        first = RunStore(store_url, owner="a")
        second = RunStore(store_url, owner="b")
        a, b = _together(lambda: first.get(run_id), lambda: second.get(run_id))  # noqa: B023
        # had both written, each would show its own finished time
        assert a == b == _row(store_url, run_id)
        assert a["status"] == "interrupted"
        first.close()
        second.close()


def test_the_heartbeat_thread_records_lapsed_runs_of_any_owner(store_url: str):
    _crashed(store_url, "lost")
    other = RunStore(store_url, owner="other")
    _running(other, "other-live")  # another worker's, alive: its lease has not lapsed
    mine = RunStore(store_url, owner="mine")
    _running(mine, "mine-live")
    beat = Heartbeat([mine], every_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while _row(store_url, "lost")["status"] != "interrupted":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # a few more ticks
    finally:
        beat.stop()
    assert _row(store_url, "lost")["error"] == LOST
    assert _row(store_url, "other-live")["status"] == "running"
    assert _row(store_url, "mine-live")["status"] == "running"


def test_abandon_interrupts_only_the_owners_unfinished_runs(store_url: str):
    mine, other = RunStore(store_url, owner="a"), RunStore(store_url, owner="b")
    _running(mine, "r1")
    mine.create("r2", "set", ["unet"], 3)
    mine.create("r3", "set", ["unet"], 3)
    mine.set_status("r3", "done", results={"entries": []})
    _running(other, "r4")
    assert mine.abandon() == 2
    statuses = {run["id"]: run["status"] for run in other.list()}
    assert statuses == {"r1": "interrupted", "r2": "interrupted", "r3": "done", "r4": "running"}
    assert other.get("r1")["error"] == "the service stopped before the run finished"


def test_a_database_of_the_earlier_schema_gains_the_lease_columns(store_url: str):
    engine = create_engine(store_url)
    postgres = engine.dialect.name == "postgresql"
    stamp = "TIMESTAMP WITH TIME ZONE" if postgres else "DATETIME"
    with engine.begin() as db:
        db.execute(
            text(
                "CREATE TABLE benchmark_runs (id VARCHAR(36) PRIMARY KEY, status VARCHAR(16), "
                f"set_name VARCHAR(255), models JSON, n_images INTEGER, created {stamp}, "
                f"finished {stamp}, error TEXT, results JSON)"
            )
        )
        created = "2026-11-01 10:00:00" + ("+00" if postgres else "")
        db.execute(
            text(
                "INSERT INTO benchmark_runs VALUES "
                f"('old', 'running', 'set', '[\"unet\"]', 3, '{created}', NULL, NULL, NULL)"
            )
        )
    engine.dispose()
    store = RunStore(store_url, owner="new")
    old = store.get("old")
    assert old["status"] == "interrupted"  # no lease at all: lapsed, and recorded so
    assert old["created"] == "2026-11-01T10:00:00+00:00"
    assert _row(store_url, "old")["status"] == "interrupted"
    _running(store, "fresh")
    assert store.get("fresh")["status"] == "running"


class _NoModels:
    """The runner needs a segmenter only to run jobs; these tests submit none."""


def test_the_runner_renews_the_lease_until_it_shuts_down(store_url: str):
    store = RunStore(store_url, owner="a", stale_after_s=0.3)
    _running(store, "r1")
    segmenter: Any = _NoModels()
    runner = BenchmarkRunner(store, segmenter, heartbeat_s=0.05)
    time.sleep(0.6)  # twice the lease: only the heartbeat keeps it
    assert store.get("r1")["status"] == "running"
    runner.shutdown()
    assert store.get("r1")["status"] == "interrupted"


def test_the_runner_records_runs_of_a_crashed_worker(store_url: str):
    _crashed(store_url, "lost")
    store = RunStore(store_url, owner="a")
    segmenter: Any = _NoModels()
    runner = BenchmarkRunner(store, segmenter, heartbeat_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while _row(store_url, "lost")["status"] != "interrupted":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        runner.shutdown()


def test_a_full_runner_refuses_and_removes_the_extracted_upload(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    release = threading.Event()

    def slow_scores(*_args: object) -> jobs.BenchmarkResults:
        release.wait(10)
        return jobs.BenchmarkResults("set", "lungseg", [])

    monkeypatch.setattr(jobs, "score_models", slow_scores)
    segmenter: Any = _NoModels()
    runner = BenchmarkRunner(RunStore(store_url), segmenter, max_pending=1, retry_after_s=7)
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


def test_workers_starting_at_once_on_an_empty_database_all_open_it(store_url: str):
    stores = _together(*[lambda: RunStore(store_url) for _ in range(4)])
    stores[0].create("r1", "set", ["unet"], 3)
    assert [s.get("r1")["status"] for s in stores] == ["queued"] * 4
