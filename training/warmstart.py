"""Warm start from a shipped ONNX model (there are no ``.pt`` checkpoints of the shipped models).

The exported graphs have every BatchNorm **fused** into the convolution before it: a Conv node
carries ``W' = W * g / sqrt(v + eps)`` and ``b' = beta - m * g / sqrt(v + eps)`` (initializers
named ``onnx::Conv_NNN``, in graph order), while ConvTranspose and the 1x1 head keep their own
names and bias (``ups.0.weight``, ``head.bias``). The BatchNorm parameters themselves are gone:
only their product with the convolution survives.

:func:`init_from_onnx` loads such a graph into the torch network of the same architecture:

1. Conv / ConvTranspose nodes, in graph order, are paired with the network's ``Conv2d`` /
   ``ConvTranspose2d`` modules in the order the forward pass runs them (shapes and strides must
   agree); fused convolutions get ``W'``.
2. Each BatchNorm is **re-inflated** so that the network reproduces the ONNX output exactly in
   eval mode and approximately in train mode. The network runs once in eval mode with every
   BatchNorm set to the identity plus the fused bias (weight 1, bias ``b'``, running mean 0,
   running variance ``1 - eps``), on a calibration batch of real, preprocessed training images;
   that network *is* the ONNX graph, so the per-channel mean ``mu`` and (biased) variance ``var``
   of each convolution's output are those of the shipped model. Then ``running_mean = mu``,
   ``running_var = var``, ``weight = sqrt(var + eps)``, ``bias = mu + b'``: in eval mode
   ``(x - mu) / sqrt(var + eps) * sqrt(var + eps) + mu + b' = x + b'`` (exact); in train mode the
   batch statistics replace ``mu`` and ``var``, which on images like the calibration batch are
   close to them, so training starts where the shipped model is instead of from a network whose
   BatchNorm would renormalise every channel to unit variance.

Modules the graph does not have (the new decision head) keep their initial weights.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from training.networks.score import split_output

log = logging.getLogger(__name__)
Tensor = torch.Tensor
ConvModule = nn.Conv2d | nn.ConvTranspose2d
CALIBRATION_CHUNK = 16


@dataclass(frozen=True)
class OnnxConv:
    """One Conv or ConvTranspose node of the graph: weights, bias, strides, pads."""

    op: str
    name: str
    weight: np.ndarray
    bias: np.ndarray | None
    strides: tuple[int, ...]
    pads: tuple[int, ...]


def onnx_convs(model: onnx.ModelProto) -> list[OnnxConv]:
    """The graph's Conv and ConvTranspose nodes in graph (topological) order."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        bias = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        convs.append(
            OnnxConv(
                op=node.op_type,
                name=node.input[1],
                weight=inits[node.input[1]],
                bias=bias,
                strides=tuple(attrs.get("strides", (1, 1))),
                pads=tuple(attrs.get("pads", (0, 0, 0, 0))),
            )
        )
    return convs


def forward_order(model: nn.Module, size: int) -> list[ConvModule]:
    """The network's Conv2d / ConvTranspose2d modules in the order a forward pass runs them."""
    order: list[ConvModule] = []

    def record(module: nn.Module, _inputs: object, _output: object) -> None:
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            order.append(module)

    handles = [
        m.register_forward_hook(record)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, _in_channels(model), size, size))
    finally:
        for handle in handles:
            handle.remove()
    return order


def _in_channels(model: nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return int(first.in_channels)


def batchnorm_after(model: nn.Module) -> dict[nn.Module, nn.BatchNorm2d]:
    """``{conv: the BatchNorm2d that directly follows it}`` inside the network's Sequentials."""
    pairs: dict[nn.Module, nn.BatchNorm2d] = {}
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.children())
            for conv, norm in itertools.pairwise(children):
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    pairs[conv] = norm
    return pairs


def _check(conv: ConvModule, node: OnnxConv, index: int) -> None:
    kind = "ConvTranspose" if isinstance(conv, nn.ConvTranspose2d) else "Conv"
    shape = tuple(conv.weight.shape)
    if kind != node.op or shape != node.weight.shape:
        raise ValueError(
            f"conv {index}: the network has {kind} {shape}, the ONNX graph {node.op} "
            f"{node.weight.shape} ({node.name}): not the same architecture"
        )
    pads = tuple(int(p) for p in conv.padding) * 2
    if tuple(conv.stride) != node.strides or pads != node.pads:
        raise ValueError(f"conv {index}: strides/pads differ from the ONNX graph ({node.name})")


def load_weights(model: nn.Module, graph: onnx.ModelProto, size: int) -> dict[nn.Module, Tensor]:
    """Copy the graph's conv weights into ``model``; BatchNorms become identity + fused bias.

    Returns:
        ``{fused conv: its fused bias}`` for the re-inflation.
    """
    nodes = onnx_convs(graph)
    convs = forward_order(model, size)
    if len(convs) != len(nodes):
        raise ValueError(
            f"the network runs {len(convs)} convolutions, the ONNX graph has {len(nodes)}"
        )
    norms = batchnorm_after(model)
    fused: dict[nn.Module, Tensor] = {}
    with torch.no_grad():
        for index, (conv, node) in enumerate(zip(convs, nodes, strict=True)):
            _check(conv, node, index)
            conv.weight.copy_(torch.from_numpy(node.weight.copy()))
            bias = torch.zeros(node.weight.shape[0]) if node.bias is None else node.bias
            bias = torch.as_tensor(np.array(bias, dtype=np.float32))
            norm = norms.get(conv)
            if norm is None:
                if conv.bias is None:
                    raise ValueError(f"conv {index} ({node.name}) has no bias and no BatchNorm")
                conv.bias.copy_(bias)
                continue
            if conv.bias is not None:
                raise ValueError(f"conv {index} before a BatchNorm has its own bias")
            norm.weight.fill_(1.0)
            norm.bias.copy_(bias)
            _buffer(norm, "running_mean").zero_()
            _buffer(norm, "running_var").fill_(1.0 - norm.eps)
            fused[conv] = bias
    return fused


