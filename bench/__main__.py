"""``python -m bench`` (``make bench``): measure and print; write JSON and history."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import onnxruntime as ort

from bench.load import multipart_request, run_load_procs
from bench.report import print_report
from bench.serve import running_service
from bench.studies import default_studies, measure_study
from bench.volume import volume_runs
from service.cpus import usable_cores
from service.models.registry import latest_versions

REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("lungseg.perf")
DEFAULT_IMAGE = REPO_ROOT / "tests" / "fixtures" / "cxr_covid_1902.png"


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((x.split(":", 1)[1].strip() for x in text.splitlines() if "model name" in x), "")


def _raw(directory: Path, file: str, seconds: float, threads: int, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.raw", str(directory), "--file", file]
    cmd += ["--seconds", str(seconds), "--threads", str(threads), *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))


def gpu_name() -> str | None:
    """The GPU(s) nvidia-smi lists, or ``None`` without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return ", ".join(line.strip() for line in out.splitlines() if line.strip()) or None


def raw_runs(models: Path, seconds: float, threads: int) -> list[dict[str, Any]]:
    """Raw ONNX Runtime figures of every model file (fp32 and variants), one process each."""
    return [
        _raw(directory, onnx.name, seconds, threads)
        for directory in latest_versions(models).values()
        for onnx in sorted(directory.glob("model*.onnx"))
    ]


def cuda_raw_runs(models: Path, seconds: float, batches: list[int]) -> list[dict[str, Any]]:
    """CUDA figures: fp32 and fp16 of each model at each batch size (IO binding, cuDNN's
    exhaustive search: one fixed shape per run), then the CXR U-Net's fp16 at the largest batch
    with the service's heuristic search, plain, with NHWC layout and as a CUDA graph."""
    search = "cudnn_conv_algo_search=EXHAUSTIVE"
    results = []
    for name, directory in latest_versions(models).items():
        for file in ("model.onnx", "model.fp16.onnx"):
            for batch in batches:
                extra = ["--provider", "cuda", "--batch", str(batch), "--cuda-option", search]
                results.append(_raw(directory, file, seconds, 1, *extra))
            if name != "unet-cxr" or file != "model.fp16.onnx":
                continue
            for option in ([], ["prefer_nhwc=1"], ["enable_cuda_graph=1"]):
                extra = ["--provider", "cuda", "--batch", str(batches[-1])]
                extra += ["--cuda-option", "cudnn_conv_algo_search=HEURISTIC", *option]
                try:
                    results.append(_raw(directory, file, seconds, 1, *extra))
                except subprocess.CalledProcessError as err:
                    log.warning("%s with %s failed: %s", name, option, err.stderr[-400:])
    return results


def inproc_runs(args: argparse.Namespace, env: dict[str, str]) -> list[dict[str, Any]]:
    """The service's path without HTTP (``bench.inproc``) at each concurrency; on CUDA
    also with cuDNN's exhaustive search at the highest, to show what a batch-shape change costs."""
    runs = [(c, env) for c in args.concurrency]
    if args.provider == "cuda":
        exhaustive = json.dumps({"cudnn_conv_algo_search": "EXHAUSTIVE"})
        runs.append((max(args.concurrency), {**env, "LUNGSEG_CUDA_OPTIONS": exhaustive}))
    results = []
    for clients, run_env in runs:
        cmd = [sys.executable, "-m", "bench.inproc", "--image", str(args.image)]
        cmd += ["--clients", str(clients), "--seconds", str(args.raw_seconds), "--env"]
        cmd += [f"{k}={v}" for k, v in run_env.items()]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(dict(json.loads(out)))
    return results


def served_precisions(host: str, port: int) -> dict[str, str]:
    """``{model name: precision}`` the running service reports in ``/v1/models``."""
    with urllib.request.urlopen(f"http://{host}:{port}/v1/models", timeout=10) as response:
        models = json.loads(response.read())["models"]
    return {m["name"]: m["precision"] for m in models}


