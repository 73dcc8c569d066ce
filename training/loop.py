"""The training loop of one job: data, network, optimiser, early stopping, checkpoints, resume.

A run directory holds ``config.json``, ``split.json`` (the sample ids of both sides),
``metrics.jsonl`` (one record per epoch), ``last.pt`` and ``best.pt`` (best validation score)
and ``training.json`` (a summary the export copies into the model card).
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
import torch
from torch import nn

from training import checkpoint as ckpt
from training.config import JobConfig
from training.data import Cached, cache_splits, make_splits, write_split
from training.networks import build
from training.steps import train_epoch, validate

log = logging.getLogger(__name__)


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
        if config.init_from:
            self.model.load_state_dict(ckpt.load(Path(config.init_from))["model"])
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

    def prepare_data(self) -> tuple[Cached, Cached, dict[str, Any]]:
        """Split, record the split, cache both sides; returns them and the sample counts."""
        cfg = self.config
        splits = make_splits(self.data_root, cfg.sets, cfg.val_fraction, cfg.seed)
        write_split(splits, self.run_dir / ckpt.SPLIT_FILE, cfg.seed)
        train, val = cache_splits(splits, cfg.preprocess)
        counts = {s.spec.name: {"train": len(s.train), "val": len(s.val)} for s in splits}
        return train, val, counts

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

    def epoch(self, train: Cached, val: Cached) -> dict[str, Any]:
        """Train and validate one epoch; updates the early-stopping state; returns its record."""
        cfg, started = self.config, time.perf_counter()
        number = self.state["epoch"] + 1
        lr = self.optimizer.param_groups[0]["lr"]
        loss = train_epoch(self.model, self.optimizer, train, cfg, self.rng, f"{cfg.name} {number}")
        train_s = time.perf_counter() - started
        self.scheduler.step()
        scores = validate(self.model, val, cfg)
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
            "train_loss": loss,
            "val": scores,
            "train_images_per_s": len(train) / train_s,
            "seconds": time.perf_counter() - started,
        }

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train until ``epochs`` or early stopping; writes ``training.json`` and returns it."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / ckpt.CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        train, val, counts = self.prepare_data()
        if resume and (self.run_dir / ckpt.LAST).is_file():
            self.resume()
        elif (self.run_dir / ckpt.METRICS_LOG).is_file():
            (self.run_dir / ckpt.METRICS_LOG).unlink()
        while self.state["epoch"] < cfg.epochs and self.state["bad_epochs"] < cfg.patience:
            record = self.epoch(train, val)
            ckpt.append_metrics(self.run_dir, record)
            v = record["val"]
            log.info(
                "%s epoch %d: loss %.4f, val loss %.4f lung %s infection %s fp %s (%.0f s)",
                cfg.name,
                record["epoch"],
                record["train_loss"],
                v["loss"],
                _fmt(v["lung_dice"]),
                _fmt(v["infection_dice"]),
                _fmt(v["infection_fp_rate"]),
                record["seconds"],
            )
        return self.summarise(counts)

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
            "wall_time_s": round(self.state["elapsed_s"], 1),
            "hardware": hardware(self.config.threads),
        }
        (self.run_dir / ckpt.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


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
