"""The service with its benchmark store in PostgreSQL: a run stored, read back by a restarted
app, and a crashed worker's run recorded ``interrupted`` when the API reads it."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import update

from service.benchmark.store import LOST, Run, RunStore, now
from tests.api import conftest as api_conftest

if hasattr(api_conftest, "make_client"):  # the HTTP tests' app factory, where it is theirs only
    make_client = api_conftest.make_client
QU_LAYOUT = "files/covid-qu-ex-layout"


def test_a_benchmark_run_stored_in_postgresql(postgres_url, make_client, data_dir):
    # postgres_url first: its database is dropped after the apps have stopped
    client = make_client(
        database_url=postgres_url,
        benchmark_sets={"qu": data_dir / QU_LAYOUT},
        benchmark_sync_max_images=0,
    )
    response = client.post("/v1/benchmark", params={"set_name": "qu", "models": "threshold"})
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while (run := client.get(f"/v1/benchmark/{run_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert run["status"] == "done" and run["n_images"] == 12
    assert run["results"]["entries"][0]["summary"]["all"]["n_images"] == 12

    restarted = make_client(database_url=postgres_url)  # another worker on the same database
    assert restarted.get(f"/v1/benchmark/{run_id}").json() == run
    listed = restarted.get("/v1/benchmark").json()["runs"]
    assert [r["id"] for r in listed] == [run_id] and listed[0]["results"] is None
    assert [p["id"] for p in restarted.get("/v1/benchmark/history").json()["runs"]] == [run_id]

    dead = RunStore(postgres_url, owner="crashed")  # a worker that died mid-run
    dead.create("lost", "qu", ["threshold"], 12)
    dead.set_status("lost", "running")
    with dead.engine.begin() as db:
        old = now() - dt.timedelta(minutes=2)
        db.execute(update(Run).where(Run.id == "lost").values(heartbeat=old))
    shown = restarted.get("/v1/benchmark/lost").json()
    assert (shown["status"], shown["error"]) == ("interrupted", LOST) and shown["finished"]
    assert RunStore(postgres_url, stale_after_s=1e9).get("lost") == shown  # the row itself
    dead.close()
