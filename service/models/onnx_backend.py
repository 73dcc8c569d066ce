"""A model card + ONNX file served by ONNX Runtime (CUDA execution provider when available)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.errors import ModelLoadError
from service.imaging.types import Units
from service.models.base import Prediction
from service.models.card import ONNX_FILE, ModelCard, read_card, sha256_of
from service.pipeline.preprocess import preprocess
from service.pipeline.run import CHUNK_FRAMES

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PRECISIONS = ("auto", "fp32", "int8", "fp16")
CPU_RUN = CHUNK_FRAMES
"""Most frames in one CPU run (bounded activations, as the pipeline's chunks), for callers
that hand a whole series to ``infer`` at once."""


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


# HEURISTIC, not ONNX Runtime's EXHAUSTIVE: EXHAUSTIVE benchmarks every convolution again on
# each change of input shape (about 1 s for our U-Net on an H100), and a micro-batching service
# changes the batch size all the time. On the H100 the service with EXHAUSTIVE stalled ~1 s
# whenever a worker's batch size changed (bench-results/history.jsonl, 2026-11-27).
DEFAULT_CUDA_OPTIONS: dict[str, str] = {"cudnn_conv_algo_search": "HEURISTIC"}


def choose_providers(preference: str) -> list[str]:
    """Execution providers to ask for: ``auto`` (CUDA if built in, then CPU), ``cuda``, ``cpu``.

    ``cuda`` asks for CUDA alone, so that a model which cannot run there fails to load instead
    of running on the CPU unnoticed (see ``OnnxBackend``).
    """
    available = ort.get_available_providers()
    if preference == "cpu":
        return [CPU]
    if CUDA not in available:
        if preference == "cuda":
            raise ModelLoadError(
                f"CUDA execution provider requested but not available: {available}; "
                "install the gpu extra (onnxruntime-gpu) or set LUNGSEG_PROVIDERS=cpu"
            )
        return [CPU]
    if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, if installed
        ort.preload_dlls()
    return [CUDA] if preference == "cuda" else [CUDA, CPU]


def bucket(n: int, largest: int) -> int:
    """The batch size ``n`` inputs are padded to on a GPU: the next power of two, or ``n``.

    A few fixed shapes keep cuDNN's per-shape algorithm search to start-up (see ``warm_up``).
    """
    size = 1
    while size < n:
        size *= 2
    return size if size <= largest else n


class OnnxBackend:
    """One ONNX model, its session created once here and reused for every request.

    Args:
        directory: ``models/<name>/<version>`` holding ``model.onnx`` and ``model.json``.
        providers: ONNX Runtime execution providers in order of preference.
        intra_op_threads: threads per inference (0 = ONNX Runtime's default).
        verify_sha256: check the ONNX file against the card's sha256.
        precision: ``fp32`` (``model.onnx``), ``int8`` or ``fp16`` (variants listed in the card),
            or ``auto``: the accepted variant that suits the first provider, else fp32.
        cuda_options: CUDA execution provider options (default ``DEFAULT_CUDA_OPTIONS``).
        max_batch: on CUDA, batches are padded to powers of two up to this size (see
            ``warm_up``) and larger ones split.

    Raises:
        ModelLoadError: the file is missing, altered or unloadable, or CUDA was asked for
            alone and ONNX Runtime could not place the model there.
    """

    def __init__(
        self,
        directory: Path,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        verify_sha256: bool = True,
        precision: str = "fp32",
        cuda_options: dict[str, str] | None = None,
        max_batch: int = 1,
    ) -> None:
        self.card: ModelCard = read_card(directory)
        self.info = self.card.info
        self.postprocess = self.card.postprocess
        self.decision = self.card.decision_params
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
        cuda = (CUDA, cuda_options or DEFAULT_CUDA_OPTIONS)
        asked = [cuda if p == CUDA else p for p in providers]
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=asked)
        except (RuntimeError, ValueError) as err:  # ORT raises its Fail/InvalidGraph as these
            raise ModelLoadError(f"ONNX Runtime cannot load {path}: {err}") from err
        self.provider: str = self.session.get_providers()[0]
        self._check_provider(providers)
        self._input = self.card.input.name
        self._outputs = [self.card.output.name]
        if self.card.score_output is not None:
            self._outputs.append(self.card.score_output.name)
        self.max_batch = max_batch if self.provider == CUDA else 1
        log.info(
            "loaded %s %s (%s) on %s", self.info.name, self.info.version, precision, self.provider
        )

    def _check_provider(self, asked: list[str]) -> None:
        """ONNX Runtime falls back to the CPU silently when CUDA fails: say so, or refuse."""
        if asked[0] == self.provider:
            return
        message = f"{self.info.name}: asked for {asked[0]}, ONNX Runtime gave {self.provider}"
        if CPU not in asked:
            raise ModelLoadError(message + " (check the CUDA and cuDNN libraries)")
        log.warning("%s; running there", message)

    def warm_up(self) -> None:
        """Run each padded batch shape once: cuDNN searches its algorithms now, not later.

        Call it from the thread that will run the model: ONNX Runtime's CUDA provider builds
        its per-thread cuDNN/cuBLAS state on a thread's first run (about 0.5 s on an H100).
        """
        height, width = self.card.preprocess.size
        size = 1
        while size <= self.max_batch:
            self.infer([np.zeros((1, height, width), np.float32)] * size)
            size *= 2

    def prepare(self, frame: np.ndarray, units: Units) -> np.ndarray:
        """Float ``(H, W)`` frame -> float32 ``(1, h, w)`` input at the card's size."""
        return preprocess(frame, units, self.card.preprocess)

    def infer(self, inputs: list[np.ndarray]) -> list[Prediction]:
        """Run one batch of ``(1, h, w)`` inputs; one Prediction each: float32 ``(2, h, w)``
        probabilities and, with a decision head, the image-level score.

        On CUDA (``max_batch`` > 1) the batch is split into runs of at most ``max_batch``, each
        padded to its power-of-two bucket and run with IO binding; on the CPU into runs of at
        most ``CPU_RUN``.
        """
        batch = np.stack(inputs).astype(np.float32, copy=False)
        if self.max_batch == 1:
            runs = range(0, len(batch), CPU_RUN)
            return [p for i in runs for p in self._run(batch[i : i + CPU_RUN])]
        step = self.max_batch
        return [p for i in range(0, len(batch), step) for p in self._run_bound(batch[i : i + step])]

    def _run(self, batch: np.ndarray) -> list[Prediction]:
        """One plain run of a ``(n, 1, h, w)`` batch (CPU)."""
        outputs = self.session.run(self._outputs, {self._input: batch})
        return _predictions(outputs, len(batch))

    def _run_bound(self, batch: np.ndarray) -> list[Prediction]:
        """One ``(n, 1, h, w)`` batch padded to its bucket, output bound on the session's device."""
        n = len(batch)
        padded = bucket(n, self.max_batch)
        if padded > n:
            batch = np.concatenate([batch, np.zeros((padded - n, *batch.shape[1:]), np.float32)])
        binding = self.session.io_binding()  # input copied once, outputs fetched once
        binding.bind_cpu_input(self._input, batch)
        for name in self._outputs:
            binding.bind_output(name, "cuda" if self.provider == CUDA else "cpu")
        self.session.run_with_iobinding(binding)
        return _predictions(binding.copy_outputs_to_cpu(), n)


def _predictions(outputs: list[np.ndarray], n: int) -> list[Prediction]:
    """The first ``n`` rows of a run's outputs (probabilities, then the score if any)."""
    probs = np.asarray(outputs[0][:n], dtype=np.float32)
    if len(outputs) == 1:
        return [Prediction(probabilities=p) for p in probs]
    scores = np.asarray(outputs[1][:n], dtype=np.float32).reshape(n, -1)[:, 0]
    return [Prediction(probabilities=p, score=float(s)) for p, s in zip(probs, scores, strict=True)]
