"""Training: datasets on both layouts, the split by group, augmentation, masked loss, the loop."""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.datasets import read_set  # noqa: E402
from service.pipeline.metrics import dice_bce_loss  # noqa: E402
from service.pipeline.params import PreprocessParams  # noqa: E402
from training import checkpoint as ckpt  # noqa: E402
from training.augment import AugmentParams, augment  # noqa: E402
from training.cli import overrides, parse_args  # noqa: E402
from training.config import JobConfig, SetSpec, job, jobs  # noqa: E402
from training.data import cache, load_sample, split_by_group, split_set  # noqa: E402
from training.loop import Trainer, train_job  # noqa: E402
from training.networks import build  # noqa: E402

pytestmark = pytest.mark.train
SIZE = 32


def make_set(root: Path, groups: int = 4, per_group: int = 2, size: int = 48) -> Path:
    """A small labelled set in our layout: bright discs ("lungs") on a dark background.

    Odd-numbered images have no infection mask (the masked-loss case); image ids ``g<i>-<j>``.
    """
    for sub in ("images", "masks/lung", "masks/infection"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for g in range(groups):
        for j in range(per_group):
            sample_id = f"g{g}-{j}"
            lung = np.zeros((size, size), np.uint8)
            cv2.circle(lung, (size // 3, size // 2), size // 5 + j, 255, -1)
            cv2.circle(lung, (2 * size // 3, size // 2), size // 5, 255, -1)
            infection = np.zeros_like(lung)
            cv2.circle(infection, (size // 3, size // 2), size // 10, 255, -1)
            image = np.clip(
                30 + 0.6 * lung + 0.3 * infection + rng.normal(0, 8, lung.shape), 0, 255
            )
            cv2.imwrite(str(root / "images" / f"{sample_id}.png"), image.astype(np.uint8))
            cv2.imwrite(str(root / "masks/lung" / f"{sample_id}.png"), lung)
            if (g * per_group + j) % 2 == 0:
                cv2.imwrite(str(root / "masks/infection" / f"{sample_id}.png"), infection)
            rows.append(
                [
                    sample_id,
                    f"images/{sample_id}.png",
                    f"patient-{g}",
                    "COVID-19",
                    "yes",
                    "CXR",
                    "synthetic",
                    "CC0",
                ]
            )
    with (root / "meta.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "image", "group", "finding", "covid", "modality", "source", "license"]
        )
        writer.writerows(rows)
    return root


def tiny_config(set_name: str, **changes: object) -> JobConfig:
    """A config that trains in a second: 4-channel U-Net of depth 2 at 32x32."""
    base = JobConfig(
        name="unet-cxr",
        kind="unet",
        modality="cxr",
        net={"base_channels": 4, "depth": 2},
        sets=(SetSpec(set_name, "split"),),
        preprocess=PreprocessParams(size=(SIZE, SIZE)),
        epochs=2,
        batch_size=4,
        lr=3e-3,
        val_fraction=0.25,
        patience=5,
        threads=1,
        version="0.0.1",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture()
def our_set(tmp_path: Path) -> Path:
    return make_set(tmp_path / "data" / "synthetic")


def test_our_layout_is_cached_with_masks_and_weights(our_set: Path) -> None:
    labelled = read_set(our_set)
    items = [(s, SetSpec("synthetic")) for s in labelled.samples]
    data = cache(items, PreprocessParams(size=(SIZE, SIZE)))
    assert data.images.shape == (8, SIZE, SIZE) and data.images.dtype == np.float16
    assert data.masks.shape == (8, 2, SIZE, SIZE) and data.masks.dtype == np.uint8
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    assert data.weights[:, 0].tolist() == [1.0] * 8  # every image has a lung mask
    assert data.weights[:, 1].tolist() == [1.0, 0.0] * 4  # odd ones lack an infection mask
    assert data.masks[1, 1].sum() == 0 and data.masks[0, 1].sum() > 0


def test_covid_qu_ex_layout_keeps_the_official_split(data_dir: Path) -> None:
    labelled = read_set(data_dir / "files" / "covid-qu-ex-layout")
    train, val = split_set(labelled, SetSpec("covid-qu-ex-layout"), 0.2, seed=1)
    assert train == [] and len(val) == 12  # the fixture holds Val images only
    image, masks, weights = load_sample(val[0], PreprocessParams(size=(64, 64)))
    assert image.shape == (64, 64) and image.dtype == np.float32
    assert masks.shape == (2, 64, 64) and weights.tolist() == [1.0, 1.0]
    assert masks[0].mean() > 0.1  # lungs are a good part of a CXR


def test_transposed_sets_are_transposed_on_load(our_set: Path) -> None:
    sample = read_set(our_set).samples[0]
    params = PreprocessParams(size=(48, 48))
    image, masks, _ = load_sample(sample, params)
    image_t, masks_t, _ = load_sample(sample, params, transpose=True)
    np.testing.assert_array_equal(image_t, image.T)
    np.testing.assert_array_equal(masks_t[0], masks[0].T)


def test_split_by_group_is_disjoint_complete_and_seeded(our_set: Path) -> None:
    samples = read_set(our_set).samples
    train, val = split_by_group(samples, 0.25, seed=7)
    assert {s.group for s in train}.isdisjoint({s.group for s in val})
    assert len(train) + len(val) == len(samples) and len({s.group for s in val}) == 1
    again = split_by_group(list(reversed(samples)), 0.25, seed=7)[1]
    assert {s.id for s in again} == {s.id for s in val}  # depends on groups + seed only
    others = {
        frozenset(s.group for s in split_by_group(samples, 0.25, seed=k)[1]) for k in range(8)
    }
    assert len(others) > 1


def test_augmentation_keeps_image_and_masks_aligned() -> None:
    mask = np.zeros((2, 64, 64), np.uint8)
    mask[0, 20:44, 8:28] = 1  # a block on the image's left
    image = mask[0].astype(np.float32)
    geometry_only = AugmentParams(brightness=0, contrast=0, gamma=0, noise_std=0, blur_prob=0)
    rng = np.random.default_rng(3)
    for _ in range(10):
        out, out_mask = augment(image, mask, geometry_only, rng)
        assert out_mask.dtype == np.uint8 and out_mask.shape == mask.shape
        agree = np.mean((out >= 0.5) == out_mask[0].astype(bool))
        assert agree > 0.995
        cols = np.nonzero(out_mask[0].any(axis=0))[0]
        assert cols.mean() < 32  # never flipped left-right
    noisy, _ = augment(image, mask, AugmentParams(), rng)
    assert noisy.dtype == np.float32 and noisy.min() >= 0.0 and noisy.max() <= 1.0


def test_masked_loss_ignores_the_missing_channel() -> None:
    target = torch.zeros(2, 2, 8, 8)
    target[:, 1, 2:6, 2:6] = 1
    weight = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    prob = torch.full((2, 2, 8, 8), 0.3, requires_grad=True)
    loss = dice_bce_loss(prob, target, weight)
    loss.backward()
    assert prob.grad is not None
    assert float(prob.grad[:, 0].abs().sum()) == 0.0 and float(prob.grad[:, 1].abs().sum()) > 0
    changed = prob.detach().clone()
    changed[:, 0] = 0.9  # a different lung prediction changes nothing
    assert float(dice_bce_loss(changed, target, weight)) == pytest.approx(float(loss.detach()))


@pytest.mark.parametrize("kind", ["unet", "cnn"])
def test_a_few_training_steps_lower_the_loss(kind: str) -> None:
    torch.manual_seed(0)
    net = build(kind, base_channels=4, depth=2)
    assert sum(p.numel() for p in net.parameters()) < 20_000
    x = torch.randn(4, 1, SIZE, SIZE)
    y = (x > 0.5).float().repeat(1, 2, 1, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        prob = net(x)
        p = prob.detach()
        assert prob.shape == (4, 2, SIZE, SIZE) and 0 <= float(p.min()) <= float(p.max()) <= 1
        loss = dice_bce_loss(prob, y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_train_job_writes_checkpoints_log_and_split_and_resumes(
    our_set: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "runs" / "unet-cxr"
    summary = train_job(tiny_config("synthetic"), our_set.parent, run_dir)
    for name in (
        "config.json",
        "split.json",
        "metrics.jsonl",
        "last.pt",
        "best.pt",
        "training.json",
    ):
        assert (run_dir / name).is_file(), name
    assert summary["epochs_run"] == 2 and summary["sample_counts"]["synthetic"]["val"] == 2
    split = json.loads((run_dir / "split.json").read_text())["sets"]["synthetic"]
    assert len(split["val_groups"]) == 1 and not set(split["train"]) & set(split["val"])
    record = ckpt.read_metrics(run_dir)[-1]
    assert {"train_loss", "val", "lr", "train_images_per_s"} <= set(record)
    assert record["val"]["lung_dice"] is not None
    resumed = train_job(tiny_config("synthetic"), our_set.parent, run_dir, resume=True, epochs=3)
    assert resumed["epochs_run"] == 3
    assert [r["epoch"] for r in ckpt.read_metrics(run_dir)] == [1, 2, 3]


def test_presets_cover_all_four_networks_and_keep_gb_external() -> None:
    configs = jobs("all", "all", "full")
    assert sorted(c.name for c in configs) == ["cnn-ct", "cnn-cxr", "unet-ct", "unet-cxr"]
    cxr = job("unet", "cxr", "small")
    roles = {s.name: s.role for s in cxr.sets}
    assert roles["cxr-covid19-gb"] == "external"
    medseg = next(s for s in job("unet", "ct", "full").sets if s.name == "ct-covid19-medseg")
    assert medseg.transpose and medseg.role == "train"
    assert JobConfig.from_dict(json.loads(json.dumps(cxr.to_dict()))) == cxr


def test_a_normal_film_without_infection_mask_trains_an_empty_infection(our_set: Path) -> None:
    sample = read_set(our_set).samples[1]
    assert sample.infection is None
    _, masks, weights = load_sample(sample, PreprocessParams(size=(SIZE, SIZE)), no_infection=True)
    assert weights.tolist() == [1.0, 1.0] and masks[1].sum() == 0


def test_cli_overrides_and_init_from_a_checkpoint(our_set: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "first"
    train_job(tiny_config("synthetic", epochs=1), our_set.parent, run_dir)
    args = parse_args(["--lr", "0.01", "--version", "2.0.0", "--init", str(run_dir / "best.pt")])
    config = overrides(tiny_config("synthetic"), args)
    assert (config.lr, config.version, config.init_from) == (
        0.01,
        "2.0.0",
        str(run_dir / "best.pt"),
    )
    started = Trainer(config, our_set.parent, tmp_path / "runs" / "second").model.state_dict()
    best = ckpt.load(run_dir / "best.pt")["model"]
    assert all(torch.equal(started[k], best[k]) for k in best)


# --- 2.0.0: decision head, warm start from ONNX, holdout, clinical augmentation ---------------


def tiny_onnx(tmp_path: Path, kind: str = "unet", **net: object) -> tuple[Path, torch.nn.Module]:
    """A tiny network with non-trivial BatchNorm statistics, exported as the export does
    (TorchScript exporter, eval mode: BatchNorm fused into the convolutions)."""
    torch.manual_seed(1)
    model = build(kind, base_channels=4, depth=2, **net)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.3, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    model.eval()
    path = tmp_path / f"{kind}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, as export
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, SIZE, SIZE),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
        )
    return path, model


@pytest.mark.parametrize("kind", ["unet", "cnn"])
def test_the_score_head_adds_an_image_level_output(kind: str) -> None:
    plain = build(kind, base_channels=4, depth=2)
    headed = build(kind, base_channels=4, depth=2, score_head=True)
    x = torch.randn(3, 1, SIZE, SIZE)
    assert isinstance(plain(x), torch.Tensor) and plain(x).shape == (3, 2, SIZE, SIZE)
    with torch.no_grad():
        prob, score = headed.eval()(x)
    assert prob.shape == (3, 2, SIZE, SIZE) and score.shape == (3, 1)
    assert 0.0 <= float(score.min()) <= float(score.max()) <= 1.0
    missing, unexpected = headed.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith("score.") for k in missing)


@pytest.mark.parametrize("kind", ["unet", "cnn"])
def test_warm_start_from_a_fused_onnx_graph_reproduces_it(kind: str, tmp_path: Path) -> None:
    import onnx

    from training.warmstart import init_from_onnx, onnx_probabilities, torch_probabilities

    path, _ = tiny_onnx(tmp_path, kind)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" not in ops  # fused, as in the shipped files
    torch.manual_seed(5)
    calibration = torch.randn(24, 1, SIZE, SIZE)
    fresh = build(kind, base_channels=4, depth=2, score_head=True)
    error = init_from_onnx(fresh, path, calibration)
    assert error < 1e-4
    # train mode on the calibration batch: batch statistics = the re-inflated ones
    train_mode = torch_probabilities(fresh, calibration, train_mode=True)
    reference = onnx_probabilities(path, calibration)
    assert float(np.abs(train_mode - reference).max()) < 1e-3
    other = torch.randn(4, 1, SIZE, SIZE)
    assert np.abs(torch_probabilities(fresh, other) - onnx_probabilities(path, other)).max() < 1e-4
    with pytest.raises(ValueError, match=r"architecture|convolutions"):
        init_from_onnx(build(kind, base_channels=8, depth=2), path, calibration)


def test_decision_loss_uses_only_labelled_rows_and_balances_classes() -> None:
    from training.steps import class_weights, decision_loss

    score = torch.tensor([[0.9], [0.2], [0.6]], requires_grad=True)
    labels = torch.tensor([1.0, 0.0, 1.0])
    weights = torch.tensor([1.0, 1.0, 0.0])
    loss = decision_loss(score, labels, weights)
    loss.backward()
    assert score.grad is not None and float(score.grad[2, 0]) == 0.0
    expected = -(np.log(0.9) + np.log(0.8)) / 2
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(decision_loss(score, labels, torch.zeros(3)).detach()) == 0.0

    class Rows:
        labels = np.array([1, 1, 1, 0, 0], np.float32)
        label_weights = np.array([1, 1, 1, 1, 0], np.float32)

    neg, pos = class_weights(Rows(), balance=True)  # type: ignore[arg-type]
    assert (neg, pos) == pytest.approx((2.0, 2 / 3))
    assert class_weights(Rows(), balance=False) == (1.0, 1.0)  # type: ignore[arg-type]


def test_auc_and_the_holdout_threshold() -> None:
    from training.validation import auc, threshold_keeping

    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # many ties
    labels = (rng.random(60) < 0.4).astype(np.float32)
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auc(scores, labels) == pytest.approx(brute)
    assert auc(scores, np.ones(60)) is None
    positives = np.linspace(0.0, 1.0, 101)
    threshold = threshold_keeping(positives, 0.95)
    assert threshold is not None and np.mean(positives >= threshold) >= 0.95
    assert np.mean(positives >= threshold + 0.011) < 0.95


def test_clinical_augmentations_keep_masks_except_under_collimation() -> None:
    from training.augment import burn_markers, collimate, jpeg, tone_curve, unsharp

    rng = np.random.default_rng(2)
    image = np.tile(np.linspace(0.1, 0.9, 64, dtype=np.float32), (64, 1))
    masks = np.ones((2, 64, 64), np.uint8)
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None]
    for _ in range(20):
        curve = tone_curve(ramp, 0.15, rng)[0]
        assert np.all(np.diff(curve) >= -1e-6)  # monotone: never an inversion
        assert curve.min() >= 0.0 and curve.max() <= 1.0
    sharp = unsharp(image, AugmentParams(), rng)
    marked = burn_markers(image, rng)
    compressed = jpeg(image, 30)
    for out in (sharp, marked, compressed):
        assert out.dtype == np.float32 and out.shape == image.shape
        assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(compressed - image).max() > 0
    cut_image, cut_masks = collimate(image, masks, 0.15, np.random.default_rng(4))
    band = cut_masks[0] == 0
    assert band.any() and band.mean() <= 1 - 0.85**2 + 1e-9  # at most 15 % from each side
    assert np.all(cut_masks[1] == cut_masks[0])
    assert np.all(cut_image[~band] == image[~band])
    assert len(np.unique(cut_image[band])) <= 4  # flat bands
    every = AugmentParams(
        collimation_prob=0, marker_prob=1, jpeg_prob=1, tone_prob=1, unsharp_prob=1
    )
    out, out_masks = augment(image, masks, every, rng)
    assert out.dtype == np.float32 and np.all(out_masks == 1)  # geometry only moves nothing here


def test_holdout_is_stratified_seeded_and_never_trained(our_set: Path, tmp_path: Path) -> None:
    from training.data import hold_out

    samples = read_set(our_set).samples
    spec = SetSpec("synthetic", holdout_fraction=0.25)
    train, held = hold_out(list(samples), spec, seed=3)
    assert len(held) == 2 and not {s.id for s in train} & {s.id for s in held}
    assert [s.id for s in hold_out(list(samples), spec, seed=3)[1]] == [s.id for s in held]
    tail = hold_out(list(samples), SetSpec("series", holdout_tail=1 / 3), seed=0)
    assert [s.id for s in tail[1]] == [s.id for s in samples[-3:]]  # a contiguous block


def test_a_job_with_the_decision_head_records_holdout_and_resumes(
    our_set: Path, tmp_path: Path
) -> None:
    config = tiny_config(
        "synthetic",
        net={"base_channels": 4, "depth": 2, "score_head": True},
        sets=(
            SetSpec(
                "synthetic",
                "split",
                decision_findings=("*",),
                holdout_fraction=0.25,
                no_infection_findings=("*",),
            ),
        ),
    )
    run_dir = tmp_path / "runs" / "unet-cxr"
    train_job(config, our_set.parent, run_dir)
    split = json.loads((run_dir / "split.json").read_text())["sets"]["synthetic"]
    assert split["holdout"] and not set(split["holdout"]) & set(split["train"])
    record = ckpt.read_metrics(run_dir)[-1]
    assert "decision_loss" in record["train_losses"]
    assert {"gated_infection_dice", "decision", "holdout"} <= set(record["val"])
    resumed = train_job(config, our_set.parent, run_dir, resume=True, epochs=3)
    assert resumed["epochs_run"] == 3


def test_a_run_warm_started_from_onnx_logs_epoch_zero(our_set: Path, tmp_path: Path) -> None:
    path, _ = tiny_onnx(tmp_path)
    config = tiny_config(
        "synthetic",
        net={"base_channels": 4, "depth": 2, "score_head": True},
        init_from=str(path),
        epochs=1,
    )
    run_dir = tmp_path / "runs" / "warm"
    summary = train_job(config, our_set.parent, run_dir)
    assert summary["warm_start"]["max_abs_diff"] < 1e-4
    assert [r["epoch"] for r in ckpt.read_metrics(run_dir)] == [0, 1]
    train_job(config, our_set.parent, run_dir, resume=True, epochs=2)  # no second warm start
    assert [r["epoch"] for r in ckpt.read_metrics(run_dir)] == [0, 1, 2]


def test_the_finetune_preset_is_version_2_with_the_head_and_a_holdout() -> None:
    configs = jobs("all", "all", "finetune")
    assert sorted(c.name for c in configs) == ["cnn-ct", "cnn-cxr", "unet-ct", "unet-cxr"]
    for config in configs:
        assert config.version == "2.0.0" and config.net["score_head"] is True
        assert JobConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert any(s.holdout_fraction or s.holdout_tail for s in config.sets)
    cxr = {s.name: s for s in job("unet", "cxr", "finetune").sets}
    assert cxr["cxr-covid19-gb"].role == "external"
    assert cxr["cxr-shenzhen"].trains_decision("normal")
    assert not cxr["cxr-shenzhen"].trains_decision("tuberculosis")
    ct = {s.name: s for s in job("unet", "ct", "finetune").sets}
    series = ct["files/ct-series-chest-hu"]
    assert series.layout == "dicom-series" and series.holdout_tail > 0
    assert job("unet", "cxr", "finetune").augment.jpeg_prob > 0
    assert job("unet", "cxr", "full").augment.jpeg_prob == 0  # 1.x configs unchanged
    args = parse_args(["--preset", "finetune", "--init", "models/unet-cxr/2.0.0/model.onnx"])
    assert overrides(job("unet", "cxr", "finetune"), args).init_from.endswith("model.onnx")
