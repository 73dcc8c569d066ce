"""Torch -> ONNX with dynamic batch, height and width; ``onnx.checker``; ORT-vs-torch parity.

The exporter is torch's TorchScript-based one (``dynamo=False``): the default dynamo exporter of
torch >= 2.9 needs ``onnxscript``, which the project does not otherwise need, and the graphs here
(convolutions, pooling, concatenation, sigmoid) export identically either way.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
SCORE_NAME = "infection_score"
DYNAMIC = {0: "batch", 2: "height", 3: "width"}


class ExportError(RuntimeError):
    """The exported graph is invalid or disagrees with the torch network."""


@dataclass(frozen=True)
class Parity:
    """Result of a parity check: the input shape used and the largest absolute difference."""

    shape: tuple[int, int, int, int]
    max_abs_diff: float
    atol: float


def has_score_head(model: nn.Module, size: tuple[int, int]) -> bool:
    """Whether ``model`` returns ``(probabilities, score)`` (a decision head)."""
    with torch.no_grad():
        return isinstance(model.eval()(torch.zeros(1, 1, *size)), tuple)


def output_names(model: nn.Module, size: tuple[int, int]) -> list[str]:
    return [OUTPUT_NAME, SCORE_NAME] if has_score_head(model, size) else [OUTPUT_NAME]


def to_onnx(model: nn.Module, path: Path, size: tuple[int, int]) -> None:
    """Export ``model`` (eval mode) to ``path``: input ``image`` float32 ``(N, 1, H, W)``, output
    ``probabilities`` float32 ``(N, 2, H, W)`` and, with a decision head, ``infection_score``
    float32 ``(N, 1)``; N, H and W dynamic, traced at ``(1, 1, *size)``."""
    model.eval()
    example = torch.zeros(1, 1, *size)
    names = output_names(model, size)
    axes = {INPUT_NAME: DYNAMIC, OUTPUT_NAME: DYNAMIC}
    if SCORE_NAME in names:
        axes[SCORE_NAME] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript exporter, on purpose
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes=axes,
        )
    check(path)


def check(path: Path) -> None:
    """``onnx.checker.check_model`` with shape inference; raises :class:`ExportError`."""
    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"{path.name} fails onnx.checker: {err}") from err


def parity_shape(size: tuple[int, int], stride: int) -> tuple[int, int, int, int]:
    """A batch of 2 at a size other than the export size (still multiples of ``stride``)."""
    height, width = size
    return (2, 1, height + 2 * stride, max(stride, width - stride))


def parity(
    model: nn.Module,
    path: Path,
    shape: tuple[int, int, int, int],
    atol: float = 1e-4,
    seed: int = 0,
) -> Parity:
    """Compare ONNX Runtime (CPU) with torch on standard-normal inputs of ``shape``.

    Raises:
        ExportError: the largest absolute difference of the probabilities exceeds ``atol``.
    """
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        out = model.eval()(x)
    expected = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
    names = [OUTPUT_NAME, SCORE_NAME][: len(expected)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(names, {INPUT_NAME: x.numpy()})
    diff = 0.0
    for name, a, b in zip(names, got, expected, strict=True):
        if np.asarray(a).shape != b.shape:
            raise ExportError(f"ONNX {name} shape {np.asarray(a).shape} != torch {b.shape}")
        diff = max(diff, float(np.abs(np.asarray(a) - b).max()))
    log.info("parity %s: max |onnx - torch| = %.2e (atol %.0e)", shape, diff, atol)
    if not diff <= atol:
        raise ExportError(f"ONNX Runtime differs from torch by {diff:.2e} > {atol:.0e} at {shape}")
    return Parity(shape=shape, max_abs_diff=diff, atol=atol)
