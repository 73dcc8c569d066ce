"""The image-level decision head shared by both networks ("infection present", COVID-19 pattern).

It reads the encoder's bottleneck (the deepest, lowest-resolution features): global average and
global max pooling, concatenated, dropout, one linear layer -> one logit, then a sigmoid. The
encoder is shared with the segmentation, so the decision and the masks see the same features.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

Output = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class ScoreHead(nn.Module):
    """``(N, C, h, w)`` bottleneck features -> ``(N, 1)`` probability that infection is present.

    Args:
        channels: bottleneck channels ``C``.
        dropout: dropout on the pooled ``2 C`` features (training only).
    """

    def __init__(self, channels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(2 * channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat(
            [
                torch.flatten(F.adaptive_avg_pool2d(features, 1), 1),
                torch.flatten(F.adaptive_max_pool2d(features, 1), 1),
            ],
            dim=1,
        )
        return torch.sigmoid(self.linear(self.dropout(pooled)))


def split_output(output: Output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(probabilities, score or None)`` of a network's output, with or without a score head."""
    if isinstance(output, tuple):
        return output[0], output[1]
    return output, None
