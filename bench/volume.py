"""Volume performance: a thin-slice CT series in memory -> assembled -> segmented (``make bench``).

``python -m bench.volume [--slices 300] [--spacing 1.0] [--models DIR]`` prints one JSON
object; :func:`volume_runs` (called by ``python -m bench``) runs it for 300 and 600 slices, each
in a process of its own, and logs the figures.

The series is made in memory from the real 64-slice chest series (``files/ct-series-chest-hu``,
5 mm apart): ``--slices`` uncompressed 512 x 512 slices ``--spacing`` mm apart from its lowest
slice up, pixels interpolated linearly along z between the two nearest real slices, each a
pydicom dataset with a new SOP Instance UID (one new Series Instance UID for all) and its own
position, written to bytes. Measured, with the ``Segmenter`` as the service builds it
(``SegmenterConfig`` defaults; ``max_pixels`` raised only where the series exceeds them):

* ``path_s``: from the files' bytes in memory to the result (``load_volume`` +
  ``segment_volume``, the int8 CT U-Net on this CPU), and ``path_slices_per_s``;
* ``raw_slices_per_s``: ``OnnxBackend.infer`` alone on the same slices already prepared, in runs
  of the pipeline's chunk size, and ``efficiency`` = path / raw (the volume path's overhead);
* ``memory_growth_mib``: peak RSS during the path (``VmHWM``, reset before it) minus the RSS
  before it (files in memory, models loaded); split into ``assemble_growth_mib`` (peak while
  assembling), ``volume_mib`` (what the assembled Volume keeps) and ``segment_growth_mib``
  (peak of ``segment_volume`` above the assembled volume);
* ``load_avg``: the 1-minute load average before and after (the CPU may be shared).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from service.models.segmenter import Segmenter, SegmenterConfig
from service.pipeline.run import CHUNK_FRAMES

REPO_ROOT = Path(__file__).resolve().parents[1]
CHEST = Path("files/ct-series-chest-hu")
DEFAULT_MAX_PIXELS = SegmenterConfig(None).max_pixels
log = logging.getLogger("lungseg.perf")


def data_dir() -> Path:
    return Path(os.environ.get("LUNGSEG_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def thin_series(source: Path, slices: int, spacing_mm: float) -> list[bytes]:
    """``slices`` DICOM files ``spacing_mm`` apart, interpolated from the series in ``source``."""
    datasets = [pydicom.dcmread(p) for p in sorted(source.glob("*.dcm"))]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    zs = np.array([float(ds.ImagePositionPatient[2]) for ds in datasets])
    if (slices - 1) * spacing_mm > zs[-1] - zs[0]:
        raise ValueError(f"{slices} slices {spacing_mm} mm apart exceed the source's z range")
    stored = [ds.pixel_array for ds in datasets]
    series_uid = generate_uid()
    files = []
    for index in range(slices):
        z = zs[0] + index * spacing_mm
        upper = int(np.clip(np.searchsorted(zs, z, side="right"), 1, len(zs) - 1))
        weight = (z - zs[upper - 1]) / (zs[upper] - zs[upper - 1])
        pixels = (1 - weight) * stored[upper - 1] + weight * stored[upper]
        ds = _header(datasets[upper - 1 if weight < 0.5 else upper])
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], round(float(z), 3)]
        ds.SliceLocation = round(float(z), 3)
        ds.SliceThickness = spacing_mm
        ds.PixelData = np.round(pixels).astype(stored[0].dtype).tobytes()
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds)
        files.append(buffer.getvalue())
    return files


def _header(ds: Dataset) -> Dataset:
    """A copy of ``ds`` without its pixels (they are replaced)."""
    pixels = ds.PixelData
    del ds.PixelData
    out = copy.deepcopy(ds)
    ds.PixelData = pixels
    return out


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: ``5`` to ``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(models: Path, slices: int, spacing_mm: float) -> dict[str, Any]:
    """Build the series, then time and measure the volume path and the raw model on it."""
    files = thin_series(data_dir() / CHEST, slices, spacing_mm)
    pixels = slices * 512 * 512
    max_pixels = max(DEFAULT_MAX_PIXELS, pixels)
    segmenter = Segmenter(SegmenterConfig(models, max_pixels=max_pixels))
    segmenter.segment_volume(segmenter.load_volume(files[:8]))  # warm-up: sessions, threads
    load_before = os.getloadavg()[0]
    reset = _reset_peak()
    rss_before = _status_kib("VmRSS")
    start = time.perf_counter()
    volume = segmenter.load_volume(files)
    assembled = time.perf_counter()
    peak_assemble = _status_kib("VmHWM")
    reset = _reset_peak() and reset
    rss_volume = _status_kib("VmRSS")
    result = segmenter.segment_volume(volume)
    path_s = time.perf_counter() - start
    peak_segment = _status_kib("VmHWM")
    backend = segmenter.registry.find("unet", "ct")
    raw: dict[str, Any] = {}
    if backend is not None:
        prepared = [backend.prepare(volume.voxels[k], volume.units) for k in range(slices)]
        begin = time.perf_counter()
        for first in range(0, slices, CHUNK_FRAMES):
            backend.infer(prepared[first : first + CHUNK_FRAMES])
        raw_s = time.perf_counter() - begin
        raw = {"raw_s": raw_s, "raw_slices_per_s": slices / raw_s}
    segmenter.close()
    out: dict[str, Any] = {
        "slices": slices,
        "spacing_mm": spacing_mm,
        "series_mib": sum(len(f) for f in files) / 2**20,
        "max_pixels": max_pixels,
        "max_pixels_raised": max_pixels != DEFAULT_MAX_PIXELS,
        "model": result.model.name,
        "precision": result.precision,
        "provider": result.provider,
        "path_s": path_s,
        "path_slices_per_s": slices / path_s,
        **raw,
        "timings_ms": result.timings_ms,
        "lung_volume_ml": result.lung_volume_ml,
        "assemble_s": assembled - start,
        "memory_growth_mib": (max(peak_assemble, peak_segment) - rss_before) / 1024
        if reset
        else None,
        "assemble_growth_mib": (peak_assemble - rss_before) / 1024 if reset else None,
        "volume_mib": (rss_volume - rss_before) / 1024,
        "segment_growth_mib": (peak_segment - rss_volume) / 1024 if reset else None,
        "rss_before_mib": rss_before / 1024,
        "load_avg": [load_before, os.getloadavg()[0]],
        "cores": len(os.sched_getaffinity(0)),
    }
    if raw:
        out["efficiency"] = out["path_slices_per_s"] / raw["raw_slices_per_s"]
    return out


def volume_runs(
    models: Path, sizes: tuple[tuple[int, float], ...] = ((300, 1.0), (600, 0.5))
) -> list[dict[str, Any]]:
    """:func:`measure` for each (slices, spacing), each in a process of its own; logged."""
    results: list[dict[str, Any]] = []
    if not (data_dir() / CHEST).is_dir():
        log.warning("volume benchmark skipped: %s not found", data_dir() / CHEST)
        return results
    for slices, spacing in sizes:
        cmd = [sys.executable, "-m", "bench.volume", "--models", str(models)]
        cmd += ["--slices", str(slices), "--spacing", str(spacing)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO_ROOT)
        results.append(dict(json.loads(out.stdout)))
    for r in results:
        log.info(summary(r))
    return results


def summary(r: dict[str, Any]) -> str:
    """One line of figures."""
    stages = ", ".join(f"{k} {v / 1000:.2f}" for k, v in r["timings_ms"].items())
    raw = (
        f"; raw model {r['raw_slices_per_s']:.1f} slices/s, efficiency {r['efficiency']:.2f}"
        if "efficiency" in r
        else ""
    )

    def mib(key: str) -> str:
        return "n/a" if r[key] is None else f"{r[key]:.0f}"

    return (
        f"volume {r['slices']} slices ({r['model']} {r['precision']}, {r['provider']}): "
        f"{r['path_s']:.2f} s, {r['path_slices_per_s']:.1f} slices/s{raw}; memory growth "
        f"{mib('memory_growth_mib')} MiB (assembling {mib('assemble_growth_mib')}, the volume "
        f"{mib('volume_mib')}, segmenting +{mib('segment_growth_mib')}); load "
        f"{r['load_avg'][0]:.1f} -> {r['load_avg'][1]:.1f} on {r['cores']} cores; "
        f"stages s: assemble {r['assemble_s']:.2f}, {stages}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--spacing", type=float, default=1.0, help="mm between slices")
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(measure(args.models, args.slices, args.spacing)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
