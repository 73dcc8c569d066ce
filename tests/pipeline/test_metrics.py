"""Metrics and the Dice+BCE loss, with the empty-mask cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.pipeline import metrics

P = np.array([[1, 1, 0, 0]], dtype=bool)
R = np.array([[1, 0, 1, 0]], dtype=bool)
EMPTY = np.zeros((1, 4), dtype=bool)
FULL = np.ones((1, 4), dtype=bool)


def test_counts_and_scores_of_a_tiny_example():
    assert metrics.confusion(P, R) == metrics.Confusion(tp=1, fp=1, fn=1, tn=1)
    assert metrics.dice(P, R) == 0.5
    assert metrics.iou(P, R) == pytest.approx(1 / 3)
    assert metrics.pixel_accuracy(P, R) == 0.5
    assert metrics.sensitivity(P, R) == 0.5
    assert metrics.specificity(P, R) == 0.5


def test_both_empty_is_perfect():
    assert metrics.dice(EMPTY, EMPTY) == 1.0
    assert metrics.iou(EMPTY, EMPTY) == 1.0
    assert metrics.sensitivity(EMPTY, EMPTY) == 1.0
    assert metrics.pixel_accuracy(EMPTY, EMPTY) == 1.0


def test_one_empty_is_zero():
    assert metrics.dice(P, EMPTY) == 0.0
    assert metrics.dice(EMPTY, R) == 0.0
    assert metrics.iou(EMPTY, R) == 0.0
    assert metrics.sensitivity(EMPTY, R) == 0.0
    assert metrics.specificity(P, EMPTY) == 0.5


def test_all_positive_reference_has_defined_specificity():
    assert metrics.specificity(FULL, FULL) == 1.0
    assert metrics.specificity(EMPTY, FULL) == 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        metrics.dice(P, np.zeros((2, 2), dtype=bool))


def test_loss_of_a_perfect_hard_prediction_is_near_zero():
    target = np.zeros((1, 1, 8, 8), dtype=np.float32)
    target[..., 2:6, 2:6] = 1
    loss = float(metrics.dice_bce_loss(target, target))
    assert 0 <= loss < 1e-4


def test_loss_value_by_hand():
    prob = np.full((1, 1, 2, 2), 0.5, dtype=np.float64)
    target = np.array([[[[1, 0], [0, 0]]]], dtype=np.float64)
    bce = math.log(2)
    soft_dice = 1 - (2 * 0.5 + 1) / (2.0 + 1 + 1)
    assert float(metrics.dice_bce_loss(prob, target)) == pytest.approx(bce + soft_dice)


def test_weights_leave_channels_out():
    rng = np.random.default_rng(0)
    prob = rng.random((2, 2, 4, 4))
    target = (rng.random((2, 2, 4, 4)) > 0.5).astype(np.float64)
    only_first = metrics.dice_bce_loss(prob[:1, :1], target[:1, :1])
    weight = np.array([[1, 0], [0, 0]])
    assert float(metrics.dice_bce_loss(prob, target, weight)) == pytest.approx(float(only_first))
    assert float(metrics.dice_bce_loss(prob, target, np.zeros((2, 2)))) == 0.0


def test_loss_is_the_same_on_torch():
    import torch  # the train extra, installed by `make test`

    rng = np.random.default_rng(1)
    prob = rng.random((2, 2, 5, 5)).astype(np.float32)
    target = (rng.random((2, 2, 5, 5)) > 0.5).astype(np.float32)
    want = float(metrics.dice_bce_loss(prob, target))
    got = metrics.dice_bce_loss(torch.tensor(prob, requires_grad=True), torch.tensor(target))
    got.backward()
    assert float(got.detach()) == pytest.approx(want, rel=1e-6)
