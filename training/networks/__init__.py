"""The networks, one file each; their constructor arguments are the configuration (smp style).

``build("unet", base_channels=16, depth=4)`` makes a network from a run's config; every network
maps ``(N, 1, H, W)`` float32 to ``(N, 2, H, W)`` probabilities (lung, infection), with ``H`` and
``W`` multiples of :func:`stride`. With ``score_head=True`` a network also returns the
image-level decision ``(N, 1)`` (:mod:`training.networks.score`): ``(probabilities, score)``;
:func:`split_output` takes either form apart.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from training.networks.cnn import EncoderDecoderCNN
from training.networks.score import Output, ScoreHead, split_output
from training.networks.unet import UNet

NETWORKS: dict[str, type[nn.Module]] = {"unet": UNet, "cnn": EncoderDecoderCNN}


def build(kind: str, **kwargs: Any) -> nn.Module:
    """Instantiate network ``kind`` (``"unet"`` or ``"cnn"``) with constructor ``kwargs``."""
    try:
        cls = NETWORKS[kind]
    except KeyError as err:
        raise ValueError(f"unknown network {kind!r}; known: {sorted(NETWORKS)}") from err
    return cls(**kwargs)


def stride(kwargs: dict[str, Any]) -> int:
    """The factor input height and width must be multiples of: ``2 ** depth``."""
    return int(2 ** int(kwargs.get("depth", 4)))


__all__ = [
    "NETWORKS",
    "EncoderDecoderCNN",
    "Output",
    "ScoreHead",
    "UNet",
    "build",
    "split_output",
    "stride",
]
