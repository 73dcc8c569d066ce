"""The shared job queue (``service.jobs.queue.ProcrastinateExecutor``) on a real PostgreSQL:
a job deferred by one replica is run by another's worker; the queue bound is the posting
replica's; a payload job stays where it was posted; a replica stopping hands its job back and
a killed one's job is run again by another (or recorded lost once it has no retry left); a
benchmark of a server-side set run in chunks by two replicas equals the one-process result; a
volume job pulled from the PACS travels.

Each "replica" is an executor of its own in this process (its own event loop, pool and
workers), except the killed one: a process of its own (``tests/jobs/queue_replica.py``).
"""

from __future__ import annotations

import io
import json
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pydicom
import pytest

from service.benchmark.jobs import BenchmarkRunner, score_models
from service.benchmark.store import QUEUE_OWNER, RunStore
from service.benchmark.volume_store import VolumeStore
from service.datasets import read_set
from service.dicomweb import DicomwebConfig
from service.errors import BusyError
from service.jobs import Job, JobStopped
from service.jobs.queue import ProcrastinateExecutor, conninfo
from service.models.segmenter import Segmenter, SegmenterConfig
from service.volumes.document import VolumeRequest
from service.volumes.jobs import VolumeJobs
from tests.conftest import REPO_ROOT

HEARTBEAT_S = 0.3
LEASE_S = 1.5
QU_LAYOUT = Path("files") / "covid-qu-ex-layout"


class Replica:
    """An executor with kind ``k``: its worker records (replica, job id) and, while ``hold``
    is clear, waits for it (or for the job's stop)."""

    def __init__(self, url: str, name: str, ran: list[tuple[str, str]], **options: Any) -> None:
        self.name = name
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.lost: list[str] = []
        retries = options.pop("retries", 1)
        self.executor = ProcrastinateExecutor(
            url, heartbeat_s=HEARTBEAT_S, lease_s=LEASE_S, poll_s=0.05
        )

        def worker(job: Job) -> None:
            ran.append((name, job.id))
            self.started.set()
            while not self.hold.wait(0.02):
                if job.stop.is_set():
                    raise JobStopped(job.id)

        self.executor.register(
            "k",
            worker,
            retries=retries,
            load=lambda job_id: {"id": job_id},
            lost=self.lost.append,
            **options,
        )


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[Callable[..., Replica]]:
    made: list[Replica] = []
    ran: list[tuple[str, str]] = []

    def make(name: str, consume: bool = True, **options: Any) -> Replica:
        replica = Replica(postgres_url, name, ran, **options)
        replica.executor.start(consume=consume)
        made.append(replica)
        return replica

    make.ran = ran  # type: ignore[attr-defined]
    yield make
    for replica in made:
        replica.hold.set()
        replica.executor.shutdown()


def _queued_jobs(url: str) -> int:
    with psycopg.connect(conninfo(url)) as db:
        row = db.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()
    return int(row[0]) if row else 0


def test_a_job_posted_to_one_replica_runs_on_another(replicas: Any) -> None:
    posting = replicas("a", consume=False)  # only defers: its requests' jobs run elsewhere
    replicas("b")
    job = Job("k", "j1")
    assert posting.executor.travels(job)
    posting.executor.submit(job).result(timeout=20)
    assert replicas.ran == [("b", "j1")]
    assert posting.executor.pending("k") == 0  # its place is free once the job ended


def test_the_bound_is_the_posting_replicas_and_holds_until_the_job_ended(
    replicas: Any, postgres_url: str
) -> None:
    posting = replicas("a", consume=False, max_pending=1, retry_after_s=7)
    running = replicas("b")
    running.hold.clear()
    first = posting.executor.submit(Job("k", "j1"))
    with pytest.raises(BusyError) as busy:
        posting.executor.reserve("k")  # before an upload would be read
    assert busy.value.retry_after_s == 7
    with pytest.raises(BusyError):
        posting.executor.submit(Job("k", "j2"))
    assert running.started.wait(20)
    assert _queued_jobs(postgres_url) == 1  # the refused one never reached the queue
    running.hold.set()
    first.result(timeout=20)
    posting.executor.reserve("k").release()  # room again


