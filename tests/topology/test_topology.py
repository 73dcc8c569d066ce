"""Three replicas behind a real load balancer on one machine, one killed under load.

Three ``python -m service.api`` processes (``LUNGSEG_WORKERS=1``) on loopback ports share a real
PostgreSQL (a fresh database: the job store and the shared job queue, ``LUNGSEG_JOB_QUEUE``
auto) and an API keys file; Debian's HAProxy runs in front of them
(``docker/haproxy/haproxy.cfg.template``: ``balance leastconn``, ``/readyz`` checked every
500 ms, down after 2 failures, up after 2 successes, connection failures and empty responses
retried on another replica). locust (headless, its own process, bounded) posts real images
(a CXR PNG, a CT DICOM) to ``/v1/segment`` and reads ``/v1/models`` through the balancer while
the test

1. measures the steady state with three replicas;
2. posts a benchmark job (a small zip, ``models=threshold``: the upload stays on the replica
   that received it) and SIGKILLs the replica that took it, at once: HAProxy must mark it down
   and every client must still get 200 or 503 with ``Retry-After`` (never a reset, a 502/504 or
   a 500);
3. starts a new process on the same port: HAProxy must mark it up and send it requests;
4. posts a benchmark of a server-side set (``set_name``, ``LUNGSEG_BENCHMARK_SETS``) in chunks
   of ``CHUNK_IMAGES`` images, which every replica's queue worker takes: once a chunk runs on a
   replica, SIGKILLs that replica (and revives it as in 3);
5. the same as 2-3 with SIGTERM (a graceful shutdown) of the replica that took a third job;
6. after the load, waits for the first job's lease to lapse (``LEASE_S``, shortened by
   ``LUNGSEG_JOB_LEASE_S`` and ``LUNGSEG_JOB_HEARTBEAT_S``) and checks that every replica reads
   both upload jobs ``interrupted``, identically, and the chunked run ``done``: its killed
   chunk queued again and run by another replica, its chunks run by more than one replica
   (the ``worker`` of each chunk's row names the process that ran it).

The figures (requests/s, latency, the answers during each kill, the times to mark down and up,
who ran which chunk) are printed at the end of the run; README "Deploy" -> "Replicas behind a
load balancer" has them. Skipped without haproxy or PostgreSQL unless
``LUNGSEG_REQUIRE_TOPOLOGY=1``; ``make topology-test``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bench.raw import percentiles
from bench.serve import wait_ready
from service.jobs.queue import conninfo
from tests.api.conftest import zip_folder
from tests.conftest import FIXTURES_DIR, REPO_ROOT
from tests.haproxy import Haproxy, StateWatcher, free_port
from tests.topology.conftest import FIGURES

REPLICAS = ("r1", "r2", "r3")
USERS = 12  # locust users, each with one request in flight and no wait between requests
STEADY_S = 12.0  # the steady state measured before the first kill
AFTER_KILL_S = 5.0  # load on two replicas before the killed one comes back
AFTER_REVIVE_S = 4.0
LOAD_LIMIT_S = 150  # locust's own bound (-t); the test stops it earlier
READY_TIMEOUT_S = 90.0
MARK_TIMEOUT_S = 15.0
LEASE_S = 5.0  # LUNGSEG_JOB_LEASE_S (60 s by default)
HEARTBEAT_S = 1.0  # LUNGSEG_JOB_HEARTBEAT_S (10 s by default)
CHUNK_IMAGES = 2  # LUNGSEG_BENCHMARK_CHUNK_IMAGES: the 12-image set in 6 chunks
CHUNK_MODELS = ["threshold", "unet"]  # a chunk: 2 images x 2 models, long enough to be caught
CHUNKED_TIMEOUT_S = 120.0


@dataclass
class Replica:
    """One ``python -m service.api`` process on a fixed loopback port."""

    name: str
    port: int
    env: dict[str, str]
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)  # of every process it started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = (self.folder / f"{self.name}-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.api"],
            env={**self.env, "LUNGSEG_PORT": str(self.port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self.pids.append(self.process.pid)
        log.close()

    def wait_ready(self) -> None:
        wait_ready(f"{self.url}/readyz", READY_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.folder.glob(f"{self.name}-*.log"))
        )


@dataclass
class Kill:
    """One replica stopped under load, and what followed."""

    how: str
    replica: str
    at: float
    down_at: float | None = None
    exited_at: float | None = None
    exit_code: int | None = None
    restarted_at: float | None = None
    ready_at: float | None = None
    up_at: float | None = None
    run_id: str = ""
    run_after_exit: str = ""
    held: list[int] = field(default_factory=list)  # the chunks it was running when killed


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0.0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return (total - idle) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


def _cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    busy, total = _machine_cpu_s()
    return {"busy": busy, "total": total, **{name: _cpu_s(pid) for name, pid in pids.items()}}


def _keys_file(folder: Path) -> tuple[str, Path]:
    key = secrets.token_hex(32)
    path = folder / "api-keys"
    digest = hashlib.sha256(key.encode()).hexdigest()
    path.write_text(f"topology-test {digest} segment,benchmark\n")
    path.chmod(0o600)
    return key, path


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _good(record: dict[str, Any]) -> bool:
    """200, or 503 with a Retry-After: the only answers a client may get."""
    return record["exception"] is None and (
        record["status"] == 200 or (record["status"] == 503 and bool(record["retry_after"]))
    )


def _answers(records: list[dict[str, Any]]) -> str:
    counts = Counter(
        str(r["status"]) if r["exception"] is None else f"{r['status']} {r['exception'][:60]}"
        for r in records
    )
    return ", ".join(f"{n} x {what}" for what, n in sorted(counts.items())) or "none"


def _in_flight(records: list[dict[str, Any]], at: float) -> list[dict[str, Any]]:
    return [r for r in records if r["start"] <= at <= r["start"] + r["ms"] / 1000]


def _started(records: list[dict[str, Any]], begin: float, end: float) -> list[dict[str, Any]]:
    return [r for r in records if begin <= r["start"] < end]


def _window(records: list[dict[str, Any]], begin: float, end: float) -> dict[str, Any]:
    """Throughput and latency of the requests that started in [begin, end)."""
    inside = _started(records, begin, end)
    ok = [r["ms"] for r in inside if r["status"] == 200 and r["exception"] is None]
    return {
        "seconds": end - begin,
        "requests": len(inside),
        "ok": len(ok),
        "busy": sum(1 for r in inside if r["status"] == 503),
        "req_per_s": len(ok) / (end - begin) if end > begin else 0.0,
        "latency_ms": percentiles(ok) if ok else {},
    }


def _iso(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat()


def _lat(window: dict[str, Any]) -> str:
    lat = window["latency_ms"]
    if not lat:
        return "no 200"
    return f"p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms"


def _chunks(database: str, run_id: str) -> list[dict[str, Any]]:
    """The run's chunk rows as the store holds them (index, status, worker, attempts)."""
    with psycopg.connect(conninfo(database)) as db:
        rows = db.execute(
            "SELECT number, status, worker, attempts, started, finished FROM benchmark_chunks "
            "WHERE run_id = %s ORDER BY number",
            [run_id],
        ).fetchall()
    return [
        {
            "index": n,
            "status": st,
            "worker": w,
            "attempts": a,
            "started": began.timestamp() if began else None,
            "finished": ended.timestamp() if ended else None,
        }
        for n, st, w, a, began, ended in rows
    ]


