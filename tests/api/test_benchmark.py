"""POST /v1/benchmark: zip uploads, jobs, persistence, and agreement with the core's evaluate."""

from __future__ import annotations

import threading
import time

import pytest

from service.api.settings import Settings
from service.benchmark import jobs
from service.benchmark.evaluate import evaluate, summarise
from service.datasets import read_set
from service.models.threshold import ThresholdBackend
from tests.api.conftest import zip_folder

QU_LAYOUT = "files/covid-qu-ex-layout"


def run_zip(client, folder, prefix="", **params):
    data = zip_folder(folder, prefix)
    return client.post("/v1/benchmark", params=params, files={"file": ("set.zip", data)})


def test_covid_qu_ex_zip_gives_results_split_by_covid(client, data_dir):
    response = run_zip(client, data_dir / QU_LAYOUT, models=["threshold", "unet"])
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "done" and run["n_images"] == 12
    entries = {e["requested"]: e for e in run["results"]["entries"]}
    assert set(entries) == {"threshold", "unet"}
    summary = entries["threshold"]["summary"]
    assert summary["all"]["n_images"] == 12
    assert summary["covid"]["n_images"] == 4 and summary["non_covid"]["n_images"] == 8
    # infection Dice only over images with infection; the rest give a false-positive rate
    assert summary["covid"]["infection"]["dice"]["n"] == 4
    assert summary["non_covid"]["infection"]["dice"]["n"] == 0
    assert summary["non_covid"]["infection_false_positive_rate"]["n"] == 8
    assert len(entries["threshold"]["rows"]) == 12


def test_benchmark_equals_core_evaluate(client, data_dir):
    labelled = read_set(data_dir / QU_LAYOUT)
    expected = summarise(evaluate(ThresholdBackend("cxr"), labelled.samples)).to_dict()
    run = run_zip(client, data_dir / QU_LAYOUT, "wrapped/", models=["threshold"]).json()
    got = run["results"]["entries"][0]["summary"]
    for group in ("all", "covid", "non_covid"):
        for structure in ("lung", "infection"):
            for metric in ("dice", "iou", "accuracy", "loss"):
                want = expected[group][structure][metric]["mean"]
                assert got[group][structure][metric]["mean"] == pytest.approx(want, abs=1e-12)


def test_large_set_runs_as_job_and_survives_restart(make_client, data_dir, tmp_path):
    client = make_client(benchmark_sync_max_images=0)
    response = run_zip(client, data_dir / QU_LAYOUT, models=["threshold"])
    assert response.status_code == 202
    run_id = response.json()["id"]
    assert response.headers["location"] == f"/v1/benchmark/{run_id}"
    deadline = time.monotonic() + 120
    while (status := client.get(f"/v1/benchmark/{run_id}").json()["status"]) in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status == "done"
    restarted = make_client()  # same database file, new process state
    again = restarted.get(f"/v1/benchmark/{run_id}").json()
    assert again["status"] == "done" and again["results"]["entries"]
    listed = restarted.get("/v1/benchmark").json()["runs"]
    assert run_id in [r["id"] for r in listed] and listed[0]["results"] is None


def test_server_side_set_by_name(make_client, data_dir):
    client = make_client(benchmark_sets={"qu": data_dir / QU_LAYOUT})
    assert client.get("/v1/benchmark/sets").json() == ["qu"]
    run = client.post("/v1/benchmark", params={"set_name": "qu", "models": "threshold"}).json()
    assert run["status"] == "done" and run["set_name"] == "qu"


def test_on_postgresql_replicas_share_a_server_side_sets_chunks(
    postgres_url, make_client, data_dir
):
    """Two apps on one PostgreSQL store (LUNGSEG_JOB_QUEUE=auto: the shared queue): a run posted
    to one is read done, identically, from the other; its chunks ran as queue jobs."""
    settings = {
        "database_url": postgres_url,
        "benchmark_sets": {"qu": data_dir / QU_LAYOUT},
        "benchmark_chunk_images": 4,
        "job_heartbeat_s": 0.5,
        "job_lease_s": 2.0,
    }
    first, second = make_client(**settings), make_client(**settings)
    assert first.app.state.executor.travels(jobs.Job(jobs.KIND, "x"))
    run = first.post("/v1/benchmark", params={"set_name": "qu", "models": "threshold"}).json()
    assert run["status"] == "done", run
    assert second.get(f"/v1/benchmark/{run['id']}").json() == run
    chunks = second.app.state.runner.store.chunks(run["id"])
    assert [c["status"] for c in chunks] == ["done"] * 3
    owners = {first.app.state.runner.store.owner, second.app.state.runner.store.owner}
    assert {c["worker"] for c in chunks} <= owners


def test_a_shared_queue_asked_of_sqlite_stops_the_start(make_client):
    with pytest.raises(ValueError, match="LUNGSEG_JOB_QUEUE=postgres"):
        make_client(job_queue="postgres")
    with pytest.raises(ValueError, match="twice"):
        Settings(job_heartbeat_s=10, job_lease_s=15)


def test_a_full_benchmark_queue_answers_503_with_retry_after(make_client, data_dir, monkeypatch):
    release = threading.Event()

    def slow_scores(*_args: object) -> dict:
        release.wait(30)
        return {"set": "set", "entries": []}

    monkeypatch.setattr(jobs, "score_models", slow_scores)
    client = make_client(benchmark_sync_max_images=0, benchmark_max_pending=1)
    assert run_zip(client, data_dir / QU_LAYOUT, models=["threshold"]).status_code == 202
    refused = run_zip(client, data_dir / QU_LAYOUT, models=["threshold"])
    release.set()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "30"
    assert "LUNGSEG_BENCHMARK_MAX_PENDING" in refused.json()["detail"]
