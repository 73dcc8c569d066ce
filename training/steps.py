"""One training epoch and one validation pass over cached data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from service.pipeline import metrics
from service.pipeline.metrics import dice_bce_loss
from service.pipeline.params import PreprocessParams
from service.pipeline.preprocess import normalise
from training.augment import AugmentParams, augment
from training.config import JobConfig
from training.data import Cached

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Scores = dict[str, list[float]]


def make_batch(
    data: Cached,
    rows: np.ndarray,
    pre: PreprocessParams,
    aug: AugmentParams | None,
    rng: np.random.Generator,
) -> Batch:
    """Tensors of some cached rows: normalised images ``(B, 1, H, W)`` float32, masks
    ``(B, 2, H, W)`` float32 0/1 and weights ``(B, 2)`` float32 (augmented when ``aug``)."""
    images, masks = [], []
    for row in rows:
        image, mask = data.images[row].astype(np.float32), data.masks[row]
        if aug is not None:
            image, mask = augment(image, mask, aug, rng)
        images.append(normalise(image, pre))
        masks.append(mask)
    return (
        torch.from_numpy(np.stack(images)[:, None]),
        torch.from_numpy(np.stack(masks).astype(np.float32)),
        torch.from_numpy(data.weights[rows]),
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


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Cached,
    config: JobConfig,
    rng: np.random.Generator,
    desc: str = "train",
) -> float:
    """One pass over ``data`` with augmentation; returns the mean Dice+BCE loss per sample."""
    model.train()
    total, count = 0.0, 0
    steps = (len(data) + config.batch_size - 1) // config.batch_size
    bar = tqdm(
        batches(data, config.batch_size, config.preprocess, config.augment, rng, shuffle=True),
        total=steps,
        desc=desc,
        mininterval=10,
        leave=False,
    )
    for x, y, w in bar:
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        loss = dice_bce_loss(model(x), y, w)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(x)
        count += len(x)
        bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    return total / max(count, 1)


def _score_image(prob: np.ndarray, ref: np.ndarray, weight: np.ndarray, bucket: Scores) -> None:
    """Add one image's lung Dice, infection Dice (non-empty reference) or false-positive flag
    (empty reference) to ``bucket``; ``prob``/``ref`` are ``(2, H, W)``, ``weight`` ``(2,)``."""
    pred, ref = prob >= 0.5, ref.astype(bool)
    if weight[0]:
        bucket["lung"].append(metrics.dice(pred[0], ref[0]))
    if weight[1] and ref[1].any():
        bucket["infection"].append(metrics.dice(pred[1], ref[1]))
    elif weight[1]:
        bucket["fp"].append(float(pred[1].any()))


@torch.no_grad()
def validate(model: nn.Module, data: Cached, config: JobConfig) -> dict[str, Any]:
    """Loss and Dice at model resolution (threshold 0.5, no post-processing), overall and per set.

    ``score`` (the early-stopping criterion) is the mean of the lung Dice and the infection
    Dice over images with infection, of the channels that have references.
    """
    model.eval()
    by_set: dict[str, Scores] = {n: {"lung": [], "infection": [], "fp": []} for n in set(data.sets)}
    loss_sum, row = 0.0, 0
    rng = np.random.default_rng(0)
    for x, y, w in batches(data, config.batch_size, config.preprocess, None, rng, shuffle=False):
        prob = model(x)
        loss_sum += float(dice_bce_loss(prob, y, w)) * len(x)
        for p, r, wt in zip(prob.numpy(), y.numpy(), w.numpy(), strict=True):
            _score_image(p, r, wt, by_set[data.sets[row]])
            row += 1
    return _summary(loss_sum / max(len(data), 1), by_set)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _summary(loss: float, by_set: dict[str, Scores]) -> dict[str, Any]:
    """Pooled and per-set means; ``score`` = mean of the pooled lung and infection Dice."""
    pooled = {k: [v for s in by_set.values() for v in s[k]] for k in ("lung", "infection", "fp")}
    per_set = {
        name: {
            "lung_dice": _mean(s["lung"]),
            "infection_dice": _mean(s["infection"]),
            "infection_fp_rate": _mean(s["fp"]),
        }
        for name, s in sorted(by_set.items())
    }
    parts = [m for m in (_mean(pooled["lung"]), _mean(pooled["infection"])) if m is not None]
    return {
        "loss": loss,
        "lung_dice": _mean(pooled["lung"]),
        "infection_dice": _mean(pooled["infection"]),
        "infection_fp_rate": _mean(pooled["fp"]),
        "score": float(np.mean(parts)) if parts else 0.0,
        "per_set": per_set,
    }
