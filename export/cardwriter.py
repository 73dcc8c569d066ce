"""The model card of an exported run: the service contract plus provenance (docs/models.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from export.onnx_export import INPUT_NAME, OPSET, OUTPUT_NAME, SCORE_NAME, Parity
from export.provenance import INTENDED_USE
from service.models.base import LABELS
from service.models.card import ModelCard, TensorSpec, sha256_of
from service.pipeline.params import DecisionParams
from training.config import JobConfig

SHAPE: list[int | str] = ["batch", 1, "height", "width"]


def training_record(
    config: JobConfig, summary: dict[str, Any], split_sha256: str
) -> dict[str, Any]:
    """The card's ``training`` object: data, split, schedule, hyperparameters, time, hardware."""
    return {
        "sets": [
            {
                "name": s.name,
                "role": s.role,
                "transposed_on_load": s.transpose,
                "empty_infection_mask_for_findings": list(s.no_infection_findings),
                "samples": summary["sample_counts"].get(s.name, {}),
            }
            for s in config.sets
        ],
        "split": {
            "method": "COVID-QU-Ex: official Train/Val; other sets: by group (patient), "
            f"{config.val_fraction:.0%} of groups to validation, seeded permutation",
            "seed": config.seed,
            "ids_file": "split.json",
            "ids_sha256": split_sha256,
        },
        "initialised_from": config.init_from,
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "early_stopped": summary["early_stopped"],
        "best_val_score": summary["best_val_score"],
        "hyperparameters": {
            "network": {"kind": config.kind, **config.net},
            "input_size": list(config.preprocess.size),
            "epochs": config.epochs,
            "patience": config.patience,
            "batch_size": config.batch_size,
            "optimizer": "AdamW",
            "lr": config.lr,
            "lr_schedule": "cosine to lr/50",
            "weight_decay": config.weight_decay,
            "loss": "service.pipeline.metrics.dice_bce_loss (masked where a set lacks a mask)"
            + (
                f" + {config.decision_weight} x BCE of the decision head (class-balanced)"
                if config.net.get("score_head")
                else ""
            ),
            "infection_on_negatives": config.infection_on_negatives,
            "augmentation": config.augment.__dict__,
            "early_stopping": "mean of validation lung Dice and infection Dice (threshold 0.5)",
        },
        "wall_time_s": summary["wall_time_s"],
        "hardware": summary["hardware"],
    }


def build_card(
    config: JobConfig,
    onnx_path: Path,
    provenance: dict[str, Any],
    decision: DecisionParams | None = None,
) -> ModelCard:
    """The :class:`ModelCard` of ``onnx_path`` (sha256 computed here) with ``provenance``; with
    ``decision`` (a network with a decision head) a schema-2 card with its score output."""
    return ModelCard(
        name=config.name,
        version=config.version,
        kind="unet" if config.kind == "unet" else "cnn",
        modality="ct" if config.modality == "ct" else "cxr",
        input=TensorSpec(INPUT_NAME, list(SHAPE)),
        output=TensorSpec(OUTPUT_NAME, ["batch", len(LABELS), "height", "width"]),
        labels=LABELS,
        preprocess=config.preprocess,
        postprocess=config.postprocess,
        sha256=sha256_of(onnx_path),
        score_output=TensorSpec(SCORE_NAME, ["batch", 1]) if decision is not None else None,
        decision=decision,
        provenance=provenance,
    )


def export_record(parity: Parity, stride: int, parameters: int, size_bytes: int) -> dict[str, Any]:
    """The card's ``export`` object: exporter, opset, dynamic axes, parity result, file size."""
    import torch

    return {
        "exporter": f"torch.onnx.export (TorchScript, dynamo=False), torch {torch.__version__}",
        "opset": OPSET,
        "dynamic_axes": "batch, height, width (height and width multiples of "
        f"{stride}); the service feeds preprocess.size",
        "output": "sigmoid probabilities (the sigmoid is part of the graph)",
        "parity": {
            "input_shape": list(parity.shape),
            "max_abs_diff": parity.max_abs_diff,
            "atol": parity.atol,
            "runtime": "onnxruntime CPUExecutionProvider",
        },
        "parameters": parameters,
        "onnx_bytes": size_bytes,
    }


def describe(config: JobConfig) -> str:
    """One-line description of the model."""
    arch = "U-Net (skip connections)" if config.kind == "unet" else "encoder-decoder CNN (no skips)"
    what = "chest X-ray" if config.modality == "cxr" else "axial chest CT slices"
    return f"{arch} segmenting lung and COVID-19 infection on {what}; {json.dumps(config.net)}"


__all__ = ["INTENDED_USE", "build_card", "describe", "export_record", "training_record"]
