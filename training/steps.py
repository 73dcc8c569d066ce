"""One training epoch over cached data (validation: ``training.validation``).

The loss is ``dice_bce_loss(probabilities, masks, weights)`` (``service.pipeline.metrics``,
masked per sample and channel) plus, for networks with the decision head,
``decision_weight x BCE(score, label)`` over the images that have a decision label (class
balanced when ``decision_balance``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from service.pipeline.metrics import LOSS_EPS, dice_bce_loss
from service.pipeline.params import PreprocessParams
from service.pipeline.preprocess import normalise
from training.augment import AugmentParams, augment
from training.config import JobConfig
from training.data import Cached
from training.networks.score import split_output

Scores = dict[str, list[float]]


@dataclass
class Batch:
    """Tensors of some cached rows (see :func:`make_batch`)."""

    images: torch.Tensor
    masks: torch.Tensor
    weights: torch.Tensor
    labels: torch.Tensor
    label_weights: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)


def make_batch(
    data: Cached,
    rows: np.ndarray,
    pre: PreprocessParams,
    aug: AugmentParams | None,
    rng: np.random.Generator,
) -> Batch:
    """Tensors of some cached rows: normalised images ``(B, 1, H, W)`` float32, masks
    ``(B, 2, H, W)`` float32 0/1, weights ``(B, 2)``, decision labels and weights ``(B,)``
    (augmented when ``aug``)."""
    images, masks = [], []
    for row in rows:
        image, mask = data.images[row].astype(np.float32), data.masks[row]
        if aug is not None:
            image, mask = augment(image, mask, aug, rng)
        images.append(normalise(image, pre))
        masks.append(mask)
    return Batch(
        torch.from_numpy(np.stack(images)[:, None]),
        torch.from_numpy(np.stack(masks).astype(np.float32)),
        torch.from_numpy(data.weights[rows]),
        torch.from_numpy(data.labels[rows]),
        torch.from_numpy(data.label_weights[rows]),
    )


def batches(
    data: Cached,
    batch_size: int,
    pre: PreprocessParams,
    aug: AugmentParams | None,
    rng: np.random.Generator,
    shuffle: bool,
) -> Iterator[Batch]:
    """Batches over all rows (shuffled with ``rng`` when ``shuffle``); the last may be short."""
    order = rng.permutation(len(data)) if shuffle else np.arange(len(data))
    for start in range(0, len(order), batch_size):
        yield make_batch(data, order[start : start + batch_size], pre, aug, rng)


def class_weights(data: Cached, balance: bool) -> tuple[float, float]:
    """``(negative, positive)`` weights of the decision BCE: ``n / (2 n_class)`` over the rows
    with a decision label when ``balance`` (each class then counts half), else ``(1, 1)``."""
    labelled = data.label_weights > 0
    n_pos = int(np.count_nonzero(labelled & (data.labels > 0.5)))
    n_neg = int(np.count_nonzero(labelled)) - n_pos
    if not balance or n_pos == 0 or n_neg == 0:
        return 1.0, 1.0
    total = n_pos + n_neg
    return total / (2.0 * n_neg), total / (2.0 * n_pos)


def decision_loss(
    score: torch.Tensor,
    labels: torch.Tensor,
    label_weights: torch.Tensor,
    weights: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """Binary cross-entropy of the ``(B, 1)`` score against ``labels`` over the rows with
    ``label_weights`` 1, each weighted by its class's weight; 0 when no row has a label."""
    p = torch.clamp(score[:, 0], LOSS_EPS, 1.0 - LOSS_EPS)
    bce = F.binary_cross_entropy(p, labels, reduction="none")
    per_class = torch.where(labels > 0.5, weights[1], weights[0])
    return torch.sum(bce * label_weights * per_class) / torch.clamp(label_weights.sum(), min=1.0)


def total_loss(
    output: Any, batch: Batch, config: JobConfig, weights: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(total, segmentation, decision or None)`` loss of one batch."""
    prob, score = split_output(output)
    seg = dice_bce_loss(prob, batch.masks, batch.weights)
    if score is None:
        return seg, seg, None
    dec = decision_loss(score, batch.labels, batch.label_weights, weights)
    return seg + config.decision_weight * dec, seg, dec


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Cached,
    config: JobConfig,
    rng: np.random.Generator,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``data`` with augmentation.

    Returns:
        Mean losses per sample: ``loss`` (total), ``seg_loss`` (Dice+BCE) and, with the
        decision head, ``decision_loss``.
    """
    model.train()
    weights = class_weights(data, config.decision_balance)
    sums = {"loss": 0.0, "seg_loss": 0.0, "decision_loss": 0.0}
    count, has_head = 0, False
    steps = (len(data) + config.batch_size - 1) // config.batch_size
    bar = tqdm(
        batches(data, config.batch_size, config.preprocess, config.augment, rng, shuffle=True),
        total=steps,
        desc=desc,
        mininterval=10,
        leave=False,
    )
    for batch in bar:
        x = batch.images
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        loss, seg, dec = total_loss(model(x), batch, config, weights)
        loss.backward()
        optimizer.step()
        n = len(batch)
        sums["loss"] += float(loss.detach()) * n
        sums["seg_loss"] += float(seg.detach()) * n
        if dec is not None:
            has_head = True
            sums["decision_loss"] += float(dec.detach()) * n
        count += n
        bar.set_postfix(loss=f"{sums['loss'] / count:.4f}", refresh=False)
    means = {k: v / max(count, 1) for k, v in sums.items()}
    if not has_head:
        del means["decision_loss"]
    return means
