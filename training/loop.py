"""The training loop of one job: data, network, optimiser, early stopping, checkpoints, resume.

A run directory holds ``config.json``, ``split.json`` (the sample ids of train, validation and
holdout), ``metrics.jsonl`` (one record per epoch; with a warm start from ONNX also epoch 0, the
shipped model's validation before any training), ``last.pt`` and ``best.pt`` (best validation
score) and ``training.json`` (a summary the export copies into the model card).

``init_from`` may name a ``.pt`` checkpoint (its weights; a decision head it lacks starts fresh)
or a shipped ``model.onnx`` (:func:`training.warmstart.init_from_onnx`, after the data are
cached: its BatchNorms are re-inflated on training images).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from service.pipeline.preprocess import normalise
from training import checkpoint as ckpt
from training.config import JobConfig
from training.data import Cached, cache_splits, calibration_batch, make_splits, write_split
from training.networks import build
from training.steps import train_epoch
from training.validation import validate
from training.warmstart import init_from_onnx

log = logging.getLogger(__name__)
CALIBRATION_IMAGES = 64
MAX_WARM_START_ERROR = 1e-4


def hardware(threads: int) -> dict[str, Any]:
    """What the run ran on (recorded in the model card)."""
    return {
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


class Trainer:
    """Trains one :class:`JobConfig` into ``run_dir``; :meth:`run` does everything."""

    def __init__(self, config: JobConfig, data_root: Path, run_dir: Path) -> None:
        self.config = config
        self.data_root = data_root
        self.run_dir = run_dir
        torch.set_num_threads(config.threads)
        cv2.setNumThreads(1)
        self.rng = ckpt.seed_everything(config.seed)
        self.model: nn.Module = build(config.kind, **config.net)
        if config.init_from and not is_onnx(config.init_from):
            load_weights(self.model, ckpt.load(Path(config.init_from))["model"])
        if config.channels_last:  # faster convolutions on CPU (oneDNN), same results
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=max(config.epochs, 1), eta_min=config.lr * 0.02
        )
        self.state: dict[str, Any] = {
            "epoch": 0,
            "best_score": -1.0,
            "best_epoch": 0,
            "bad_epochs": 0,
            "elapsed_s": 0.0,
        }

    def prepare_data(self) -> tuple[Cached, Cached, Cached, dict[str, Any]]:
        """Split, record the split, cache every side; returns them and the sample counts."""
        cfg = self.config
        splits = make_splits(self.data_root, cfg.sets, cfg.val_fraction, cfg.seed)
        write_split(splits, self.run_dir / ckpt.SPLIT_FILE, cfg.seed)
        train, val, holdout = cache_splits(splits, cfg.preprocess, cfg.infection_on_negatives)
        counts = {
            s.spec.name: {"train": len(s.train), "val": len(s.val), "holdout": len(s.holdout)}
            for s in splits
        }
        return train, val, holdout, counts

    def warm_start(self, train: Cached) -> float:
        """Load the ONNX model of ``init_from``, BatchNorms re-inflated on training images;
        returns (and records in the state) the max |torch - onnxruntime| on them."""
        cfg = self.config
        rows = calibration_batch(train, CALIBRATION_IMAGES, cfg.seed)
        images = normalise(train.images[rows].astype(np.float32), cfg.preprocess)
        error = init_from_onnx(
            self.model, Path(str(cfg.init_from)), torch.from_numpy(images[:, None])
        )
        if error > MAX_WARM_START_ERROR:
            raise ValueError(f"warm start from {cfg.init_from}: torch and ONNX differ by {error}")
        self.state["warm_start"] = {
            "onnx": cfg.init_from,
            "calibration_images": len(rows),
            "max_abs_diff": error,
        }
        return error

    def resume(self) -> None:
        """Continue from ``last.pt``: weights, optimiser, schedule, counters and random states."""
        payload = ckpt.load(self.run_dir / ckpt.LAST)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state = payload["state"]
        ckpt.restore_rng(payload["rng"], self.rng)
        ckpt.truncate_metrics(self.run_dir, self.state["epoch"])
        log.info("%s: resumed after epoch %d", self.config.name, self.state["epoch"])

    def save(self, score: float, improved: bool) -> None:
        """Write ``last.pt`` (everything needed to resume) and, when improved, ``best.pt``."""
        weights = self.model.state_dict()
        ckpt.save(
            self.run_dir / ckpt.LAST,
            {
                "model": weights,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "state": self.state,
                "rng": ckpt.rng_state(self.rng),
                "config": self.config.to_dict(),
            },
        )
        if improved:
            ckpt.save(
                self.run_dir / ckpt.BEST,
                {
                    "model": weights,
                    "epoch": self.state["epoch"],
                    "score": score,
                    "config": self.config.to_dict(),
                },
            )

    def epoch(self, train: Cached, val: Cached, holdout: Cached | None = None) -> dict[str, Any]:
        """Train and validate one epoch; updates the early-stopping state; returns its record."""
        cfg, started = self.config, time.perf_counter()
        number = self.state["epoch"] + 1
        lr = self.optimizer.param_groups[0]["lr"]
        losses = train_epoch(
            self.model, self.optimizer, train, cfg, self.rng, f"{cfg.name} {number}"
        )
        train_s = time.perf_counter() - started
        self.scheduler.step()
        scores = validate(self.model, val, cfg, holdout)
        improved = scores["score"] > self.state["best_score"]
        self.state.update(
            epoch=number, elapsed_s=self.state["elapsed_s"] + time.perf_counter() - started
        )
        if improved:
            self.state.update(best_score=scores["score"], best_epoch=number, bad_epochs=0)
        else:
            self.state["bad_epochs"] += 1
        self.save(scores["score"], improved)
        return {
            "epoch": number,
            "lr": lr,
            "train_loss": losses["loss"],
            "train_losses": losses,
            "val": scores,
            "train_images_per_s": len(train) / train_s,
            "seconds": time.perf_counter() - started,
        }

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train until ``epochs`` or early stopping; writes ``training.json`` and returns it."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / ckpt.CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        train, val, holdout, counts = self.prepare_data()
        if resume and (self.run_dir / ckpt.LAST).is_file():
            self.resume()
        else:
            if (self.run_dir / ckpt.METRICS_LOG).is_file():
                (self.run_dir / ckpt.METRICS_LOG).unlink()
            if cfg.init_from and is_onnx(cfg.init_from):
                self.warm_start(train)
                self.epoch_zero(val, holdout)
        while self.state["epoch"] < cfg.epochs and self.state["bad_epochs"] < cfg.patience:
            record = self.epoch(train, val, holdout)
            ckpt.append_metrics(self.run_dir, record)
            log_record(cfg.name, record)
        return self.summarise(counts)

    def epoch_zero(self, val: Cached, holdout: Cached) -> dict[str, Any]:
        """Validate the warm-started network before any training; logged as epoch 0 (its
        decision head is untrained, so its AUC is chance; it never becomes ``best.pt``)."""
        started = time.perf_counter()
        record = {
            "epoch": 0,
            "lr": None,
            "train_loss": None,
            "warm_start": self.state.get("warm_start"),
            "val": validate(self.model, val, self.config, holdout),
            "seconds": time.perf_counter() - started,
        }
        ckpt.append_metrics(self.run_dir, record)
        log_record(self.config.name, record)
        return record

    def summarise(self, counts: dict[str, Any]) -> dict[str, Any]:
        """Write ``training.json``: counts, split file hash, epochs, best epoch, time, hardware."""
        split_path = self.run_dir / ckpt.SPLIT_FILE
        summary = {
            "name": self.config.name,
            "sample_counts": counts,
            "split": {
                "file": ckpt.SPLIT_FILE,
                "seed": self.config.seed,
                "sha256": hashlib.sha256(split_path.read_bytes()).hexdigest(),
            },
            "epochs_run": self.state["epoch"],
            "best_epoch": self.state["best_epoch"],
            "best_val_score": self.state["best_score"],
            "early_stopped": self.state["epoch"] < self.config.epochs,
            "warm_start": self.state.get("warm_start"),
            "wall_time_s": round(self.state["elapsed_s"], 1),
            "hardware": hardware(self.config.threads),
        }
        (self.run_dir / ckpt.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def log_record(name: str, record: dict[str, Any]) -> None:
    """One log line per epoch record: losses, Dice, false positives, decision AUC."""
    v = record["val"]
    decision = v.get("decision") or {}
    holdout = v.get("holdout") or {}
    log.info(
        "%s epoch %d: loss %s, val loss %.4f lung %s infection %s fp %s | gated infection %s "
        "gated fp %s AUC val %s holdout %s | score %.4f (%.0f s)",
        name,
        record["epoch"],
        _fmt(record["train_loss"]),
        v["loss"],
        _fmt(v["lung_dice"]),
        _fmt(v["infection_dice"]),
        _fmt(v["infection_fp_rate"]),
        _fmt(v.get("gated_infection_dice")),
        _fmt(v.get("gated_infection_fp_rate")),
        _fmt(decision.get("auc")),
        _fmt(holdout.get("auc")),
        v["score"],
        record["seconds"],
    )
    for set_name, per in v.get("per_set", {}).items():
        log.info(
            "%s epoch %d   %s: lung %s infection %s fp %s AUC %s",
            name,
            record["epoch"],
            set_name,
            _fmt(per["lung_dice"]),
            _fmt(per["infection_dice"]),
            _fmt(per["infection_fp_rate"]),
            _fmt((v.get("per_set_decision_auc") or {}).get(set_name)),
        )


def is_onnx(path: str) -> bool:
    """``init_from`` names an ONNX model (warm start) rather than a ``.pt`` checkpoint."""
    return Path(path).suffix.lower() == ".onnx"


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load a checkpoint's weights; only a decision head (``score.*``) may be missing from it
    (a 1.x checkpoint into a network with the head: the head starts fresh)."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    wrong = [k for k in missing if not k.startswith("score.")] + list(unexpected)
    if wrong:
        raise ValueError(f"checkpoint does not fit the network: {wrong[:5]}")


def train_job(
    config: JobConfig,
    data_root: Path,
    run_dir: Path,
    resume: bool = False,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Train one job (``epochs`` overrides the config's) and return its summary."""
    if epochs is not None:
        config = replace(config, epochs=epochs)
    return Trainer(config, data_root, run_dir).run(resume)


def set_seed_in(config: JobConfig, seed: int | None) -> JobConfig:
    """The config with ``seed`` replaced when given."""
    return config if seed is None else replace(config, seed=seed)


__all__ = ["Trainer", "hardware", "set_seed_in", "train_job"]
