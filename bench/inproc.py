"""The service's request path without HTTP: ``Segmenter.segment_image`` from N threads.

``python -m bench.inproc --image F --clients N [--seconds S] [--env KEY=VALUE ...]``
builds the Segmenter a worker would build from the ``LUNGSEG_`` settings (``--env`` adds to
them), decodes the image once and has ``N`` threads segment it back to back for ``S`` seconds.
It prints one JSON object: req/s, latency percentiles (ms), the median of each stage and, for a
micro-batched model, how many batches of each size ran.

Set beside the HTTP figures of ``make bench`` it shows what the web layer costs; on a GPU it
shows whether the batching path stalls by itself (e.g. on a change of batch shape).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.raw import percentiles
from service.cpus import WorkerShare
from service.imaging import decode
from service.models.segmenter import Segmenter, SegmenterConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def _client(
    segmenter: Any, image: Any, deadline: float, latencies: list[float], stages: list[dict]
) -> None:
    while time.perf_counter() < deadline:
        begin = time.perf_counter()
        result = segmenter.segment_image(image)
        latencies.append((time.perf_counter() - begin) * 1000)
        stages.append(result.timings_ms)


def config_from_env(env: Mapping[str, str]) -> SegmenterConfig:
    """The ``SegmenterConfig`` a single worker builds from these LUNGSEG_* variables (the ones
    that shape the inference path; the rest keep the service's defaults)."""
    share = WorkerShare.of(
        1, int(env.get("LUNGSEG_MAX_IN_FLIGHT", 0)), 0, int(env.get("LUNGSEG_INTRA_OP_THREADS", 0))
    )
    window = env.get("LUNGSEG_BATCH_WINDOW_MS")
    cuda = env.get("LUNGSEG_CUDA_OPTIONS")
    return SegmenterConfig(
        models_dir=Path(env.get("LUNGSEG_MODELS_DIR", REPO_ROOT / "models")),
        providers=env.get("LUNGSEG_PROVIDERS", "auto"),
        precision=env.get("LUNGSEG_PRECISION", "auto"),
        intra_op_threads=share.threads_per_inference,
        batch_window_ms=float(window) if window else None,
        max_batch=int(env.get("LUNGSEG_MAX_BATCH", 32)),
        max_inferences=share.in_flight,
        cpu_stages=share.cores,
        cuda_options=json.loads(cuda) if cuda else None,
    )


def measure(image_path: Path, clients: int, seconds: float) -> dict[str, Any]:
    """Run ``clients`` threads for ``seconds`` (after one warm-up call each) and summarise."""
    config = config_from_env(os.environ)
    segmenter = Segmenter(config)
    image = decode(image_path.read_bytes(), max_pixels=config.max_pixels)
    first = segmenter.segment_image(image)
    batcher = segmenter.batched.get(first.model.name)
    if batcher is not None:
        batcher.batch_sizes.clear()
    latencies: list[float] = []
    stages: list[dict[str, float]] = []
    deadline = time.perf_counter() + seconds
    threads = [
        threading.Thread(target=_client, args=(segmenter, image, deadline, latencies, stages))
        for _ in range(clients)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    segmenter.close()
    names = sorted({k for timings in stages for k in timings})
    return {
        "model": first.model.name,
        "provider": first.provider,
        "clients": clients,
        "requests": len(latencies),
        "req_per_s": len(latencies) / elapsed,
        "latency_ms": percentiles(latencies),
        "stage_p50_ms": {k: float(np.median([t.get(k, 0.0) for t in stages])) for k in names},
        "batches": dict(sorted(batcher.batch_sizes.items())) if batcher is not None else {},
        "env": {k: v for k, v in os.environ.items() if k.startswith("LUNGSEG_")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE settings to add")
    args = parser.parse_args(argv)
    os.environ.update(dict(item.split("=", 1) for item in args.env))
    result = measure(args.image, args.clients, args.seconds)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
