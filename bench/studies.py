"""Latency per study: real files, one at a time, over HTTP, with the service's own stage times.

The load runs of ``make bench`` use one small PNG; a hospital sends full-size radiographs and CT
slices, often JPEG 2000 compressed, where decoding, resizing and encoding the masks at the
input's size weigh more than the network. Each file is posted ``repeats`` times in a row
(after one warm-up); the wall time is the client's, the stage times are the median of the
``timings_ms`` the service reports.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.load import multipart_body
from bench.raw import percentiles

REPO_ROOT = Path(__file__).resolve().parents[1]

FIXTURES = REPO_ROOT / "tests" / "fixtures"
DATA_FILES = ("files/dicom/RG1_UNCR.dcm", "files/dicom/RG1_J2KR.dcm", "files/dicom/693_J2KR.dcm")
STAGES = ("decode", "preprocess", "infer", "postprocess", "encode")


def default_studies() -> list[Path]:
    """The PNG and CT fixtures, plus real CR and CT DICOM from ``$LUNGSEG_DATA_DIR`` (default
    ``../shared/data``) when that folder is there."""
    data = Path(os.environ.get("LUNGSEG_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    found = [data / name for name in DATA_FILES if (data / name).is_file()]
    return [FIXTURES / "cxr_covid_1902.png", FIXTURES / "CT_small.dcm", *found]


def _post(
    connection: http.client.HTTPConnection, content_type: str, body: bytes
) -> tuple[float, dict[str, Any]]:
    begin = time.perf_counter()
    connection.request("POST", "/v1/segment", body, {"Content-Type": content_type})
    response = connection.getresponse()
    body = response.read()
    elapsed_ms = (time.perf_counter() - begin) * 1000
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")
    return elapsed_ms, json.loads(body)


def measure_study(host: str, port: int, path: Path, repeats: int) -> dict[str, Any]:
    """Post ``path`` once to warm up, then ``repeats`` times; summarise wall and stage times."""
    content_type, body = multipart_body(path.name, path.read_bytes())
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        _, first = _post(connection, content_type, body)
        runs = [_post(connection, content_type, body) for _ in range(repeats)]
    finally:
        connection.close()
    return {
        "file": path.name,
        "kib": path.stat().st_size / 1024,
        "size": [first["height"], first["width"]],
        "frames": first["n_frames"],
        "model": first["model"]["name"],
        "latency_ms": percentiles([ms for ms, _ in runs]),
        "stage_p50_ms": {
            stage: float(np.median([body["timings_ms"].get(stage) or 0.0 for _, body in runs]))
            for stage in STAGES
        },
    }
