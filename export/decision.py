"""The decision head's operating point, chosen on the held-back part of the training side.

The holdout (``split.json``: ``sets.<name>.holdout``) was never trained on. The operating point
is the score that keeps ``TARGET_SENSITIVITY`` of its COVID-19 images (the lower percentile of
their scores); the validation split is never looked at here. The lung checks of the card's
``decision`` are the a-priori rules (``service.pipeline.params.A_PRIORI_LUNG``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.datasets import Sample, load_image
from service.pipeline.params import A_PRIORI_LUNG, DecisionParams
from service.pipeline.preprocess import preprocess
from training.config import JobConfig
from training.data import read_spec

log = logging.getLogger(__name__)
TARGET_SENSITIVITY = 0.95
INSIDE_BODY = 0.5


def holdout_samples(config: JobConfig, split_file: Path, data_root: Path) -> list[Sample]:
    """The samples of every set's holdout (ids from ``split_file``), in the split's order."""
    split = json.loads(split_file.read_text(encoding="utf-8"))["sets"]
    chosen: list[Sample] = []
    for spec in config.sets:
        ids = split.get(spec.name, {}).get("holdout", [])
        if not ids:
            continue
        by_id = {s.id: s for s in read_spec(data_root, spec).samples}
        chosen += [by_id[i] for i in ids if i in by_id]
    return chosen


def scores(onnx_path: Path, config: JobConfig, samples: list[Sample], output: str) -> np.ndarray:
    """The head's score of each sample's first frame, as the service computes its input."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = []
    for sample in samples:
        image = load_image(sample)
        x = preprocess(image.frame(0), image.units, config.preprocess)[np.newaxis]
        (score,) = session.run([output], {name: x})
        out.append(float(np.asarray(score).reshape(-1)[0]))
    return np.asarray(out, dtype=np.float64)


def operating_point(
    onnx_path: Path, config: JobConfig, split_file: Path, data_root: Path, output: str
) -> DecisionParams:
    """The card's decision: the threshold that keeps 95 % of the holdout's COVID-19 images,
    with what it does there (sensitivity, false detections), and the a-priori lung checks."""
    samples = holdout_samples(config, split_file, data_root)
    values = scores(onnx_path, config, samples, output)
    covid = np.array([s.covid for s in samples], bool)
    if not covid.any():
        raise ValueError(f"{config.name}: the holdout has no COVID-19 image to choose on")
    threshold = float(np.quantile(values[covid], 1.0 - TARGET_SENSITIVITY, method="lower"))
    detected = values >= threshold
    notes: dict[str, Any] = {
        "chosen_on": "the holdout: held back from the training side, never trained on "
        f"(split.json); the score keeping {TARGET_SENSITIVITY:.0%} of its COVID-19 images",
        "holdout": {
            "n_covid": int(covid.sum()),
            "n_other": int((~covid).sum()),
            "sensitivity": float(detected[covid].mean()),
            "false_detection_rate": float(detected[~covid].mean()) if (~covid).any() else None,
        },
        "lung_checks": "a priori (service.pipeline.params.A_PRIORI_LUNG)",
    }
    fraction, confidence, area = A_PRIORI_LUNG[config.modality]
    log.info("%s: operating point %.4f on %d holdout images", config.name, threshold, len(values))
    return DecisionParams(threshold, fraction, confidence, INSIDE_BODY, area, notes)