def service_runs(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Start-up, load at each concurrency, overload and recovery, worker RSS."""
    payload = args.image.read_bytes()
    out: dict[str, Any] = {"env": env, "image": args.image.name, "load": []}
    with running_service(env, args.out / "service.log") as svc:
        out["startup_s"] = svc.startup_s
        out["served"] = served_precisions(svc.host, svc.port)
        request = multipart_request(svc.host, svc.port, "/v1/segment", args.image.name, payload)

        def load(concurrency: int, requests: int, seconds: float) -> dict[str, Any]:
            procs = min(args.load_procs, concurrency)
            result = run_load_procs(
                svc.host, svc.port, request, concurrency, requests, seconds, procs
            )
            return result.summary()

        load(2, 20, 10)  # warm-up
        out["studies"] = [
            measure_study(svc.host, svc.port, path, args.study_repeats) for path in args.studies
        ]
        for concurrency in args.concurrency:
            out["load"].append(load(concurrency, args.requests, args.seconds))
        out["overload"] = load(args.overload, args.requests * 2, args.seconds)
        out["recovery"] = load(1, 20, 10)
        out["worker_rss_mib"] = svc.worker_rss_mib()
    return out


QUICK_VOLUMES = ((100, 3.0),)
FULL_VOLUMES = ((300, 1.0), (600, 0.5))


def auth_costs() -> dict[str, Any]:
    """Microseconds per credential check (``python -m service.api.auth bench``, a process of
    its own: the tools never import service.api): an API key against a file of 10 clients,
    authentication off, RS256 and ES256 tokens with their keys cached."""
    cmd = [sys.executable, "-m", "service.api.auth", "bench"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO_ROOT)
    costs: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    log.info("auth: %s", ", ".join(f"{k} {v:.1f}" for k, v in costs.items()))
    return costs


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="upload for the load")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results")
    parser.add_argument("--quick", action="store_true", help="short runs (CI): no targets read")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--overload", type=int, default=64, help="clients of the overload run")
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE for the service")
    parser.add_argument("--seconds", type=float, help="per load level (default 20, quick 3)")
    parser.add_argument("--requests", type=int, help="per load level (default 5000, quick 60)")
    parser.add_argument("--raw-seconds", type=float, help="per raw run (default 8, quick 1)")
    parser.add_argument(
        "--load-procs",
        type=int,
        default=0,
        help="load generator processes; 0 = 1 on a CPU, a quarter of the cores with CUDA",
    )
    parser.add_argument(
        "--provider",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="raw runs: CPU (all files, batch 1) or CUDA (fp32/fp16, batched); auto = CUDA "
        "when ONNX Runtime has it",
    )
    parser.add_argument(
        "--studies",
        type=Path,
        nargs="*",
        help="files posted one at a time for the latency per study (default: the fixtures and, "
        "when $LUNGSEG_DATA_DIR or ../shared/data has them, real CR and CT DICOM)",
    )
    parser.add_argument("--study-repeats", type=int, help="posts per study (default 10, quick 2)")
    parser.add_argument("--cuda-batches", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--skip-raw", action="store_true", help="no raw ONNX Runtime runs")
    parser.add_argument("--skip-inproc", action="store_true", help="no in-process runs")
    parser.add_argument(
        "--skip-volume", action="store_true", help="no CT volume runs (bench/volume.py)"
    )
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (3.0 if args.quick else 20.0)
    args.requests = args.requests or (60 if args.quick else 5000)
    args.raw_seconds = args.raw_seconds or (1.0 if args.quick else 8.0)
    args.study_repeats = args.study_repeats or (2 if args.quick else 10)
    args.studies = default_studies() if args.studies is None else args.studies
    if args.provider == "auto":
        args.provider = (
            "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        )
    if not args.load_procs:
        cores = usable_cores()
        args.load_procs = max(1, cores // 4) if args.provider == "cuda" else 1
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = usable_cores()
    env = dict(item.split("=", 1) for item in args.env)
    env.setdefault("LUNGSEG_MODELS_DIR", str(args.models))
    env.setdefault("LUNGSEG_DATABASE_URL", f"sqlite:///{args.out / 'bench.db'}")
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {
            "cpu": cpu_name(),
            "cores": threads,
            "gpu": gpu_name(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers(),
        },
        "raw": (
            []
            if args.skip_raw
            else cuda_raw_runs(args.models, args.raw_seconds, args.cuda_batches)
            if args.provider == "cuda"
            else raw_runs(args.models, args.raw_seconds, threads)
        ),
    }
    report["inproc"] = [] if args.skip_inproc else inproc_runs(args, env)
    sizes = QUICK_VOLUMES if args.quick else FULL_VOLUMES
    report["volume"] = [] if args.skip_volume else volume_runs(args.models, sizes)
    report["auth"] = auth_costs()
    # kept even if the service part fails
    (args.out / "raw-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    report["service"] = service_runs(args, env)
    print_report(report)
    stamp = report["when"].replace(":", "").replace("-", "").replace("+0000", "Z")
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    with (args.out / "history.jsonl").open("a") as history:
        history.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
