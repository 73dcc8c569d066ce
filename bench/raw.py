"""Raw ONNX Runtime throughput of one model file, in a process of its own (for its peak RSS).

``python -m bench.raw <model dir> [--file F] [--seconds S] [--batch B] [--threads T]
[--provider cpu|cuda] [--cuda-option K=V ...]`` prints one JSON object: img/s,
latency percentiles (ms) and the process's peak RSS (MiB).

On CUDA the input is placed on the GPU once and the output bound there (IO binding), so the
figure is the network's own throughput, the ceiling a service can approach;
``--cuda-option enable_cuda_graph=1`` replays the run as a CUDA graph (the buffers are fixed).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.cpus import usable_cores
from service.models.card import read_card
from service.models.onnx_backend import CPU, CUDA, choose_providers


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99 of latencies in ms (0.0 for no samples)."""
    if not samples_ms:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    arr = np.asarray(samples_ms)
    return {f"p{q}": float(np.percentile(arr, q)) for q in (50, 95, 99)}


def _cpu_runner(session: ort.InferenceSession, name: str, x: np.ndarray) -> Callable[[], None]:
    feed = {name: x}
    return lambda: session.run(None, feed) and None


def _cuda_runner(
    session: ort.InferenceSession, name: str, output: str, x: np.ndarray
) -> Callable[[], None]:
    """IO binding with the input and output resident on the GPU (synchronous runs)."""
    binding = session.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    shape = [x.shape[0], 2, *x.shape[2:]]
    binding.bind_ortvalue_output(
        output, ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cuda", 0)
    )
    return lambda: session.run_with_iobinding(binding)


def measure(
    directory: Path,
    seconds: float,
    batch: int,
    threads: int,
    onnx_file: str = "model.onnx",
    provider: str = "cpu",
    cuda_options: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the model on random inputs at its card's size for ``seconds`` after a warm-up."""
    card = read_card(directory)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers: list[Any] = [CPU]
    if provider == "cuda":
        choose_providers("cuda")  # the service's own check (and CUDA/cuDNN preload)
        providers = [(CUDA, cuda_options or {})]
    session = ort.InferenceSession(str(directory / onnx_file), options, providers=providers)
    height, width = card.preprocess.size
    x = np.random.default_rng(0).standard_normal((batch, 1, height, width)).astype(np.float32)
    run = (
        _cuda_runner(session, card.input.name, card.output.name, x)
        if provider == "cuda"
        else _cpu_runner(session, card.input.name, x)
    )
    for _ in range(3):
        run()
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(latencies) < 5:
        begin = time.perf_counter()
        run()
        latencies.append((time.perf_counter() - begin) * 1000)
    elapsed = time.perf_counter() - start
    return {
        "model": card.name,
        "file": onnx_file,
        "provider": session.get_providers()[0],
        "options": cuda_options or {},
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
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--file", default="model.onnx", help="ONNX file inside the model dir")
    parser.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--cuda-option", nargs="*", default=[], help="KEY=VALUE (CUDA EP)")
    args = parser.parse_args(argv)
    cuda_options = dict(item.split("=", 1) for item in args.cuda_option)
    result = measure(
        args.model_dir,
        args.seconds,
        args.batch,
        args.threads,
        args.file,
        args.provider,
        cuda_options,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
