"""``lungseg``: segment files, DICOM series, zips and NIfTI volumes from the command line, with
the service's core and without a server (as lungmask and TotalSegmentator are used)::

    lungseg segment INPUT... --out DIR [--format nifti|seg|rle|png] [--model unet]
                    [--series-uid UID] [--models DIR] [--providers auto|cpu|cuda]

Each INPUT is a DICOM / PNG / JPEG file (one image, as ``POST /v1/segment``), a folder or a zip
of one DICOM CT series, or a ``.nii`` / ``.nii.gz`` volume (:mod:`service.cli.inputs`). Outputs
are named by the input's number (``DIR/0001.nii.gz``, ``DIR/0001.json``: never a name taken
from the input; :mod:`service.cli.output`). A progress bar goes to stderr when it is a
terminal; a summary table (slices, lung mL left / right, infection mL and %, lung found,
infection detected) to stdout.

Exit status: 0 every input done; 1 some input failed (its reason on stderr, no traceback; the
others are still done); 2 a usage error (bad option, missing path, unknown model,
``--format seg``: a DICOM Segmentation, for DICOM inputs).

The same from Python (a notebook), with the one entry class of the core::

    from pathlib import Path
    from service.models.segmenter import Segmenter, SegmenterConfig
    from service.encoders import nifti

    segmenter = Segmenter(SegmenterConfig(Path("models")))
    files = [p.read_bytes() for p in sorted(Path("series").iterdir())]
    volume = segmenter.load_volume(files)            # or [Path("ct.nii.gz").read_bytes()]
    result = segmenter.segment_volume(volume, model="unet")
    result.lung_volume_ml, result.lungs.left.volume_ml, result.infection_percent
    labels = result.labels_in_input()                # 0/1/2 in the input's own layout
    Path("labels.nii.gz").write_bytes(nifti.encode_volume(result).content)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from service.cli.inputs import Input, read_input
from service.cli.output import (
    HEADER,
    Progress,
    failed_row,
    image_row,
    volume_row,
    write_image,
    write_volume,
)
from service.encoders import encoder_for
from service.errors import InvalidParameterError, LungsegError
from service.models.gates import StageClock
from service.models.segmenter import Segmenter, SegmenterConfig
from service.volumes.artifacts import seg_file

PACKAGE_MODELS = Path(__file__).resolve().parents[2] / "models"
MAX_PIXELS = 1 << 30
"""Largest volume the command accepts (voxels; about 4,000 slices of 512 x 512)."""
FORMATS = ("nifti", "seg", "rle", "png")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def default_models() -> Path | None:
    """``$LUNGSEG_MODELS_DIR``, else ``./models``, else the repository's ``models``, else None."""
    env = os.environ.get("LUNGSEG_MODELS_DIR")
    for candidate in (Path(env) if env else None, Path("models"), PACKAGE_MODELS):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lungseg", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    seg = commands.add_parser("segment", help="segment images, series and volumes")
    seg.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    seg.add_argument("--out", type=Path, required=True, help="folder for the outputs")
    seg.add_argument(
        "--format",
        choices=FORMATS,
        help="mask output: nifti (volumes, the default) or rle; rle (images, the default) or png",
    )
    seg.add_argument("--model", help="model kind (unet, cnn, threshold); default: unet")
    seg.add_argument("--series-uid", help="the series to segment when a folder holds several")
    seg.add_argument("--models", type=Path, help="models folder (default: $LUNGSEG_MODELS_DIR)")
    seg.add_argument("--providers", choices=("auto", "cpu", "cuda"), default="auto")
    seg.add_argument("-v", "--verbose", action="store_true", help="log the core's progress")
    return top


def main(argv: list[str] | None = None) -> int:
    """Run ``lungseg``; returns the exit status (see the module docstring)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    missing = [i + 1 for i, path in enumerate(args.inputs) if not path.exists()]
    if missing:
        return _usage(f"input(s) {', '.join(map(str, missing))} do not exist")
    try:
        segmenter = Segmenter(_config(args))
        if args.model is not None:
            segmenter.check_kind(args.model)
    except LungsegError as err:
        return _usage(str(err))
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = [_one(segmenter, args, n, path) for n, path in enumerate(args.inputs, 1)]
    finally:
        segmenter.close()
    sys.stdout.write("\n".join([HEADER, *(row for row, _ in rows)]) + "\n")
    return EXIT_OK if all(ok for _, ok in rows) else EXIT_FAILED


def _config(args: argparse.Namespace) -> SegmenterConfig:
    models = args.models if args.models is not None else default_models()
    if models is None:
        _say("no models folder found: only the threshold segmenter runs (give --models DIR)")
    return SegmenterConfig(models, providers=args.providers, max_pixels=MAX_PIXELS)


def _one(
    segmenter: Segmenter, args: argparse.Namespace, number: int, path: Path
) -> tuple[str, bool]:
    """Segment input ``number``; ``(summary row, done)``; a domain error fails this one only."""
    stem = f"{number:04d}"
    try:
        found = read_input(path)
        return _segment(segmenter, args, stem, found), True
    except (LungsegError, OSError) as err:
        reason = str(err) if isinstance(err, LungsegError) else f"cannot be read ({err.strerror})"
        _say(f"input {number}: {reason}")
        return failed_row(stem, reason.split(":")[0]), False


def _segment(segmenter: Segmenter, args: argparse.Namespace, stem: str, found: Input) -> str:
    if found.kind == "image":
        fmt = args.format or "rle"
        if fmt == "nifti":
            raise InvalidParameterError("nifti output is for volumes; this input is one image")
        encoder = encoder_for("seg") if fmt == "seg" else None
        image = segmenter.segment_bytes(found.files[0], model=args.model, encoder=encoder)
        return image_row(stem, image, ", ".join(write_image(image, args.out, stem, fmt)[:-1]))
    fmt = args.format or "nifti"
    if fmt == "png":
        raise InvalidParameterError("png output is for images; use nifti or rle for volumes")
    clock = StageClock()
    volume = segmenter.load_volume(found.files, args.series_uid, clock)
    progress = Progress(stem)
    try:
        result = segmenter.segment_volume(volume, args.model, progress, clock=clock)
    finally:
        progress.close()
    seg = seg_file(volume, result) if fmt == "seg" else None
    if fmt == "seg" and seg is None:
        raise InvalidParameterError("seg output needs a DICOM series; this input is a NIfTI")
    del volume
    return volume_row(stem, result, write_volume(result, args.out, stem, fmt, seg)[0])


def _say(message: str) -> None:
    sys.stderr.write(f"lungseg: {message}\n")


def _usage(message: str) -> int:
    _say(message)
    return EXIT_USAGE
