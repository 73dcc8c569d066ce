"""Red team, findings 4 and 6 of issue 11: a benchmark upload is refused before it is read or
extracted when the worker's queue is full, extraction stays within a disk quota, and no
extracted patient image is left on disk after a run, a refusal, a shutdown or a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.serve import free_port, wait_ready
from service.benchmark.archive import PREFIX, ExtractionArea
from service.errors import BusyError
from tests.api.conftest import zip_folder
from tests.security.test_sets import labelled_zip

QU_LAYOUT = "files/covid-qu-ex-layout"


def extracted(parent: Path) -> list[Path]:
    """Files under every worker's extraction folder in ``parent``."""
    return [p for folder in parent.glob(f"{PREFIX}*") for p in folder.rglob("*") if p.is_file()]


def test_a_full_queue_refuses_before_reading_or_extracting(make_client, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    client = make_client(benchmark_max_pending=1)
    place = client.app.state.runner.reserve()  # the one place is taken
    try:
        data = labelled_zip("a,images/a.png,p1,normal,no,CXR,t,t\n")
        response = client.post("/v1/benchmark", files={"file": ("s.zip", data)})
        assert response.status_code == 503 and "retry-after" in response.headers
        assert extracted(tmp_path) == []
    finally:
        place.release()
    assert client.post("/v1/benchmark", files={"file": ("s.zip", data)}).status_code == 200
    assert extracted(tmp_path) == []  # removed with its run


def test_the_disk_quota_bounds_what_a_worker_extracts(tmp_path):
    area = ExtractionArea(quota_bytes=5000, parent=tmp_path)
    big = labelled_zip("a,images/a.png,p1,normal,no,CXR,t,t\n", {"pad.bin": os.urandom(8000)})
    with pytest.raises(Exception, match="expands beyond"):
        area.extract(big, max_bytes=10**9, max_files=100)
    assert extracted(tmp_path) == []  # the partial folder is gone
    small = area.extract(labelled_zip("x,images/a.png,p,n,no,CXR,t,t\n"), 10**9, 100)
    (area.root / "filler.bin").write_bytes(b"\0" * 5000)
    with pytest.raises(BusyError, match="disk quota"):
        area.extract(labelled_zip("y,images/a.png,p,n,no,CXR,t,t\n"), 10**9, 100)
    assert small.is_dir()
    area.close()
    assert not area.root.exists()


def test_extraction_folders_are_private(tmp_path):
    area = ExtractionArea(quota_bytes=10**6, parent=tmp_path)
    folder = area.extract(labelled_zip("a,images/a.png,p,n,no,CXR,t,t\n"), 10**6, 10)
    assert (area.root.stat().st_mode & 0o777) == 0o700
    assert (folder.stat().st_mode & 0o777) == 0o700
    area.close()


def _serve(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "LUNGSEG_HOST": "127.0.0.1",
        "LUNGSEG_PORT": str(port),
        "LUNGSEG_DATABASE_URL": f"sqlite:///{tmp_path / 'runs.db'}",
        "LUNGSEG_BENCHMARK_SYNC_MAX_IMAGES": "0",  # every run is a job (202)
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service.api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{port}/readyz", 60)
    return process


def _start_long_run(port: int, data_dir: Path) -> None:
    data = zip_folder(data_dir / QU_LAYOUT)
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/benchmark",
        files={"file": ("qu.zip", data)},
        params={"models": ["unet", "cnn", "threshold"]},
        timeout=60,
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_no_extracted_image_survives_a_shutdown_or_a_crash(tmp_path, data_dir, how):
    port = free_port()
    process = _serve(tmp_path, port)
    try:
        _start_long_run(port, data_dir)
        assert extracted(tmp_path)  # the set is on disk while its run is queued or running
        process.send_signal(how)
        process.wait(timeout=30)
        if how == signal.SIGKILL:
            assert extracted(tmp_path)  # a crash leaves it ...
            process = _serve(tmp_path, port)  # ... and the next start removes it
        assert extracted(tmp_path) == []
    finally:
        process.kill()
        process.wait(timeout=10)


def test_a_failed_run_leaves_nothing_behind(make_client, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    client = make_client()
    bad = labelled_zip("a,images/missing.png,p1,normal,no,CXR,t,t\n")
    assert client.post("/v1/benchmark", files={"file": ("s.zip", bad)}).status_code == 400
    assert extracted(tmp_path) == []


def test_concurrent_uploads_share_the_queue_not_the_disk(make_client, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    client = make_client(benchmark_max_pending=2, benchmark_sync_max_images=0)
    data = labelled_zip("a,images/a.png,p1,normal,no,CXR,t,t\n")
    codes: list[int] = []

    def post() -> None:
        codes.append(client.post("/v1/benchmark", files={"file": ("s.zip", data)}).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(codes) <= {202, 503} and codes.count(202) >= 2
    deadline = time.monotonic() + 20
    while extracted(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert extracted(tmp_path) == []
