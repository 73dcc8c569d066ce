"""Overlay PNGs of a model's masks on real images, for looking at what a model does.

``python -m export.overlays --model models/unet-ct/2.0.0 --out /tmp/overlays FILE...`` writes one
PNG per input frame: the image as the model saw it (its card's display mapping) with the lung
outline in green and infection in red. The files can be DICOM (HU CT included), PNG or JPEG.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from service.imaging import decode
from service.models.onnx_backend import OnnxBackend
from service.pipeline.postprocess import Masks
from service.pipeline.preprocess import to_display
from service.pipeline.run import run

log = logging.getLogger("export.overlays")


def overlay(display: np.ndarray, masks: Masks) -> np.ndarray:
    """BGR uint8 ``(H, W, 3)``: ``display`` (float ``(H, W)`` in [0, 1]) with lung contours
    (green) and a translucent red infection fill."""
    gray = np.round(np.clip(display, 0, 1) * 255).astype(np.uint8)
    out = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    red = out.copy()
    red[masks.infection] = (0, 0, 255)
    out = cv2.addWeighted(out, 0.6, red, 0.4, 0)
    contours, _ = cv2.findContours(
        masks.lung.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    cv2.drawContours(out, contours, -1, (0, 255, 0), 1)
    return out


def render(backend: OnnxBackend, path: Path) -> list[tuple[np.ndarray, float]]:
    """Overlays of every frame of ``path`` with the lung fraction of each (0..1)."""
    image = decode(path.read_bytes())
    results = []
    for index, frame in enumerate(run(backend, image)):  # as the service (HU air check too)
        shown = to_display(image.frame(index), image.units, backend.card.preprocess)
        results.append((overlay(shown, frame.masks), float(frame.masks.lung.mean())))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.overlays", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="models/<name>/<version>")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    backend = OnnxBackend(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.files:
        for index, (picture, lung) in enumerate(render(backend, path)):
            target = args.out / f"{path.name}-{index}.png"
            cv2.imwrite(str(target), picture)
            log.info("%s: lung %.1f%% of the frame -> %s", path.name, 100 * lung, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
