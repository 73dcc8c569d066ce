"""Faster variants of an exported model: int8 (CPU) and fp16 (GPU), accepted only if they agree.

``python -m export.quantize --models models --data ../shared/data``

* int8: static quantisation in QDQ format, per-channel weights, activations calibrated on real
  training images of the model's own split (``split.json``: never its validation images).
* fp16: weights and activations in half precision, float32 input/output kept (for the CUDA EP).

Each variant's masks are compared with the fp32 model's on the model's validation images, after
the full postprocessing; a variant is ``accepted`` when the pooled Dice of both lung and
infection against fp32 is >= 0.99. The card's ``variants`` object records file, sha256,
agreement and acceptance; the service uses a variant only when it is accepted
(``LUNGSEG_PRECISION``).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from onnxruntime.transformers.float16 import convert_float_to_float16

from export.samples import split_samples
from service.datasets import Sample, load_image
from service.models.card import CARD_FILE, read_card, sha256_of
from service.models.onnx_backend import OnnxBackend
from service.models.registry import latest_versions
from service.pipeline.metrics import pooled_dice
from service.pipeline.preprocess import preprocess
from service.pipeline.run import run

log = logging.getLogger(__name__)
ACCEPT_DICE = 0.99
ACCEPT_SAME = 0.99
VARIANT_FILES = {"int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}


class _Reader(CalibrationDataReader):
    def __init__(self, name: str, inputs: list[np.ndarray]) -> None:
        self._items = iter([{name: x[np.newaxis]} for x in inputs])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_int8(src: Path, dst: Path, input_name: str, inputs: list[np.ndarray]) -> None:
    """Static QDQ int8 quantisation of ``src`` calibrated on ``inputs`` (``(1, H, W)`` each).

    The first and the last convolution stay in float32: the input layer sees the raw image and
    the head decides the masks; quantising them cost most of the agreement with fp32. So does
    the decision head's linear layer (it decides the image).
    """
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        nodes = onnx.load(str(prepared)).graph.node
        convs = [n.name for n in nodes if n.op_type == "Conv"]
        head = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]  # the decision head
        excluded = ([convs[0], convs[-1]] if len(convs) > 1 else []) + head
        quantize_static(
            str(prepared),
            str(dst),
            _Reader(input_name, inputs),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            nodes_to_exclude=excluded,
            extra_options={"CalibPercentile": 99.999},
        )


def convert_fp16(src: Path, dst: Path) -> None:
    """Half-precision weights and activations; inputs and outputs stay float32."""
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def agreement(model_dir: Path, variant: str, samples: list[Sample]) -> dict[str, Any]:
    """Masks and decisions of ``variant`` vs fp32 on ``samples`` (CPU): pooled Dice of lung
    and infection (the masks after the image-level decisions), and the share of images with
    the same decisions (lung found, infection detected)."""
    reference = OnnxBackend(model_dir, intra_op_threads=2)
    candidate = OnnxBackend(model_dir, intra_op_threads=2, precision=variant)
    masks: dict[str, list[list[np.ndarray]]] = {"fp32": [[], []], variant: [[], []]}
    decided: dict[str, list[tuple[bool, bool]]] = {"fp32": [], variant: []}
    for sample in samples:
        image = load_image(sample)
        for key, backend in (("fp32", reference), (variant, candidate)):
            (result,) = run(backend, image, frames=[0])
            masks[key][0].append(result.masks.lung)
            masks[key][1].append(result.masks.infection)
            decision = result.decision
            decided[key].append(
                (decision.lung_found, decision.infection_detected) if decision else (True, True)
            )
    lung = pooled_dice(masks["fp32"][0], masks[variant][0])
    infection = pooled_dice(masks["fp32"][1], masks[variant][1])
    same = sum(a == b for a, b in zip(decided["fp32"], decided[variant], strict=True))
    same_share = same / max(len(samples), 1)
    return {
        "lung_dice_vs_fp32": lung,
        "infection_dice_vs_fp32": infection,
        "same_decisions": same_share,
        "n_images": len(samples),
        "images": "the model's validation images (split.json), masks after postprocessing and "
        "the image-level decisions",
        "accepted": lung >= ACCEPT_DICE and infection >= ACCEPT_DICE and same_share >= ACCEPT_SAME,
        "rule": f"pooled Dice vs fp32 >= {ACCEPT_DICE} for lung and infection, and the same "
        f"decisions on >= {ACCEPT_SAME:.0%} of the images",
    }


def record(model_dir: Path, variant: str, details: dict[str, Any]) -> None:
    """Write the variant's entry into ``model.json`` (the fp32 sha256 is unchanged)."""
    path = model_dir / CARD_FILE
    card = json.loads(path.read_text(encoding="utf-8"))
    card.setdefault("variants", {})[variant] = details
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def make_variants(model_dir: Path, data_root: Path, n_calib: int, n_check: int) -> None:
    card = read_card(model_dir)
    fp32 = model_dir / "model.onnx"
    calib = split_samples(model_dir, data_root, "train", n_calib)
    inputs = []
    for sample in calib:
        image = load_image(sample)
        inputs.append(preprocess(image.frame(0), image.units, card.preprocess))
    quantize_int8(fp32, model_dir / VARIANT_FILES["int8"], card.input.name, inputs)
    convert_fp16(fp32, model_dir / VARIANT_FILES["fp16"])
    check = split_samples(model_dir, data_root, "val", n_check)
    for variant, file in VARIANT_FILES.items():
        details: dict[str, Any] = {"file": file, "sha256": sha256_of(model_dir / file)}
        if variant == "int8":
            details["calibration"] = {
                "images": len(calib),
                "from": "training side of split.json",
                "method": "QDQ, per-channel int8 weights, uint8 activations, percentile 99.999; "
                "first and last convolution kept in float32",
            }
        else:
            details["conversion"] = "onnxruntime.transformers.float16, keep_io_types=True"
        record(model_dir, variant, details)  # the sha256 must be known before loading it
        details.update(agreement(model_dir, variant, check))
        record(model_dir, variant, details)
        log.info("%s %s: %s", card.name, variant, details)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--calibration-images", type=int, default=128)
    parser.add_argument("--check-images", type=int, default=400)
    parser.add_argument("--only", nargs="*", help="model names (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name, directory in latest_versions(args.models).items():
        if not args.only or name in args.only:
            make_variants(directory, args.data, args.calibration_images, args.check_images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