def test_a_payload_job_runs_on_the_replica_that_received_it(
    replicas: Any, postgres_url: str
) -> None:
    here = replicas("a")
    replicas("b")
    job = Job("k", "upload", {}, payload=b"pixels held in memory only")
    assert not here.executor.travels(job)
    here.executor.submit(job).result(timeout=20)
    assert replicas.ran == [("a", "upload")]
    assert _queued_jobs(postgres_url) == 0  # nothing of it was written to the queue


def test_a_replica_stopping_hands_its_running_job_back(replicas: Any) -> None:
    posting = replicas("a", consume=False)
    stopping = replicas("b")
    stopping.hold.clear()
    future = posting.executor.submit(Job("k", "j1"))
    assert stopping.started.wait(20)
    replicas("c")
    stopping.executor.shutdown()  # its running job goes back to the queue at once
    future.result(timeout=20)
    assert replicas.ran == [("b", "j1"), ("c", "j1")]
    assert stopping.lost == []


def test_a_stopped_job_without_retries_left_is_recorded_lost(replicas: Any) -> None:
    posting = replicas("a", consume=False, retries=0)
    stopping = replicas("b", retries=0)
    stopping.hold.clear()
    future = posting.executor.submit(Job("k", "j1"))
    assert stopping.started.wait(20)
    stopping.executor.shutdown()
    future.result(timeout=20)
    assert stopping.lost == ["j1"] and replicas.ran == [("b", "j1")]


