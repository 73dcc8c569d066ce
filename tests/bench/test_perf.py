"""The benchmark's own parts: the load generator, the report's efficiency, provider agreement."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.agree import check
from bench.inproc import measure as measure_inproc
from bench.load import multipart_request, run_load_procs
from bench.report import efficiency
from bench.serve import running_service
from bench.studies import measure_study
from service.imaging import decode
from tests.conftest import REPO_ROOT

ROOT = REPO_ROOT


class _Handler(socketserver.StreamRequestHandler):
    """Keep-alive HTTP: every third request answers 503, the others 200."""

    count = 0
    lock = threading.Lock()

    def handle(self) -> None:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                byte = self.rfile.read(1)
                if not byte:
                    return
                head += byte
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            self.rfile.read(length)
            with _Handler.lock:
                _Handler.count += 1
                status = b"503 Busy" if _Handler.count % 3 == 0 else b"200 OK"
            self.wfile.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    _Handler.count = 0
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler) as srv:
        srv.daemon_threads = True
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        yield srv.server_address[0], srv.server_address[1]
        srv.shutdown()


@pytest.mark.parametrize("procs", [1, 2])
def test_load_spends_the_request_budget_and_counts_each_answer(
    server: tuple[str, int], procs: int
) -> None:
    host, port = server
    request = multipart_request(host, port, "/v1/segment", "x.png", b"\x89PNG")
    result = run_load_procs(host, port, request, 4, 30, 30.0, procs)
    summary = result.summary()
    assert summary["requests"] == 30
    assert summary["errors"] == 0
    # every third request the server saw was a 503 (30 requests: exactly 10)
    assert summary["rejected_503"] == 10
    assert summary["ok"] == 20
    assert summary["concurrency"] == 4


def test_efficiency_divides_c4_by_the_served_file_at_batch_one() -> None:
    report = {
        "raw": [
            {"model": "unet-cxr", "file": "model.int8.onnx", "batch": 128, "img_per_s": 900.0},
            {"model": "unet-cxr", "file": "model.int8.onnx", "batch": 1, "img_per_s": 100.0},
            {"model": "unet-cxr", "file": "model.onnx", "batch": 1, "img_per_s": 50.0},
        ],
        "service": {
            "served": {"unet-cxr": "int8"},
            "load": [{"concurrency": 1, "req_per_s": 40.0}, {"concurrency": 4, "req_per_s": 85.0}],
        },
        "inproc": [{"clients": 1, "req_per_s": 60.0}, {"clients": 4, "req_per_s": 95.0}],
    }
    assert efficiency(report) == pytest.approx(0.85)
    assert efficiency(report, http=False) == pytest.approx(0.95)


def test_variants_agree_with_fp32_on_the_cpu() -> None:
    image = decode((ROOT / "tests/fixtures/cxr_covid_1902.png").read_bytes()).frame(0)
    frames = {"cxr__display": np.stack([image, image[:, ::-1]]).astype(np.float32)}
    rows = check(ROOT / "models", frames, batch=2)
    assert {(r["model"], r["precision"]) for r in rows} == {
        ("unet-cxr", "int8"),
        ("unet-cxr", "fp16"),
        ("cnn-cxr", "int8"),
        ("cnn-cxr", "fp16"),
    }
    for row in rows:
        assert row["n_images"] == 2
        assert row["provider"] == "CPUExecutionProvider"
        assert row["lung_dice_vs_cpu_fp32"] >= 0.98


@pytest.mark.parametrize("window", ["0", "5"])
def test_inproc_counts_every_request_and_each_batch(
    monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    monkeypatch.setenv("LUNGSEG_MODELS_DIR", str(ROOT / "models"))
    monkeypatch.setenv("LUNGSEG_PROVIDERS", "cpu")
    monkeypatch.setenv("LUNGSEG_BATCH_WINDOW_MS", window)
    monkeypatch.setenv("LUNGSEG_MAX_BATCH", "4")
    result = measure_inproc(ROOT / "tests/fixtures/cxr_covid_1902.png", clients=3, seconds=0.5)
    assert result["model"] == "unet-cxr"
    assert result["provider"] == "CPUExecutionProvider"
    assert result["requests"] > 0
    assert set(result["stage_p50_ms"]) == {"preprocess", "infer", "postprocess", "total"}
    if window == "0":
        assert result["batches"] == {}
    else:  # every request ran in exactly one batch of at most 4
        assert max(int(size) for size in result["batches"]) <= 4
        assert sum(int(size) * n for size, n in result["batches"].items()) == result["requests"]


def test_latency_per_study_reports_the_services_own_stages(tmp_path: Path) -> None:
    env = {
        "LUNGSEG_MODELS_DIR": str(tmp_path / "no-models"),  # the threshold segmenter
        "LUNGSEG_DATABASE_URL": f"sqlite:///{tmp_path / 'runs.db'}",
    }
    with running_service(env, tmp_path / "service.log") as svc:
        study = measure_study(svc.host, svc.port, ROOT / "tests/fixtures/CT_small.dcm", 3)
    assert (study["file"], study["size"], study["frames"]) == ("CT_small.dcm", [128, 128], 1)
    assert study["model"] == "threshold-ct"
    assert list(study["stage_p50_ms"]) == ["decode", "preprocess", "infer", "postprocess", "encode"]
    # each request's wall time holds each of its stages, so the medians keep that order
    assert 0 < study["stage_p50_ms"]["decode"] < study["latency_ms"]["p50"]
    assert study["stage_p50_ms"]["infer"] < study["latency_ms"]["p50"]
