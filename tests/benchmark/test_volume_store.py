"""Volume jobs in the shared store: progress, opaque params and results, artifacts readable by
every store on the database, expiry and purge, and the same lease rules as benchmark runs; every
test on SQLite and on PostgreSQL (``store_url``)."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from service.benchmark.jobstore import Heartbeat
from service.benchmark.store import RunStore
from service.benchmark.volume_store import (
    DEFAULT_TTL_S,
    Artifact,
    VolumeArtifact,
    VolumeJob,
    VolumeStore,
)
from service.benchmark.volume_store import now as store_now

PARAMS = {"model": "unet", "series_uid": "1.2.3", "format": "nifti"}
LOST = "its worker stopped before the job finished"


def _age(store: VolumeStore, job_id: str, **values: dt.datetime) -> None:
    """Move a job's times into the past (a crash, an expiry) without waiting."""
    with store.engine.begin() as db:
        db.execute(update(VolumeJob).where(VolumeJob.id == job_id).values(**values))


def _ago(seconds: float) -> dt.datetime:
    return store_now() - dt.timedelta(seconds=seconds)


def _count(store: VolumeStore, model: type[VolumeJob] | type[VolumeArtifact]) -> int:
    with store.engine.connect() as db:
        return int(db.execute(select(func.count()).select_from(model)).scalar_one())


def test_a_job_from_queued_to_done_with_progress_and_result(store_url: str):
    store = VolumeStore(store_url, owner="a")
    created = store.create("j1", PARAMS, ttl_s=600, total=40)
    assert created["status"] == "queued" and created["params"] == PARAMS
    assert created["progress"] == {"done": 0, "total": 40} and created["artifacts"] == []
    store.set_status("j1", "running")
    assert store.set_progress("j1", 12, 40)
    reader = VolumeStore(store_url, owner="b")  # another replica
    job = reader.get("j1")
    assert (job["status"], job["progress"]) == ("running", {"done": 12, "total": 40})
    assert job["finished"] is None and job["result"] is None
    store.set_status("j1", "done", result={"lung_ml": 4210.5, "slices": 40})
    done = reader.get("j1")
    assert done["status"] == "done" and done["result"] == {"lung_ml": 4210.5, "slices": 40}
    finished = dt.datetime.fromisoformat(done["finished"])
    expires = dt.datetime.fromisoformat(done["expires"])
    assert expires - finished == dt.timedelta(seconds=600)  # kept ttl_s after it ended
    assert not store.set_progress("j1", 40, 40)  # ended: nothing to update
    assert [j["id"] for j in reader.list()] == ["j1"]


def test_a_failed_job_keeps_its_error(store_url: str):
    store = VolumeStore(store_url)
    store.create("j1", PARAMS)
    store.set_status("j1", "failed", error="the series has 1 slice")
    job = store.get("j1")
    assert (job["status"], job["error"]) == ("failed", "the series has 1 slice")
    expires = dt.datetime.fromisoformat(job["expires"])
    assert expires - dt.datetime.fromisoformat(job["finished"]) == dt.timedelta(
        seconds=DEFAULT_TTL_S
    )


def test_artifacts_are_readable_from_every_store_and_replaced_by_name(store_url: str):
    writer, reader = VolumeStore(store_url, owner="a"), VolumeStore(store_url, owner="b")
    writer.create("j1", PARAMS)
    mask = os.urandom(3 * 1024 * 1024)  # a few MB, binary
    writer.put_artifact("j1", "mask.nii.gz", "application/gzip", mask)
    writer.put_artifact("j1", "fhir.json", "application/fhir+json", b"{}")
    got = reader.get_artifact("j1", "mask.nii.gz")
    assert got == Artifact("j1", "mask.nii.gz", "application/gzip", mask, len(mask))
    writer.put_artifact("j1", "fhir.json", "application/fhir+json", b'{"a": 1}')
    assert reader.get_artifact("j1", "fhir.json").content == b'{"a": 1}'
    assert reader.get("j1")["artifacts"] == [
        {"name": "fhir.json", "media_type": "application/fhir+json", "size": 8},
        {"name": "mask.nii.gz", "media_type": "application/gzip", "size": len(mask)},
    ]
    assert reader.get_artifact("j1", "seg.dcm") is None
    assert reader.get_artifact("nope", "mask.nii.gz") is None
    with pytest.raises(KeyError):
        writer.put_artifact("nope", "seg.dcm", "application/dicom", b"x")


