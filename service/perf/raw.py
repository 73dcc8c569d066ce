"""Raw ONNX Runtime throughput of one model file, in a process of its own (for its peak RSS).

``python -m service.perf.raw <model dir> [--seconds S] [--batch B] [--threads T] [--variant V]``
prints one JSON object: img/s, latency percentiles (ms) and the process's peak RSS (MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.models.card import read_card


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99 of latencies in ms (0.0 for no samples)."""
    if not samples_ms:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    arr = np.asarray(samples_ms)
    return {f"p{q}": float(np.percentile(arr, q)) for q in (50, 95, 99)}


def measure(
    directory: Path, seconds: float, batch: int, threads: int, onnx_file: str = "model.onnx"
) -> dict[str, Any]:
    """Run the model on random inputs at its card's size for ``seconds`` after a warm-up."""
    card = read_card(directory)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(directory / onnx_file), options, providers=["CPUExecutionProvider"]
    )
    height, width = card.preprocess.size
    x = np.random.default_rng(0).standard_normal((batch, 1, height, width)).astype(np.float32)
    feed = {card.input.name: x}
    for _ in range(3):
        session.run(None, feed)
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(latencies) < 5:
        begin = time.perf_counter()
        session.run(None, feed)
        latencies.append((time.perf_counter() - begin) * 1000)
    elapsed = time.perf_counter() - start
    return {
        "model": card.name,
        "file": onnx_file,
        "size": [height, width],
        "batch": batch,
        "threads": threads,
        "runs": len(latencies),
        "img_per_s": batch * len(latencies) / elapsed,
        "latency_ms": percentiles(latencies),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--file", default="model.onnx", help="ONNX file inside the model dir")
    args = parser.parse_args(argv)
    result = measure(args.model_dir, args.seconds, args.batch, args.threads, args.file)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