def _buffer(norm: nn.BatchNorm2d, name: str) -> Tensor:
    value = getattr(norm, name)
    if not isinstance(value, Tensor):
        raise ValueError(f"BatchNorm without {name} (track_running_stats off?)")
    return value


def conv_statistics(
    model: nn.Module, convs: list[nn.Module], calibration: Tensor
) -> dict[nn.Module, tuple[Tensor, Tensor]]:
    """Per-channel mean and biased variance of each conv's output on ``calibration`` (eval)."""
    sums: dict[nn.Module, list[Tensor]] = {}

    def record(module: nn.Module, _inputs: object, output: Tensor) -> None:
        y = output.detach().double()
        dims = (0, 2, 3)
        stats = [
            y.sum(dims),
            (y * y).sum(dims),
            torch.tensor(float(y.numel() // y.shape[1]), dtype=torch.float64),
        ]
        if module in sums:
            sums[module] = [a + b for a, b in zip(sums[module], stats, strict=True)]
        else:
            sums[module] = stats

    handles = [c.register_forward_hook(record) for c in convs]
    try:
        with torch.no_grad():
            model.eval()
            for start in range(0, len(calibration), CALIBRATION_CHUNK):
                model(calibration[start : start + CALIBRATION_CHUNK])
    finally:
        for handle in handles:
            handle.remove()
    result = {}
    for conv, (total, squares, count) in sums.items():
        mean = total / count
        var = torch.clamp(squares / count - mean * mean, min=0.0)
        result[conv] = (mean.float(), var.float())
    return result


def reinflate(model: nn.Module, fused: dict[nn.Module, Tensor], calibration: Tensor) -> None:
    """Set each fused conv's BatchNorm from the conv's output statistics (module docstring)."""
    norms = batchnorm_after(model)
    stats = conv_statistics(model, list(fused), calibration)
    with torch.no_grad():
        for conv, bias in fused.items():
            mean, var = stats[conv]
            norm = norms[conv]
            _buffer(norm, "running_mean").copy_(mean)
            _buffer(norm, "running_var").copy_(var)
            norm.weight.copy_(torch.sqrt(var + norm.eps))
            norm.bias.copy_(mean + bias)


def onnx_probabilities(onnx_path: Path, images: Tensor, threads: int = 2) -> np.ndarray:
    """The ONNX model's first output (probabilities) on ``images`` (CPU, onnxruntime)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = [
        session.run(None, {name: images[s : s + CALIBRATION_CHUNK].numpy()})[0]
        for s in range(0, len(images), CALIBRATION_CHUNK)
    ]
    return np.concatenate(outputs)


@torch.no_grad()
def torch_probabilities(model: nn.Module, images: Tensor, train_mode: bool = False) -> np.ndarray:
    """The network's probabilities on ``images`` (eval mode, or train mode as one batch)."""
    model.train(train_mode)
    if train_mode:  # one batch: its statistics are the batch's own; leave running stats alone
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            return split_output(model(images))[0].numpy()
        finally:
            model.load_state_dict(saved)
            model.eval()
    chunks = [
        split_output(model(images[s : s + CALIBRATION_CHUNK]))[0].numpy()
        for s in range(0, len(images), CALIBRATION_CHUNK)
    ]
    return np.concatenate(chunks)


def init_from_onnx(model: nn.Module, onnx_path: Path, calibration: Tensor) -> float:
    """Load ``onnx_path`` (BatchNorm fused) into ``model`` and re-inflate its BatchNorms.

    Args:
        model: a network of the same architecture as the graph (``build(kind, **net)``); extra
            modules without convolutions (the decision head) are left as they are.
        onnx_path: e.g. ``models/unet-cxr/2.0.0/model.onnx``.
        calibration: float32 ``(N, 1, H, W)`` normalised training images (model input), e.g.
            64 unaugmented images of the training side; ``H``, ``W`` multiples of the stride.

    Returns:
        The largest ``|torch - onnxruntime|`` of the probabilities on ``calibration`` (eval
        mode); below 1e-4 when the load is right. ``model`` is left in eval mode.
    """
    graph = onnx.load(str(onnx_path))
    size = int(calibration.shape[-1])
    fused = load_weights(model, graph, size)
    reinflate(model, fused, calibration)
    ours = torch_probabilities(model, calibration)
    theirs = onnx_probabilities(onnx_path, calibration)
    error = float(np.max(np.abs(ours - theirs)))
    log.info(
        "warm start from %s: %d convolutions (%d with BatchNorm re-inflated on %d images), "
        "max |torch - onnxruntime| = %.2e",
        onnx_path,
        len(onnx_convs(graph)),
        len(fused),
        len(calibration),
        error,
    )
    return error


__all__ = ["init_from_onnx", "onnx_convs", "onnx_probabilities", "torch_probabilities"]