def _line(process: subprocess.Popen[str], timeout_s: float = 30) -> str:
    """The next line the process writes, waiting at most ``timeout_s``."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, "the replica process said nothing"
    return process.stdout.readline().strip()


def _replica_process(url: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.jobs.queue_replica", url, str(HEARTBEAT_S), str(LEASE_S)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert _line(process, 60) == "ready"
    return process


def test_a_killed_replicas_job_is_run_again_by_another(replicas: Any, postgres_url: str) -> None:
    posting = replicas("a", consume=False)
    victim = _replica_process(postgres_url)
    try:
        future = posting.executor.submit(Job("k", "j1"))
        assert _line(victim) == "started j1"
        victim.kill()  # SIGKILL: no shutdown, no handing back
        victim.wait(10)
        killed_at = time.monotonic()
        survivor = replicas("b")
        future.result(timeout=30)
        waited = time.monotonic() - killed_at
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait(10)
    assert replicas.ran == [("b", "j1")] and survivor.lost == []
    assert LEASE_S - 0.5 < waited < LEASE_S + 10 * HEARTBEAT_S + 5  # once the lease lapsed


def test_a_killed_replicas_job_without_retries_left_is_recorded_lost(
    replicas: Any, postgres_url: str
) -> None:
    posting = replicas("a", consume=False)
    victim = _replica_process(postgres_url)
    try:
        future = posting.executor.submit(Job("k", "j1"))
        assert _line(victim) == "started j1"
        victim.kill()
        victim.wait(10)
        survivor = replicas("b", retries=0)  # the recovering replica's rule: no retry
        deadline = time.monotonic() + 30
        while not survivor.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        future.result(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait(10)
    assert survivor.lost == ["j1"] and replicas.ran == []


def _without_timing(results: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(results))  # as stored: JSON
    for entry in out["entries"]:
        entry.pop("timing")
    return out


def test_a_chunked_benchmark_on_two_replicas_equals_the_one_process_result(
    postgres_url: str, data_dir: Path
) -> None:
    path = data_dir / QU_LAYOUT
    labelled = read_set(path, name="qu")
    segmenter = Segmenter(SegmenterConfig(None))  # the threshold segmenter
    runners = []
    for _ in range(2):
        executor = ProcrastinateExecutor(
            postgres_url, heartbeat_s=HEARTBEAT_S, lease_s=LEASE_S, poll_s=0.05
        )
        runner = BenchmarkRunner(
            RunStore(postgres_url, stale_after_s=LEASE_S),
            segmenter,
            executor=executor,
            heartbeat_s=HEARTBEAT_S,
            sets={"qu": path},
            chunk_images=5,
        )
        executor.start()
        runners.append(runner)
    try:
        record, future = runners[0].submit(labelled, ["threshold"], server_side=True)
        future.result(timeout=120)
        run = runners[1].store.get(record["id"])
        chunks = runners[1].store.chunks(record["id"])
    finally:
        for runner in runners:
            runner.shutdown()
            runner.store.close()
    assert run is not None and run["status"] == "done", run
    assert [(c["start"], c["stop"], c["status"]) for c in chunks] == [
        (0, 5, "done"),
        (5, 10, "done"),
        (10, 12, "done"),
    ]
    assert {c["worker"] for c in chunks} <= {r.store.owner for r in runners}
    alone = score_models(segmenter, labelled, ["threshold"]).to_dict()
    assert _without_timing(run["results"]) == _without_timing(alone)
    timings = [entry["timing"] for entry in run["results"]["entries"]]
    assert [t["n_images"] for t in timings] == [e["timing"]["n_images"] for e in alone["entries"]]
    assert record["status"] == "queued"
    with psycopg.connect(conninfo(postgres_url)) as db:
        row = db.execute(
            "SELECT owner FROM benchmark_runs WHERE id = %s", [record["id"]]
        ).fetchone()
    assert (
        row is not None and row[0] == QUEUE_OWNER
    )  # no one replica's lease: the queue's recovery decides


class _FakePacs:
    """A DICOMweb client that serves one series from files, recording who retrieved it."""

    def __init__(self, files: list[bytes], calls: list[str], name: str) -> None:
        self.files, self.calls, self.name = files, calls, name

    def __call__(self, config: Any, **_: Any) -> _FakePacs:
        return self

    def __enter__(self) -> _FakePacs:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]:
        self.calls.append(self.name)
        return self.files


def test_a_pacs_volume_job_posted_to_one_replica_runs_on_another(
    postgres_url: str, data_dir: Path
) -> None:
    folder = data_dir / "files" / "ct-series-jpeg2000"
    files = [p.read_bytes() for p in sorted(folder.iterdir()) if p.name.startswith("CT.")]
    segmenter = Segmenter(SegmenterConfig(None))
    pacs = DicomwebConfig("http://pacs.invalid/dicom-web")
    calls: list[str] = []
    replicas = []
    for name in ("a", "b"):
        executor = ProcrastinateExecutor(
            postgres_url, heartbeat_s=HEARTBEAT_S, lease_s=LEASE_S, poll_s=0.05
        )
        store = VolumeStore(postgres_url, stale_after_s=LEASE_S)
        jobs = VolumeJobs(
            store, segmenter, executor, pacs=pacs, client=_FakePacs(files, calls, name)
        )
        executor.start(consume=name == "b")  # a only takes requests
        replicas.append(jobs)
    posting = replicas[0]
    try:
        header = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
        series, study = str(header.SeriesInstanceUID), str(header.StudyInstanceUID)
        request = VolumeRequest("pacs", "client", "threshold", series, study)
        record, future = posting.submit(request, posting.reserve())
        future.result(timeout=300)
        job = posting.get(record["id"], "client")
    finally:
        for jobs in replicas:
            jobs.shutdown()
            jobs.store.close()
    assert calls == ["b"]  # retrieved and segmented by the idle replica
    assert job is not None and job["status"] == "done", job
    assert {a["name"] for a in job["artifacts"]} >= {"mask.nii.gz", "seg.dcm"}
