"""What every segmentation backend offers: the :class:`Backend` protocol of the pipeline.

Backends: ONNX Runtime models (``onnx_backend``), the threshold segmenter (``threshold``) and
the micro-batcher that wraps a model (``batching``). ``prepare`` turns one decoded frame into
the backend's input, ``infer`` a batch of inputs into one ``Prediction`` each;
``service.pipeline.run`` does the rest.
"""

from __future__ import annotations

from service.pipeline.result import ModelInfo, Prediction
from service.pipeline.run import Backend

LABELS = ("lung", "infection")
THRESHOLD = "threshold"
"""The model kind of the classical segmenter, always available (the fallback)."""

__all__ = ["LABELS", "THRESHOLD", "Backend", "ModelInfo", "Prediction"]
