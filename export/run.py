"""Export one training run: ONNX file, checks, validation metrics, model card.

Output: ``<out>/<name>/<version>/{model.onnx, model.json, split.json}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from export.cardwriter import build_card, describe, export_record, training_record
from export.decision import operating_point
from export.onnx_export import SCORE_NAME, has_score_head, parity, parity_shape, to_onnx
from export.provenance import INTENDED_USE, git_commit, licenses
from export.validation import validation_metrics
from service.models.card import ONNX_FILE, ModelCard
from training import checkpoint as ckpt
from training.config import JobConfig
from training.networks import build, stride

log = logging.getLogger(__name__)
MAX_ONNX_BYTES = 10 * 1024 * 1024
POSTPROCESS_NOTE = {
    "cxr": "min_infection_fraction 0.01: largest value that left the infection Dice unchanged on "
    "600 COVID-QU-Ex training images (not the validation split); see docs/models.md",
    "ct": "min_lung_air_fraction 0.2 (HU input only): drops lung components that hold no air "
    "(paraspinal muscle, bowel) that the model marks on slices without lungs; chosen a priori",
}


def ct_mapping_note(config: JobConfig) -> str:
    """Why the card's HU -> display parameters are what they are (CT models only)."""
    pre = config.preprocess
    clahe = pre.ct_clahe
    clahe_text = (
        f"clip {clahe.clip_limit:g}, {clahe.tile_grid}x{clahe.tile_grid} grid" if clahe else "off"
    )
    return (
        "The CT training slices are CLAHE-enhanced, min-max normalised 8-bit images, not HU "
        "(source processing: per-slice min-max of the HU range, then OpenCV CLAHE clip 7, 8x8 "
        f"grid). DICOM CT in HU is mapped to that look: window {pre.ct_window.low:g} to "
        f"{pre.ct_window.high:g} HU (clips field-of-view padding and metal), min-max "
        f"{'on' if pre.ct_minmax else 'off'}, CLAHE {clahe_text}"
        " (service.pipeline.preprocess.to_display). Chosen by matching tissue levels and look of "
        "real HU slices to the training slices; see docs/models.md."
    )


def continued_from(config: JobConfig) -> dict[str, Any] | None:
    """Summary of the run a continued run started from (``init_from``), when it is on disk."""
    if not config.init_from:
        return None
    summary = Path(config.init_from).parent / ckpt.SUMMARY_FILE
    if not summary.is_file():
        return {"checkpoint": config.init_from}
    earlier = json.loads(summary.read_text())
    keys = ("epochs_run", "best_epoch", "wall_time_s", "hardware")
    return {"checkpoint": config.init_from, **{k: earlier[k] for k in keys}}


def load_run(run_dir: Path) -> tuple[JobConfig, nn.Module, dict[str, Any]]:
    """The run's config, its best network (eval mode, default memory format) and summary."""
    config = JobConfig.from_dict(json.loads((run_dir / ckpt.CONFIG_FILE).read_text()))
    model = build(config.kind, **config.net)
    model.load_state_dict(ckpt.load(run_dir / ckpt.BEST)["model"])
    summary = json.loads((run_dir / ckpt.SUMMARY_FILE).read_text())
    return config, model.eval(), summary


def is_run(path: Path) -> bool:
    """A finished run directory: config, best checkpoint and summary present."""
    return all((path / f).is_file() for f in (ckpt.CONFIG_FILE, ckpt.BEST, ckpt.SUMMARY_FILE))


def export_run(
    run_dir: Path, data_root: Path, out: Path, repo: Path, with_metrics: bool = True
) -> ModelCard:
    """Export ``run_dir`` into ``out/<name>/<version>/`` and return the card written there."""
    config, model, summary = load_run(run_dir)
    target = out / config.name / config.version
    target.mkdir(parents=True, exist_ok=True)
    onnx_path = target / ONNX_FILE
    to_onnx(model, onnx_path, config.preprocess.size)
    net_stride = stride(config.net)
    check = parity(model, onnx_path, parity_shape(config.preprocess.size, net_stride))
    size_bytes = onnx_path.stat().st_size
    if size_bytes > MAX_ONNX_BYTES:
        log.warning("%s is %.1f MB (> 10 MB)", onnx_path, size_bytes / 2**20)
    shutil.copyfile(run_dir / ckpt.SPLIT_FILE, target / ckpt.SPLIT_FILE)
    split_sha = hashlib.sha256((target / ckpt.SPLIT_FILE).read_bytes()).hexdigest()
    parameters = sum(p.numel() for p in model.parameters())
    provenance: dict[str, Any] = {
        "description": describe(config),
        "intended_use": INTENDED_USE,
        "medical_device": "no: not a medical device, research use only",
        "training": training_record(config, summary, split_sha),
        "export": export_record(check, net_stride, parameters, size_bytes),
        "license": licenses(data_root, config.sets),
        "git": git_commit(repo),
    }
    provenance["postprocess_notes"] = POSTPROCESS_NOTE.get(config.modality, "")
    if config.init_from:
        provenance["training"]["continued_from"] = continued_from(config)
    if config.modality == "ct":
        provenance["ct_input_mapping"] = ct_mapping_note(config)
    decision = None
    if has_score_head(model, config.preprocess.size):
        split_file = target / ckpt.SPLIT_FILE
        decision = operating_point(onnx_path, config, split_file, data_root, SCORE_NAME)
    card = build_card(config, onnx_path, provenance, decision)
    card.write(target)  # written before measuring: OnnxBackend loads the model through its card
    if with_metrics:
        metrics = validation_metrics(config, target, target / ckpt.SPLIT_FILE, data_root)
        card = build_card(config, onnx_path, {**provenance, "metrics": metrics}, decision)
        card.write(target)
    log.info(
        "exported %s %s to %s (%.2f MB)", config.name, config.version, target, size_bytes / 2**20
    )
    return card
