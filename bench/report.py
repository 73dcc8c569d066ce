"""The table ``make bench`` prints, and the serving efficiency it derives."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("lungseg.perf")


FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}


def variant(file: str) -> str:
    """``model.int8.onnx`` -> ``int8``; ``model.onnx`` -> ``fp32``."""
    return next((k for k, v in FILES.items() if v == file), file)


def efficiency(report: dict[str, Any], model: str = "unet-cxr", http: bool = True) -> float | None:
    """Service req/s at concurrency 4 / raw img/s of the same model file (batch 1, all cores).

    The file is the variant the service reported serving (``/v1/models`` precision). With
    ``http=False`` the in-process runs stand for the service (the path without the web layer).
    """
    served = FILES.get(report["service"].get("served", {}).get(model, "fp32"), "model.onnx")
    raw = next(
        (
            r
            for r in report["raw"]
            if r["model"] == model and r["file"] == served and r.get("batch", 1) == 1
        ),
        None,
    )
    rows = report["service"]["load"] if http else report.get("inproc", [])
    c4 = next((x for x in rows if x.get("clients", x.get("concurrency")) == 4), None)
    if raw is None or c4 is None or not raw["img_per_s"]:
        return None
    return float(c4["req_per_s"] / raw["img_per_s"])


def _where(raw: dict[str, Any]) -> str:
    """``cpu b1`` / ``cuda b128 nhwc``: provider, batch and the options that change the run."""
    provider = "cuda" if raw.get("provider", "").startswith("CUDA") else "cpu"
    flags = {"prefer_nhwc": "nhwc", "enable_cuda_graph": "graph"}
    options = raw.get("options", {})
    extra = [v for k, v in flags.items() if options.get(k) == "1"]
    if options.get("cudnn_conv_algo_search") == "HEURISTIC":
        extra.insert(0, "heur")
    return " ".join([provider, f"b{raw.get('batch', 1)}", *extra])


def _inproc_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Rows of the in-process runs (the request path without HTTP or decoding)."""
    if not runs:
        return []
    lines = [
        "",
        f"in-process ({runs[0]['model']}, Segmenter.segment_image: no HTTP, no decoding)",
        f"{'clients':<9}{'req/s':>8}{'p50':>8}{'p99':>8}  {'cuDNN search':<13}batches (size x n)",
    ]
    for run in runs:
        options = run.get("env", {}).get("LUNGSEG_CUDA_OPTIONS", "")
        search = "exhaustive" if "EXHAUSTIVE" in options else ""
        batches = " ".join(f"{k}x{v}" for k, v in run.get("batches", {}).items())
        ms = run["latency_ms"]
        row = f"{run['clients']:<9}{run['req_per_s']:>8.1f}{ms['p50']:>8.1f}{ms['p99']:>8.1f}"
        lines.append(f"{row}  {search:<13}{batches}".rstrip())
    return lines


def _study_lines(studies: list[dict[str, Any]]) -> list[str]:
    """Rows of the latency per study (one client, real files)."""
    if not studies:
        return []
    head = f"{'study':<24}{'KiB':>7}{'size':>11}{'model':>10}{'p50':>8}{'p99':>8}"
    lines = ["", "latency per study (1 client, ms; stages: the service's medians)"]
    lines.append(
        head + "".join(f"{stage[:6]:>8}" for stage in ("decode", "pre", "infer", "post", "encode"))
    )
    for s in studies:
        size = "x".join(str(v) for v in s["size"]) + (f"x{s['frames']}" if s["frames"] > 1 else "")
        ms = s["latency_ms"]
        row = f"{s['file'][:23]:<24}{s['kib']:>7.0f}{size:>11}{s['model']:>10}"
        row += f"{ms['p50']:>8.1f}{ms['p99']:>8.1f}"
        lines.append(row + "".join(f"{v:>8.1f}" for v in s["stage_p50_ms"].values()))
    return lines


def print_report(report: dict[str, Any]) -> None:
    machine = report["machine"]
    lines = [
        f"machine: {machine['cpu']} ({machine['cores']} cores)"
        f"{', ' + machine['gpu'] if machine.get('gpu') else ''}, onnxruntime "
        f"{machine['onnxruntime']}, {report['when']}{' (quick)' if report['quick'] else ''}",
        "",
        f"{'raw ONNX Runtime':<44}{'img/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'RSS MiB':>9}",
    ]
    for r in report["raw"]:
        name = f"{r['model']} {variant(r['file'])} {_where(r)}"
        lines.append(
            f"{name:<44}{r['img_per_s']:>9.1f}"
            f"{r['latency_ms']['p50']:>9.1f}{r['latency_ms']['p99']:>9.1f}{r['peak_rss_mib']:>9.0f}"
        )
    lines += _inproc_lines(report.get("inproc", []))
    svc = report["service"]
    served = ", ".join(f"{k} {v}" for k, v in sorted(svc.get("served", {}).items()))
    lines += [
        "",
        f"service (POST /v1/segment, {svc['image']}), start-up {svc['startup_s']:.2f} s",
        f"served: {served}",
    ]
    lines.append(
        f"{'clients':<9}{'req/s':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'ok':>7}{'503':>6}{'err':>6}"
        f"{'503 p50':>9}{'503 p99':>9}"
    )
    for row in [*svc["load"], svc["overload"], svc["recovery"]]:
        ms = row["latency_ms"]
        lines.append(
            f"{row['concurrency']:<9}{row['req_per_s']:>8.1f}{ms['p50']:>8.1f}{ms['p95']:>8.1f}"
            f"{ms['p99']:>8.1f}{row['ok']:>7}{row['rejected_503']:>6}{row['errors']:>6}"
            f"{row['rejected_latency_ms']['p50']:>9.1f}{row['rejected_latency_ms']['p99']:>9.1f}"
        )
    lines.append(
        f"(rows: {len(svc['load'])} load levels, then overload, then recovery; latencies in ms)"
    )
    lines += _study_lines(svc.get("studies", []))
    rss = ", ".join(f"{x:.0f}" for x in svc["worker_rss_mib"])
    eff = efficiency(report)
    lines.append(f"worker RSS MiB: {rss}")
    if eff is not None:
        lines.append(f"serving efficiency, unet-cxr (c=4 req/s / raw img/s, same file): {eff:.2f}")
    eff_inproc = efficiency(report, http=False)
    if eff_inproc is not None:
        lines.append(f"the same without HTTP and decoding (in-process c=4): {eff_inproc:.2f}")
    for run in report.get("volume", []):
        lines.append(
            f"CT volume {run['slices']} slices ({run['model']} {run['precision']}): "
            f"{run['path_s']:.1f} s from bytes to result, {run['path_slices_per_s']:.1f} slices/s"
            + (f", efficiency {run['efficiency']:.2f}" if "efficiency" in run else "")
        )
    auth = report.get("auth") or {}
    if auth:
        lines.append(
            "credential check, µs: "
            + ", ".join(f"{k.removesuffix('_us')} {v:.1f}" for k, v in auth.items())
        )
    log.info("\n".join(lines))
