"""Do the execution providers and variants give the same masks? (``python -m bench.agree``)

Two steps, because the labelled sets and the GPU are seldom on the same machine:

* ``frames``: decode validation images of each shipped model's ``split.json`` (never trained on)
  into one compressed ``.npz`` of float32 frames per modality (display values for CXR, HU for CT);
* ``check``: run every model on those frames with the CPU in fp32 (the reference) and with each
  other provider/precision available here (CUDA fp32 and fp16 on a GPU, int8/fp16 on a CPU), and
  print the pooled Dice of the final masks (after postprocessing) against the reference, as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort

from export.samples import split_samples
from service.datasets import load_image
from service.imaging.types import DecodedImage, Units
from service.models.onnx_backend import CPU, CUDA, OnnxBackend
from service.models.registry import latest_versions
from service.pipeline.metrics import pooled_dice
from service.pipeline.postprocess import Masks
from service.pipeline.run import run

REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("lungseg.perf")


def build_frames(models: Path, data: Path, per_modality: int) -> dict[str, np.ndarray]:
    """``{"<modality>__<units>": float32 (N, H, W)}`` from the U-Nets' validation sides (frames
    are resized to the first frame's size, nearest neighbour, when sizes differ)."""
    frames: dict[str, np.ndarray] = {}
    for name, directory in latest_versions(models).items():
        if not name.startswith("unet-"):
            continue
        images = [load_image(s) for s in split_samples(directory, data, "val", per_modality)]
        if images:
            shape = images[0].frame(0).shape
            key = f"{name.split('-', 1)[1]}__{images[0].units}"
            frames[key] = np.stack([_fit(x.frame(0), shape) for x in images]).astype(np.float32)
    return frames


def _fit(frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if frame.shape == shape:
        return frame
    rows = np.linspace(0, frame.shape[0] - 1, shape[0]).astype(int)
    cols = np.linspace(0, frame.shape[1] - 1, shape[1]).astype(int)
    return frame[np.ix_(rows, cols)]


def _masks(backend: OnnxBackend, frames: np.ndarray, units: Units, batch: int) -> list[Masks]:
    """The service's masks of every frame (``pipeline.run`` in runs of ``batch`` frames)."""
    image = DecodedImage(pixels=frames, units=units, modality=None, source_format="png")
    return [f.masks for f in run(backend, image, chunk=batch)]


def candidates() -> list[tuple[str, str]]:
    """``(provider, precision)`` pairs to compare with CPU fp32 on this machine."""
    if CUDA in ort.get_available_providers():
        return [(CUDA, "fp32"), (CUDA, "fp16")]
    return [(CPU, "int8"), (CPU, "fp16")]


def check(models: Path, frames: dict[str, np.ndarray], batch: int) -> list[dict[str, Any]]:
    """Pooled lung and infection Dice of each candidate's masks against CPU fp32's."""
    rows: list[dict[str, Any]] = []
    for key, stack in frames.items():
        modality, units = key.split("__")
        for name, directory in latest_versions(models).items():
            if name.split("-", 1)[1] == modality:
                rows += _compare(name, directory, stack, cast(Units, units), batch)
    return rows


def _compare(
    name: str, directory: Path, frames: np.ndarray, units: Units, batch: int
) -> list[dict[str, Any]]:
    rows = []
    reference = _masks(OnnxBackend(directory, [CPU]), frames, units, batch)
    for provider, precision in candidates():
        backend = OnnxBackend(directory, [provider], precision=precision, max_batch=batch)
        masks = _masks(backend, frames, units, batch)
        rows.append(
            {
                "model": name,
                "provider": backend.provider,
                "precision": precision,
                "n_images": len(masks),
                "lung_dice_vs_cpu_fp32": pooled_dice(
                    [m.lung for m in masks], [m.lung for m in reference]
                ),
                "infection_dice_vs_cpu_fp32": pooled_dice(
                    [m.infection for m in masks], [m.infection for m in reference]
                ),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("step", choices=["frames", "check"])
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--frames", type=Path, required=True, help=".npz written / read")
    parser.add_argument("--data", type=Path, help="labelled sets (frames step)")
    parser.add_argument("--n", type=int, default=48, help="frames per modality")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    if args.step == "frames":
        if args.data is None:
            parser.error("frames needs --data (the folder of the labelled sets)")
        frames = build_frames(args.models, args.data, args.n)
        np.savez_compressed(args.frames, allow_pickle=False, **frames)
        log.info("%s: %s", args.frames, {k: v.shape for k, v in frames.items()})
        return 0
    with np.load(args.frames) as npz:
        frames = {k: npz[k] for k in npz.files}
    for row in check(args.models, frames, args.batch):
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
