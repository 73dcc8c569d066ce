"""One training epoch and one validation pass over cached data.

The loss is ``dice_bce_loss(probabilities, masks, weights)`` (``service.pipeline.metrics``,
masked per sample and channel) plus, for networks with the decision head,
``decision_weight x BCE(score, label)`` over the images that have a decision label (class
balanced when ``decision_balance``).

Validation reports, besides the Dice scores of the masks, the decision's AUC (validation and
holdout), its sensitivity and specificity at 0.5 and at the threshold that keeps 95 % of the
holdout's COVID-19 images, and the **gated** infection Dice: over every COVID-19 image with an
infection reference, an image whose score is below 0.5 (missed) counts 0, as it would in a
service that shows the infection map only when the decision says "infection present".
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

from service.pipeline import metrics
from service.pipeline.metrics import LOSS_EPS, dice_bce_loss
from service.pipeline.params import PreprocessParams
from service.pipeline.preprocess import normalise
from training.augment import AugmentParams, augment
from training.config import JobConfig
from training.data import Cached
from training.networks.score import split_output

Scores = dict[str, list[float]]
DECISION_THRESHOLD = 0.5
HOLDOUT_SENSITIVITY = 0.95


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


@dataclass
class Predictions:
    """What one pass over a cached set produced, per row."""

    loss: float
    by_set: dict[str, Scores]
    scores: np.ndarray | None  # (N,) decision scores; None without the head
    infection_dice: np.ndarray  # (N,) NaN where the row has no non-empty infection reference
    infection_flagged: np.ndarray  # (N,) any infection pixel predicted
    infection_weight: np.ndarray  # (N,)


@torch.no_grad()
def predict(model: nn.Module, data: Cached, config: JobConfig) -> Predictions:
    """Run ``model`` (eval mode) over every row of ``data`` without augmentation."""
    model.eval()
    by_set: dict[str, Scores] = {n: {"lung": [], "infection": [], "fp": []} for n in set(data.sets)}
    loss_sum, row = 0.0, 0
    scores: list[np.ndarray] = []
    dice = np.full(len(data), np.nan)
    flagged = np.zeros(len(data), bool)
    rng = np.random.default_rng(0)
    for batch in batches(data, config.batch_size, config.preprocess, None, rng, shuffle=False):
        prob, score = split_output(model(batch.images))
        loss_sum += float(dice_bce_loss(prob, batch.masks, batch.weights)) * len(batch)
        if score is not None:
            scores.append(score[:, 0].numpy())
        for p, r, wt in zip(prob.numpy(), batch.masks.numpy(), batch.weights.numpy(), strict=True):
            _score_image(p, r, wt, by_set[data.sets[row]])
            pred = p[1] >= 0.5
            flagged[row] = bool(pred.any())
            if wt[1] and r[1].any():
                dice[row] = metrics.dice(pred, r[1].astype(bool))
            row += 1
    return Predictions(
        loss=loss_sum / max(len(data), 1),
        by_set=by_set,
        scores=np.concatenate(scores) if scores else None,
        infection_dice=dice,
        infection_flagged=flagged,
        infection_weight=data.weights[:, 1].copy() if len(data) else np.zeros(0, np.float32),
    )


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); ``None`` without both classes."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    values = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(values))
    start = 0
    while start < len(values):  # average ranks over ties
        stop = start
        while stop + 1 < len(values) and values[stop + 1] == values[start]:
            stop += 1
        ranks[start : stop + 1] = (start + stop) / 2.0 + 1.0
        start = stop + 1
    rank_of = np.empty(len(values))
    rank_of[order] = ranks
    pos_ranks = rank_of[: len(pos)].sum()
    return float((pos_ranks - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def threshold_keeping(scores: np.ndarray, fraction: float) -> float | None:
    """The largest threshold with ``score >= threshold`` for at least ``fraction`` of
    ``scores`` (the positives); ``None`` when there are none."""
    if len(scores) == 0:
        return None
    ordered = np.sort(scores)
    keep = int(np.ceil(fraction * len(ordered)))
    return float(ordered[len(ordered) - keep])


def _rate(flags: np.ndarray) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def decision_metrics(
    scores: np.ndarray, data: Cached, threshold: float | None
) -> dict[str, float | None]:
    """AUC, sensitivity and specificity at 0.5 and at ``threshold`` over labelled rows."""
    use = data.label_weights > 0
    s, y = scores[use], data.labels[use]
    pos, neg = s[y > 0.5], s[y <= 0.5]
    result: dict[str, float | None] = {
        "n_positive": float(len(pos)),
        "n_negative": float(len(neg)),
        "auc": auc(s, y),
        "sensitivity": _rate(pos >= DECISION_THRESHOLD),
        "specificity": _rate(neg < DECISION_THRESHOLD),
    }
    if threshold is not None:
        result["sensitivity_at_holdout_95"] = _rate(pos >= threshold)
        result["specificity_at_holdout_95"] = _rate(neg < threshold)
    return result


def gated_metrics(pred: Predictions, data: Cached) -> dict[str, float | None]:
    """Infection scores of a service that shows the map only where ``score >= 0.5``.

    ``gated_infection_dice``: mean over COVID-19 rows with a non-empty infection reference of
    the Dice, 0 where the score is below 0.5. ``gated_infection_fp_rate``: share of rows
    without COVID-19 (decision label 0, infection target weight 1) with infection shown.
    """
    if pred.scores is None:
        raise ValueError("gated metrics need decision scores")
    shown = pred.scores >= DECISION_THRESHOLD
    covid = (data.labels > 0.5) & ~np.isnan(pred.infection_dice)
    gated = np.where(shown[covid], pred.infection_dice[covid], 0.0)
    negative = (data.labels <= 0.5) & (data.label_weights > 0) & (pred.infection_weight > 0)
    return {
        "gated_infection_dice": float(np.mean(gated)) if len(gated) else None,
        "gated_infection_fp_rate": _rate((shown & pred.infection_flagged)[negative]),
    }


def validate(
    model: nn.Module, data: Cached, config: JobConfig, holdout: Cached | None = None
) -> dict[str, Any]:
    """Loss and Dice at model resolution (threshold 0.5, no post-processing), overall and per
    set; with the decision head also decision and gated metrics on ``data`` and ``holdout``.

    ``score`` (the early-stopping criterion): without the head, the mean of the lung Dice and
    the infection Dice over images with infection (as before); with it, the mean of the lung
    Dice, the gated infection Dice and the decision AUC (validation AUC, or the holdout's where
    validation has one class only, as for CT).
    """
    pred = predict(model, data, config)
    summary = _summary(pred.loss, pred.by_set)
    if pred.scores is None:
        return summary
    threshold, holdout_metrics = None, None
    if holdout is not None and len(holdout):
        held = predict(model, holdout, config)
        if held.scores is not None:
            threshold, holdout_metrics = _holdout(held, holdout)
    decision = decision_metrics(pred.scores, data, threshold)
    summary.update(gated_metrics(pred, data))
    summary["decision"] = {**decision, "holdout_threshold_95": threshold}
    summary["holdout"] = holdout_metrics
    summary["per_set_decision_auc"] = _per_set_auc(pred.scores, data)
    auc_value = decision["auc"]
    if auc_value is None and holdout_metrics is not None:
        auc_value = holdout_metrics["auc"]
    parts = [summary["lung_dice"], summary["gated_infection_dice"], auc_value]
    kept = [float(p) for p in parts if p is not None]
    summary["score"] = float(np.mean(kept)) if kept else 0.0
    summary["score_parts"] = "lung_dice, gated_infection_dice, decision auc (val, else holdout)"
    return summary


def _holdout(held: Predictions, holdout: Cached) -> tuple[float | None, dict[str, Any]]:
    """The threshold keeping 95 % of the holdout's COVID-19 images, and the holdout's metrics."""
    if held.scores is None:
        raise ValueError("holdout predictions without decision scores")
    positives = (holdout.label_weights > 0) & (holdout.labels > 0.5)
    threshold = threshold_keeping(held.scores[positives], HOLDOUT_SENSITIVITY)
    dice = _summary(held.loss, held.by_set)
    return threshold, {
        **decision_metrics(held.scores, holdout, threshold),
        **gated_metrics(held, holdout),
        "lung_dice": dice["lung_dice"],
        "infection_dice": dice["infection_dice"],
    }


def _per_set_auc(scores: np.ndarray, data: Cached) -> dict[str, float | None]:
    sets = np.array(data.sets)
    result = {}
    for name in sorted(set(data.sets)):
        rows = (sets == name) & (data.label_weights > 0)
        result[name] = auc(scores[rows], data.labels[rows])
    return result


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
