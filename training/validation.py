"""One validation pass over cached data, and the decision's figures.

Validation reports, besides the Dice scores of the masks (threshold 0.5 at the model's
resolution, no post-processing), the decision's AUC (validation and holdout), its sensitivity
and specificity at 0.5 and at the threshold that keeps 95 % of the holdout's COVID-19 images,
and the **gated** infection Dice: over every COVID-19 image with an infection reference, an
image whose score is below 0.5 (missed) counts 0, as it would in a service that shows the
infection map only when the decision says "infection present".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from service.pipeline import metrics
from service.pipeline.metrics import dice_bce_loss
from training.config import JobConfig
from training.data import Cached
from training.networks.score import split_output
from training.steps import Scores, batches

DECISION_THRESHOLD = 0.5
HOLDOUT_SENSITIVITY = 0.95


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
