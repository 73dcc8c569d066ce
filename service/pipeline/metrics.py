"""Segmentation metrics and the Dice+BCE loss: one implementation for training and benchmarks.

Binary metrics take bool masks of equal shape. Empty cases are defined, not NaN:

* Dice and IoU are 1.0 when both the prediction and the reference are empty (nothing to find,
  nothing found) and 0.0 when exactly one is empty.
* Sensitivity is 1.0 when the reference has no positives (nothing could be missed); specificity
  is 1.0 when the reference has no negatives.

Benchmarks must not average the "both empty" Dice into infection scores (it inflates them): they
report infection Dice over images with a non-empty reference and a false-positive rate for the
rest (see ``service.benchmark``).

:func:`dice_bce_loss` is written against the array API, so the same code computes the training
loss on torch tensors (with gradients) and the benchmark loss on numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace

LOSS_EPS = 1e-6
DICE_SMOOTH = 1.0


@dataclass(frozen=True)
class Confusion:
    """Pixel counts of a prediction against a reference."""

    tp: int
    fp: int
    fn: int
    tn: int


def confusion(pred: np.ndarray, ref: np.ndarray) -> Confusion:
    """Count true/false positives/negatives of bool masks of equal shape."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    pred, ref = pred.astype(bool), ref.astype(bool)
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred & ~ref))
    fn = int(np.count_nonzero(~pred & ref))
    return Confusion(tp=tp, fp=fp, fn=fn, tn=pred.size - tp - fp - fn)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient 2|P∩R| / (|P|+|R|); 1.0 when both are empty."""
    c = confusion(pred, ref)
    denom = 2 * c.tp + c.fp + c.fn
    return 1.0 if denom == 0 else 2 * c.tp / denom


def pooled_dice(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Dice over all pixels of all images together (bool masks, pairwise equal shapes);
    1.0 when both are empty everywhere. Used to compare two models' masks on a set."""
    inter = sum(int(np.count_nonzero(x & y)) for x, y in zip(a, b, strict=True))
    total = sum(
        int(np.count_nonzero(x)) + int(np.count_nonzero(y)) for x, y in zip(a, b, strict=True)
    )
    return 1.0 if total == 0 else 2 * inter / total


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union |P∩R| / |P∪R|; 1.0 when both are empty."""
    c = confusion(pred, ref)
    denom = c.tp + c.fp + c.fn
    return 1.0 if denom == 0 else c.tp / denom


def pixel_accuracy(pred: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of pixels where prediction and reference agree."""
    c = confusion(pred, ref)
    return (c.tp + c.tn) / max(pred.size, 1)


def sensitivity(pred: np.ndarray, ref: np.ndarray) -> float:
    """TP / (TP + FN); 1.0 when the reference has no positives."""
    c = confusion(pred, ref)
    return 1.0 if c.tp + c.fn == 0 else c.tp / (c.tp + c.fn)


def specificity(pred: np.ndarray, ref: np.ndarray) -> float:
    """TN / (TN + FP); 1.0 when the reference has no negatives."""
    c = confusion(pred, ref)
    return 1.0 if c.tn + c.fp == 0 else c.tn / (c.tn + c.fp)


def dice_bce_loss(prob: Any, target: Any, weight: Any = None) -> Any:
    """Soft Dice + binary cross-entropy, mean over samples and channels.

    Args:
        prob: probabilities in [0, 1], shape ``(N, C, H, W)`` (numpy array or torch tensor).
        target: 0/1 reference of the same shape and namespace.
        weight: optional ``(N, C)`` 0/1 weights: 0 leaves a (sample, channel) out of the loss,
            e.g. the lung channel of a set that has no lung masks. ``None`` weights all 1.

    Returns:
        A scalar of the input's namespace: mean over weighted (sample, channel) pairs of
        ``BCE + 1 - (2·Σpt + 1) / (Σp + Σt + 1)``; probabilities are clipped to
        ``[1e-6, 1 - 1e-6]`` for the logarithms. 0.0 when every weight is 0.
    """
    xp = array_namespace(prob, target)
    p = xp.clip(prob, LOSS_EPS, 1.0 - LOSS_EPS)
    t = xp.astype(target, p.dtype)
    bce = -xp.mean(t * xp.log(p) + (1.0 - t) * xp.log(1.0 - p), axis=(2, 3))
    inter = xp.sum(p * t, axis=(2, 3))
    total = xp.sum(p, axis=(2, 3)) + xp.sum(t, axis=(2, 3))
    soft_dice = 1.0 - (2.0 * inter + DICE_SMOOTH) / (total + DICE_SMOOTH)
    per_pair = bce + soft_dice
    w = xp.ones_like(per_pair) if weight is None else xp.astype(weight, per_pair.dtype)
    return xp.sum(per_pair * w) / xp.clip(xp.sum(w), 1.0, None)