def test_expired_jobs_read_as_absent_and_are_purged_with_their_artifacts(store_url: str):
    store = VolumeStore(store_url)
    for job_id in ("old", "fresh", "busy"):
        store.create(job_id, PARAMS, ttl_s=600)
        store.put_artifact(job_id, "seg.dcm", "application/dicom", b"DICM")
    store.set_status("old", "done", result={})
    store.set_status("fresh", "done", result={})
    store.set_status("busy", "running")
    _age(store, "old", expires=_ago(1))
    _age(store, "busy", expires=_ago(1))  # ran past its ttl_s: kept while it runs
    assert store.get("old") is None and store.get_artifact("old", "seg.dcm") is None
    assert [j["id"] for j in store.list()] == ["busy", "fresh"]
    assert store.get("busy")["status"] == "running"
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    assert _count(store, VolumeJob) == 2 and _count(store, VolumeArtifact) == 2
    assert store.get_artifact("fresh", "seg.dcm").content == b"DICM"


def test_the_heartbeat_thread_purges_and_records_lapsed_jobs(store_url: str):
    dead = VolumeStore(store_url, owner="dead")
    dead.create("lost", PARAMS, ttl_s=600)
    dead.set_status("lost", "running")
    _age(dead, "lost", heartbeat=_ago(120))
    dead.create("expired", PARAMS, ttl_s=0)
    dead.set_status("expired", "done", result={})
    mine = VolumeStore(store_url, owner="mine")
    mine.create("live", PARAMS)
    mine.set_status("live", "running")
    beat = Heartbeat([mine], every_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while _count(mine, VolumeJob) == 3 or _lost(mine):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        beat.stop()
    patient = VolumeStore(store_url, owner="reader", stale_after_s=1e9)
    lost = patient.get("lost")
    assert (lost["status"], lost["error"]) == ("interrupted", LOST) and lost["finished"]
    assert patient.get("expired") is None and _count(mine, VolumeJob) == 2
    assert patient.get("live")["status"] == "running"


def _lost(store: VolumeStore) -> bool:
    """The crashed job's row still reads running."""
    with store.engine.connect() as db:
        status = db.execute(select(VolumeJob.status).where(VolumeJob.id == "lost")).scalar_one()
    return status == "running"


def test_reading_a_job_whose_lease_lapsed_records_it_and_leaves_live_jobs(store_url: str):
    dead, live = VolumeStore(store_url, owner="dead"), VolumeStore(store_url, owner="live")
    dead.create("lost", PARAMS)
    dead.set_status("lost", "running")
    _age(dead, "lost", heartbeat=_ago(120))
    live.create("alive", PARAMS)
    reader = VolumeStore(store_url, owner="reader")
    assert {j["id"]: j["status"] for j in reader.list()} == {
        "lost": "interrupted",
        "alive": "queued",
    }
    assert not dead.set_progress("lost", 3, 10)  # its worker learns it was given up
    assert reader.mark_interrupted() == 0
    assert live.heartbeat() == 1 and dead.heartbeat() == 0


def test_abandon_interrupts_only_the_owners_jobs_of_that_kind(store_url: str):
    runs = RunStore(store_url, owner="a")
    volumes = VolumeStore(runs.engine, owner="a")  # one engine, two kinds of job
    runs.create("r1", "set", ["unet"], 3)
    volumes.create("j1", PARAMS)
    VolumeStore(store_url, owner="b").create("j2", PARAMS)
    assert volumes.abandon() == 1
    assert volumes.get("j1")["error"] == "the service stopped before the job finished"
    assert volumes.get("j2")["status"] == "queued"
    assert runs.get("r1")["status"] == "queued"
    volumes.close()  # not its engine: the run store goes on
    assert runs.get("r1") is not None
    runs.close()


def test_an_old_sqlite_store_gains_the_volume_tables(tmp_path: Path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE benchmark_runs (id VARCHAR(36) PRIMARY KEY, status VARCHAR(16), "
            "set_name VARCHAR(255), models JSON, n_images INTEGER, created DATETIME, "
            "finished DATETIME, error TEXT, results JSON)"
        )
        db.execute(
            "INSERT INTO benchmark_runs VALUES ('old', 'done', 'set', '[\"unet\"]', 3, "
            "'2026-11-01 10:00:00', '2026-11-01 10:01:00', NULL, '{\"entries\": []}')"
        )
    url = f"sqlite:///{path}"
    volumes = VolumeStore(url)
    volumes.create("j1", PARAMS)
    runs = RunStore(url)
    assert runs.get("old")["results"] == {"entries": []}
    assert volumes.get("j1")["status"] == "queued"
