"""A model card + ONNX file served by ONNX Runtime (CUDA execution provider when available)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.errors import ModelLoadError
from service.imaging.types import Units
from service.models.card import ONNX_FILE, ModelCard, read_card, sha256_of
from service.pipeline.preprocess import preprocess

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PRECISIONS = ("auto", "fp32", "int8", "fp16")


def variant_file(card: ModelCard, precision: str) -> tuple[str, str]:
    """``(file name, sha256)`` of the card's ``precision`` variant (``fp32``: ``model.onnx``)."""
    if precision == "fp32":
        return ONNX_FILE, card.sha256
    variant = card.provenance.get("variants", {}).get(precision)
    if not isinstance(variant, dict) or "file" not in variant or "sha256" not in variant:
        raise ModelLoadError(f"{card.name} has no {precision} variant")
    if not variant.get("accepted", False):
        log.info("%s: the %s variant is not (yet) accepted against fp32", card.name, precision)
    return str(variant["file"]), str(variant["sha256"])


def auto_precision(card: ModelCard, provider: str) -> str:
    """The fastest accepted variant for ``provider``: int8 on CPU, fp16 on CUDA, else fp32."""
    wanted = "fp16" if provider == CUDA else "int8"
    variant = card.provenance.get("variants", {}).get(wanted, {})
    return wanted if isinstance(variant, dict) and variant.get("accepted") else "fp32"


def choose_providers(preference: str) -> list[str]:
    """Execution providers to ask for: ``auto`` (CUDA if built in, then CPU), ``cuda``, ``cpu``."""
    available = ort.get_available_providers()
    if preference == "cpu":
        return [CPU]
    if preference == "cuda" and CUDA not in available:
        raise ModelLoadError(f"CUDA execution provider requested but not available: {available}")
    return [CUDA, CPU] if CUDA in available else [CPU]


class OnnxBackend:
    """One ONNX model, its session created once here and reused for every request.

    Args:
        directory: ``models/<name>/<version>`` holding ``model.onnx`` and ``model.json``.
        providers: ONNX Runtime execution providers in order of preference.
        intra_op_threads: threads per inference (0 = ONNX Runtime's default).
        verify_sha256: check the ONNX file against the card's sha256.
        precision: ``fp32`` (``model.onnx``), ``int8`` or ``fp16`` (variants listed in the card),
            or ``auto``: the accepted variant that suits the first provider, else fp32.
    """

    def __init__(
        self,
        directory: Path,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        verify_sha256: bool = True,
        precision: str = "fp32",
    ) -> None:
        self.card: ModelCard = read_card(directory)
        self.info = self.card.info
        self.postprocess = self.card.postprocess
        providers = providers or [CPU]
        if precision == "auto":
            precision = auto_precision(self.card, providers[0])
        self.precision = precision
        name, digest = variant_file(self.card, precision)
        path = directory / name
        if not path.is_file():
            raise ModelLoadError(f"{path} is missing")
        if verify_sha256 and sha256_of(path) != digest:
            raise ModelLoadError(f"{path} does not match the sha256 in its model card")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=providers
            )
        except (RuntimeError, ValueError) as err:  # ORT raises its Fail/InvalidGraph as these
            raise ModelLoadError(f"ONNX Runtime cannot load {path}: {err}") from err
        self.provider: str = self.session.get_providers()[0]
        self._input = self.card.input.name
        log.info(
            "loaded %s %s (%s) on %s", self.info.name, self.info.version, precision, self.provider
        )

    def prepare(self, frame: np.ndarray, units: Units) -> np.ndarray:
        """Float ``(H, W)`` frame -> float32 ``(1, h, w)`` input at the card's size."""
        return preprocess(frame, units, self.card.preprocess)

    def infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run one batch; returns float32 ``(2, h, w)`` probabilities per input."""
        batch = np.stack(inputs).astype(np.float32, copy=False)
        (probs,) = self.session.run([self.card.output.name], {self._input: batch})
        return list(np.asarray(probs, dtype=np.float32))