def _replica_of(worker: str | None, replicas: dict[str, Replica]) -> str:
    """The replica whose process wrote a chunk's ``worker`` (``host:pid:tag``), with the
    process's start number when it was started again (``r2#2``)."""
    pid = int(worker.split(":")[1]) if worker else -1
    for name, replica in replicas.items():
        if pid in replica.pids:
            start = replica.pids.index(pid) + 1
            return name if start == 1 else f"{name}#{start}"
    return "?"


def _running_chunk(
    database: str, run_id: str, replicas: dict[str, Replica], timeout_s: float
) -> tuple[str, list[int]]:
    """Wait until a chunk of the run is running; the replica running it, and which of its
    chunks are running (checked twice in a row, so that the kill lands while it runs)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = [c for c in _chunks(database, run_id) if c["status"] == "running"]
        if running:
            name = _replica_of(running[0]["worker"], replicas).split("#")[0]
            held = [c["index"] for c in running if c["worker"] == running[0]["worker"]]
            still = [c for c in _chunks(database, run_id) if c["index"] in held]
            if all(c["status"] == "running" for c in still):
                return name, held
        time.sleep(0.02)
    raise AssertionError(f"no chunk of {run_id} ran within {timeout_s} s")


def test_replicas_behind_haproxy_survive_a_killed_replica(
    tmp_path: Path, data_dir: Path, shared_database: str, haproxy_binary: str
) -> None:
    png = FIXTURES_DIR / "cxr_covid_1902.png"
    dicom = data_dir / "files" / "dicom" / "CT_small.dcm"
    labelled = data_dir / "files" / "covid-qu-ex-layout"
    assert dicom.is_file() and labelled.is_dir()
    benchmark_zip = zip_folder(labelled)
    key, keys_file = _keys_file(tmp_path)
    auth = {"Authorization": f"Bearer {key}"}

    env = {k: v for k, v in os.environ.items() if k.startswith(("PATH", "HOME", "LANG", "TMP"))}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "LUNGSEG_HOST": "127.0.0.1",
        "LUNGSEG_WORKERS": "1",
        "LUNGSEG_AUTH": "required",
        "LUNGSEG_API_KEYS_FILE": str(keys_file),
        "LUNGSEG_DATABASE_URL": shared_database,
        "LUNGSEG_MODELS_DIR": str(REPO_ROOT / "models"),
        "LUNGSEG_BENCHMARK_SYNC_MAX_IMAGES": "0",  # every benchmark is a job
        "LUNGSEG_BENCHMARK_SETS": json.dumps({"qu": str(labelled)}),
        "LUNGSEG_BENCHMARK_CHUNK_IMAGES": str(CHUNK_IMAGES),
        "LUNGSEG_JOB_HEARTBEAT_S": str(HEARTBEAT_S),
        "LUNGSEG_JOB_LEASE_S": str(LEASE_S),
        "LUNGSEG_LOG_FORMAT": "json",
    }
    replicas = {name: Replica(name, free_port(), env, tmp_path / "replicas") for name in REPLICAS}
    (tmp_path / "replicas").mkdir()
    requests_log = tmp_path / "requests.jsonl"
    locust: subprocess.Popen[bytes] | None = None
    haproxy: Haproxy | None = None
    kills: list[Kill] = []
    runs: dict[str, str] = {}  # run id -> the replica that took it
    chunked: dict[str, Any] = {}  # the chunked run: id, when posted, its kill
    problems: list[str] = []
    http = httpx.Client(timeout=30, headers=auth)
    try:
        started = time.time()
        for replica in replicas.values():
            replica.start()
        for replica in replicas.values():
            replica.wait_ready()
        replicas_ready_s = time.time() - started
        haproxy = Haproxy({n: r.port for n, r in replicas.items()}).start()
        with StateWatcher(haproxy) as watch:
            for name in REPLICAS:
                assert watch.wait_for(name, up=True, after=0, timeout_s=MARK_TIMEOUT_S), (
                    f"haproxy never marked {name} up: {haproxy.servers()}"
                )
            # Through the balancer: authentication holds, and each kind of request answers.
            assert httpx.get(f"{haproxy.url}/v1/models", timeout=30).status_code == 401
            answer = http.post(f"{haproxy.url}/v1/segment", files={"file": png.read_bytes()})
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Served-By"] in REPLICAS

            locust_env = {
                **os.environ,
                "PYTHONPATH": str(REPO_ROOT),
                "LUNGSEG_TOPOLOGY_KEY": key,
                "LUNGSEG_TOPOLOGY_PNG": str(png),
                "LUNGSEG_TOPOLOGY_DICOM": str(dicom),
                "LUNGSEG_TOPOLOGY_LOG": str(requests_log),
            }
            locust_out = (tmp_path / "locust.log").open("wb")
            locust = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "locust",
                    "-f",
                    str(Path(__file__).with_name("locustfile.py")),
                    "--headless",
                    "--host",
                    haproxy.url,
                    "--users",
                    str(USERS),
                    "--spawn-rate",
                    str(USERS),
                    "--run-time",
                    f"{LOAD_LIMIT_S}s",
                    "--stop-timeout",
                    "10",
                    "--csv",
                    str(tmp_path / "locust"),
                    "--only-summary",
                    "--loglevel",
                    "WARNING",
                ],
                env=locust_env,
                cwd=REPO_ROOT,
                stdout=locust_out,
                stderr=subprocess.STDOUT,
            )
            locust_out.close()
            deadline = time.monotonic() + 60
            while not _records(requests_log) and time.monotonic() < deadline:
                assert locust.poll() is None, (tmp_path / "locust.log").read_text()
                time.sleep(0.2)
            load_start = time.time()
            # Who uses the cores in the steady state: the replicas, haproxy, locust, the rest.
            pids = {n: r.process.pid for n, r in replicas.items() if r.process is not None}
            assert haproxy.process is not None
            pids |= {"haproxy": haproxy.process.pid, "locust": locust.pid}
            cpu_before = _cpu_snapshot(pids)
            time.sleep(STEADY_S)
            cpu_after = _cpu_snapshot(pids)

            rounds = (
                ("SIGKILL", signal.SIGKILL, "zip"),
                ("SIGKILL mid-chunk", signal.SIGKILL, "chunks"),
                ("SIGTERM", signal.SIGTERM, "zip"),
            )
            for how, sig, shape in rounds:
                if shape == "zip":
                    # A benchmark job of an upload through the balancer: it stays on the
                    # replica that took it, which is stopped.
                    posted = http.post(
                        f"{haproxy.url}/v1/benchmark",
                        params={"models": "threshold"},
                        files={"file": ("covid-qu-ex-layout.zip", benchmark_zip)},
                    )
                    assert posted.status_code == 202, posted.text
                    victim = replicas[posted.headers["X-Served-By"]]
                    chunks_held: list[int] = []
                else:
                    # A benchmark of the server-side set: its chunks go to the shared queue;
                    # the replica running one of them is killed.
                    posted = http.post(
                        f"{haproxy.url}/v1/benchmark",
                        params={"set_name": "qu", "models": CHUNK_MODELS},
                    )
                    assert posted.status_code == 202, posted.text
                    chunked |= {"id": posted.json()["id"], "posted": time.time()}
                    chunked["taker"] = posted.headers["X-Served-By"]
                    name, chunks_held = _running_chunk(shared_database, chunked["id"], replicas, 60)
                    victim = replicas[name]
                assert victim.process is not None
                kill = Kill(
                    how, victim.name, time.time(), run_id=posted.json()["id"], held=chunks_held
                )
                victim.process.send_signal(sig)
                kills.append(kill)
                if shape == "zip":
                    runs[kill.run_id] = victim.name
                else:
                    chunked |= {"kill": kill, "pid": victim.process.pid}
                kill.down_at = watch.wait_for(
                    victim.name, up=False, after=kill.at, timeout_s=MARK_TIMEOUT_S
                )
                kill.exit_code = victim.process.wait(timeout=60)
                kill.exited_at = time.time()
                # The job as another replica reads it now, from the shared database.
                witness = next(r for n, r in replicas.items() if n != victim.name)
                seen = http.get(f"{witness.url}/v1/benchmark/{kill.run_id}").json()
                kill.run_after_exit = f"{seen['status']} ({seen['error'] or 'no error'})"
                time.sleep(max(0.0, kill.at + AFTER_KILL_S - time.time()))
                # Bring it back: a new process on the same port.
                kill.restarted_at = time.time()
                victim.start()
                victim.wait_ready()
                kill.ready_at = time.time()
                kill.up_at = watch.wait_for(
                    victim.name, up=True, after=kill.ready_at - 0.5, timeout_s=MARK_TIMEOUT_S
                )
                time.sleep(AFTER_REVIVE_S)
            load_end = time.time()
            locust.send_signal(signal.SIGTERM)
            try:
                locust.wait(timeout=30)
            except subprocess.TimeoutExpired:
                locust.kill()
            state_changes = list(watch.changes)

        # The first job's worker died without a word: its lease lapses LEASE_S after its last
        # heartbeat, and then the next replica that reads it records it interrupted.
        first = kills[0]
        other = next(r for n, r in replicas.items() if n != first.replica)
        interrupted_at = None  # when a replica recorded it (the run's finished time)
        deadline = max(time.time(), first.at + LEASE_S + HEARTBEAT_S) + 15
        while time.time() < deadline:
            run = http.get(f"{other.url}/v1/benchmark/{first.run_id}").json()
            if run["status"] == "interrupted":
                interrupted_at = dt.datetime.fromisoformat(run["finished"]).timestamp()
                break
            time.sleep(0.5)
        # The chunked run: its killed chunk is queued again once the killed worker's lease
        # lapsed, and run by another replica.
        chunked_done_at = None  # when its last chunk merged it (the run's finished time)
        deadline = chunked["posted"] + CHUNKED_TIMEOUT_S
        while time.time() < deadline:
            run = http.get(f"{haproxy.url}/v1/benchmark/{chunked['id']}").json()
            if run["status"] not in ("queued", "running"):
                chunked_done_at = dt.datetime.fromisoformat(run["finished"]).timestamp()
                break
            time.sleep(0.5)
        chunk_rows = _chunks(shared_database, chunked["id"])
        runs[chunked["id"]] = chunked["taker"]
        urls = {name: r.url for name, r in replicas.items()} | {"balancer": haproxy.url}
        views = {
            run_id: {
                name: http.get(f"{url}/v1/benchmark/{run_id}").json() for name, url in urls.items()
            }
            for run_id in runs
        }
    finally:
        http.close()
        if locust is not None and locust.poll() is None:
            locust.kill()
            locust.wait(timeout=10)
        for replica in replicas.values():
            replica.stop()
        if haproxy is not None:
            proxy_log = haproxy.requests()
            haproxy.stop()

    records = [r for r in _records(requests_log) if r["start"] is not None]
    bad = [r for r in records if not _good(r)]
    proxied = [line for line in proxy_log if line.accepted < load_end]
    proxy_errors = [line for line in proxied if line.status in (500, 502, 504)]
    first_kill = kills[0].at
    steady = _window(records, load_start + 2, first_kill)
    overall = _window(records, load_start, load_end)
    FIGURES["machine"] = f"{os.cpu_count()} cores, load average {os.getloadavg()}"
    FIGURES["replicas started and ready"] = f"{replicas_ready_s:.1f} s (3 at once)"
    FIGURES["steady state, 3 replicas"] = (
        f"{steady['req_per_s']:.1f} req/s (200), {_lat(steady)}, "
        f"{steady['busy']} x 503 of {steady['requests']}, {USERS} users"
    )
    used = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
    share = {name: 100 * value / used["total"] for name, value in used.items()}
    ours = sum(share[name] for name in (*REPLICAS, "haproxy", "locust"))
    FIGURES["CPU in the steady state (% of all cores)"] = (
        f"busy {share['busy']:.0f} %: replicas "
        + " + ".join(f"{share[name]:.0f}" for name in REPLICAS)
        + f", haproxy {share['haproxy']:.1f}, locust {share['locust']:.0f}, "
        f"other processes {share['busy'] - ours:.0f}"
    )
    FIGURES["whole load"] = (
        f"{overall['req_per_s']:.1f} req/s over {overall['seconds']:.0f} s, {_lat(overall)}; "
        f"answers: {_answers(records)}"
    )
    for kill in kills:
        flight = _in_flight(records, kill.at)
        two = _window(records, (kill.down_at or kill.at) + 0.2, kill.restarted_at or kill.at)
        during = _started(records, kill.at, kill.up_at or load_end)
        retried = [
            line
            for line in proxied
            if line.retries and kill.at - 1 <= line.accepted <= (kill.up_at or load_end)
        ]
        # What the victim held when the signal came: the requests in flight in haproxy's log
        # that finished there (a graceful shutdown) or were sent again elsewhere (retries).
        held = [line for line in proxied if line.accepted <= kill.at <= line.finished]
        finished_there = [line for line in held if line.server == kill.replica]
        sent_again = [line for line in held if line.retries and line.server != kill.replica]
        FIGURES[f"{kill.how} {kill.replica}: in flight through the balancer at the signal"] = (
            f"{len(flight)}: {_answers(flight)}"
        )
        FIGURES[f"{kill.how} {kill.replica}: held by the victim at the signal"] = (
            f"{len(finished_there) + len(sent_again)}: {len(finished_there)} answered by it "
            f"({Counter(line.status for line in finished_there)}), {len(sent_again)} retried on "
            f"another replica ({Counter(line.status for line in sent_again)})"
        )
        FIGURES[f"{kill.how} {kill.replica}: requests from the kill until it was up again"] = (
            f"{len(during)}: {_answers(during)}; haproxy retried {len(retried)} "
            f"({Counter(line.termination for line in retried)})"
        )
        FIGURES[f"{kill.how} {kill.replica}: two replicas"] = (
            f"{two['req_per_s']:.1f} req/s, {_lat(two)}"
        )
        FIGURES[f"{kill.how} {kill.replica}: marked down"] = (
            f"{kill.down_at - kill.at:.2f} s after the signal"
            if kill.down_at
            else "NOT within the timeout"
        )
        FIGURES[f"{kill.how} {kill.replica}: process exit"] = (
            f"code {kill.exit_code}, {(kill.exited_at or 0) - kill.at:.2f} s after the signal"
        )
        FIGURES[f"{kill.how} {kill.replica}: new process"] = (
            f"ready {(kill.ready_at or 0) - (kill.restarted_at or 0):.2f} s after its start, "
            + (
                f"marked up {kill.up_at - (kill.ready_at or 0):.2f} s after ready"
                if kill.up_at
                else "NOT marked up"
            )
        )
        served = [
            line
            for line in proxied
            if line.server == kill.replica and line.accepted > (kill.up_at or load_end)
        ]
        if not kill.down_at:
            problems.append(f"haproxy did not mark {kill.replica} down after {kill.how}")
        if not kill.up_at:
            problems.append(f"haproxy did not mark the new {kill.replica} up")
        if not any(line.status == 200 for line in served):
            problems.append(f"the new {kill.replica} served no request after it was marked up")
    FIGURES["haproxy's answers (status, termination state)"] = ", ".join(
        f"{n} x {status} {term}"
        for (status, term), n in sorted(Counter((x.status, x.termination) for x in proxied).items())
    ) + "".join(
        f"; {x.server}: {x.status} {x.termination} {x.method} {x.uri} id {x.request_id}"
        for x in proxied
        if x.server.startswith("<")
    )
    FIGURES["requests per replica (haproxy's log)"] = ", ".join(
        f"{name} {n}" for name, n in sorted(Counter(line.server for line in proxied).items())
    )
    FIGURES["state changes seen on haproxy's socket"] = "; ".join(
        f"+{stamp - first_kill:.2f} s {name} {status}"
        for stamp, name, status in state_changes
        if stamp >= first_kill - 1
    )
    first = kills[0]
    FIGURES["benchmark job of the SIGKILLed replica"] = (
        f"interrupted {interrupted_at - first.at:.1f} s after the kill"
        if interrupted_at
        else "NOT interrupted"
    )

    chunk_kill: Kill = chunked["kill"]
    ran_by = {row["index"]: _replica_of(row["worker"], replicas) for row in chunk_rows}
    per_replica = Counter(ran_by.values())
    rerun = [row for row in chunk_rows if row["attempts"] > 1]
    FIGURES["chunked benchmark (server-side set)"] = (
        f"{len(chunk_rows)} chunks of {CHUNK_IMAGES} images x {len(CHUNK_MODELS)} models, posted "
        f"to {chunked['taker']}; ran on "
        + ", ".join(f"{name} {n}" for name, n in sorted(per_replica.items()))
        + "; chunk: replica (attempts, its last run from/to seconds after the post) "
        + ", ".join(
            f"{row['index']}: {ran_by[row['index']]} ({row['attempts']}, "
            f"{(row['started'] or 0) - chunked['posted']:.1f}-"
            f"{(row['finished'] or 0) - chunked['posted']:.1f})"
            for row in chunk_rows
        )
    )
    FIGURES["chunked benchmark: the killed replica"] = (
        f"{chunk_kill.replica} killed while running chunk(s) {chunk_kill.held}, "
        f"{chunk_kill.at - chunked['posted']:.1f} s after the post; "
        + (
            f"run done {chunked_done_at - chunk_kill.at:.1f} s after the kill "
            f"({chunked_done_at - chunked['posted']:.1f} s after the post)"
            if chunked_done_at
            else "run NOT ended"
        )
    )
    chunked_view = views[chunked["id"]]["balancer"]
    if chunked_view.get("status") != "done":
        problems.append(f"the chunked run did not end done: {chunked_view}")
    elif chunked_view["results"]["entries"][0]["timing"]["n_images"] != 12:
        problems.append(f"the chunked run's results miss images: {chunked_view['results']}")
    if len({name.split("#")[0] for name in per_replica}) < 2:
        problems.append(f"the chunks ran on one replica only: {ran_by}")
    for index in chunk_kill.held:
        row = chunk_rows[index]
        if row["attempts"] < 2 or int(str(row["worker"]).split(":")[1]) == chunked["pid"]:
            problems.append(f"chunk {index} held by the killed {chunk_kill.replica}: {row}")
    if not rerun:
        problems.append(f"no chunk was run again after the kill: {chunk_rows}")

    if bad:
        problems.append(f"{len(bad)} answers neither 200 nor 503+Retry-After: {bad[:5]}")
    if proxy_errors:
        problems.append(
            f"haproxy logged {len(proxy_errors)} x 500/502/504: "
            + "; ".join(
                f"{line.status} {line.server} {line.termination} {line.uri}"
                for line in proxy_errors[:5]
            )
        )
    unmatched = [r for r in records if r["status"] and r["echoed_id"] != r["request_id"]]
    if unmatched:
        problems.append(f"{len(unmatched)} answers without the request's X-Request-ID")
    lost = {r["request_id"] for r in records} - {line.request_id for line in proxy_log}
    if lost:
        problems.append(f"{len(lost)} requests the clients sent never reached haproxy's log")
    for kill in kills:
        by_replica = views[kill.run_id]
        statuses = {name: view.get("status") for name, view in by_replica.items()}
        final = by_replica["balancer"]
        FIGURES[f"{kill.how} {kill.replica}: its benchmark job"] = (
            f"read by another replica once the process was gone: {kill.run_after_exit}; "
            f"at the end: {final.get('status')} ({final.get('error') or 'no error'})"
        )
        # Killed, the job can only end interrupted (once its lease lapsed). Stopped gracefully,
        # it is interrupted at the shutdown, unless it finished while the open requests drained.
        # The chunked run's killed chunk is run again elsewhere: it ends done.
        allowed = {
            "SIGKILL": {"interrupted"},
            "SIGKILL mid-chunk": {"done"},
            "SIGTERM": {"interrupted", "done"},
        }[kill.how]
        if len(set(statuses.values())) != 1 or not set(statuses.values()) <= allowed:
            problems.append(f"benchmark {kill.run_id} ({kill.how} {kill.replica}): {statuses}")
        if kill.how.startswith("SIGKILL") and (final.get("finished") or "") < _iso(kill.at):
            problems.append(f"benchmark {kill.run_id} finished before the kill: {final}")
    for run_id, by_replica in views.items():
        if len({json.dumps(v, sort_keys=True) for v in by_replica.values()}) != 1:
            problems.append(f"benchmark {run_id} reads differently by replica: {by_replica}")
    tracebacks = [
        f"{replica.name}: {line[:300]}"
        for replica in replicas.values()
        for path in sorted(replica.folder.glob(f"{replica.name}-*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if '"status": 500' in line or "Traceback" in line
    ]
    if tracebacks:
        problems.append(f"service 500s or tracebacks: {tracebacks[:5]}")
    for name, value in FIGURES.items():
        print(f"{name}: {value}")
    assert not problems, "\n".join(problems + [r.logs() for r in replicas.values()])


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only: no proxy variable may send the test's requests elsewhere."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
