"""The table ``make bench`` prints, and the serving efficiency it derives."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("lungseg.perf")


def efficiency(report: dict[str, Any], model: str = "unet-cxr") -> float | None:
    """Service req/s at concurrency 4 / raw img/s of the fp32 model (batch 1, all cores)."""
    raw = next(
        (r for r in report["raw"] if r["model"] == model and r["file"] == "model.onnx"), None
    )
    c4 = next((x for x in report["service"]["load"] if x["concurrency"] == 4), None)
    if raw is None or c4 is None or not raw["img_per_s"]:
        return None
    return float(c4["req_per_s"] / raw["img_per_s"])


def print_report(report: dict[str, Any]) -> None:
    machine = report["machine"]
    lines = [
        f"machine: {machine['cpu']} ({machine['cores']} cores), onnxruntime "
        f"{machine['onnxruntime']}, {report['when']}{' (quick)' if report['quick'] else ''}",
        "",
        f"{'raw ONNX Runtime':<28}{'img/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'RSS MiB':>9}",
    ]
    for r in report["raw"]:
        name = f"{r['model']} {r['file'].removeprefix('model').strip('.') or 'fp32'}"
        lines.append(
            f"{name.replace('onnx', '').strip():<28}{r['img_per_s']:>9.1f}"
            f"{r['latency_ms']['p50']:>9.1f}{r['latency_ms']['p99']:>9.1f}{r['peak_rss_mib']:>9.0f}"
        )
    svc = report["service"]
    lines += ["", f"service (POST /v1/segment, {svc['image']}), start-up {svc['startup_s']:.2f} s"]
    lines.append(
        f"{'clients':<9}{'req/s':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'ok':>7}{'503':>6}{'err':>6}"
    )
    for row in [*svc["load"], svc["overload"], svc["recovery"]]:
        ms = row["latency_ms"]
        lines.append(
            f"{row['concurrency']:<9}{row['req_per_s']:>8.1f}{ms['p50']:>8.1f}{ms['p95']:>8.1f}"
            f"{ms['p99']:>8.1f}{row['ok']:>7}{row['rejected_503']:>6}{row['errors']:>6}"
        )
    lines.append(f"(rows: {len(svc['load'])} load levels, then overload, then recovery)")
    rss = ", ".join(f"{x:.0f}" for x in svc["worker_rss_mib"])
    eff = efficiency(report)
    lines.append(f"worker RSS MiB: {rss}")
    lines.append(f"serving efficiency (c=4 req/s / raw img/s): {eff:.2f}" if eff else "")
    log.info("\n".join(lines))
