"""The threshold segmenter: ``ThresholdBackend`` over the CT and CXR algorithms."""

from service.models.threshold.backend import ThresholdBackend, ThresholdInput

__all__ = ["ThresholdBackend", "ThresholdInput"]
