"""A plain convolutional encoder-decoder without skip connections (the seed's "CNN").

Like a U-Net whose skips are cut: the decoder sees only the bottleneck, so fine boundaries must
be rebuilt from coarse features (a useful baseline for what the skips buy). Input float32
``(N, in_channels, H, W)`` with ``H`` and ``W`` multiples of ``2 ** depth``; output float32
probabilities ``(N, out_channels, H, W)`` in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from training.networks.score import Output, ScoreHead
from training.networks.unet import conv_block


class EncoderDecoderCNN(nn.Module):
    """Encoder (conv blocks + max pooling) then decoder (transposed convs + conv blocks).

    Args:
        in_channels: image channels (1: grayscale).
        out_channels: output maps (2: lung, infection).
        base_channels: channels at full resolution; level ``i`` has ``base_channels * 2**i``.
        depth: number of 2x down-samplings.
        dropout: channel dropout in the bottleneck block (0 = off).
        score_head: add the image-level decision head on the bottleneck (the encoder's output);
            ``forward`` then returns ``(probabilities, score)``.
        score_dropout: dropout of the decision head's pooled features.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        base_channels: int = 16,
        depth: int = 4,
        dropout: float = 0.0,
        score_head: bool = False,
        score_dropout: float = 0.2,
    ) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.depth = depth
        layers: list[nn.Module] = [conv_block(in_channels, widths[0])]
        for i in range(depth):
            drop = dropout if i == depth - 1 else 0.0
            layers += [nn.MaxPool2d(2), conv_block(widths[i], widths[i + 1], drop)]
        self.encoder = nn.Sequential(*layers)
        decoder: list[nn.Module] = []
        for i in reversed(range(depth)):
            decoder += [
                nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2),
                conv_block(widths[i], widths[i]),
            ]
        self.decoder = nn.Sequential(*decoder)
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.score = ScoreHead(widths[-1], score_dropout) if score_head else None

    def forward(self, x: torch.Tensor) -> Output:
        """``(N, C_in, H, W)`` -> probabilities ``(N, C_out, H, W)``; with the score head
        ``(probabilities, score (N, 1))``."""
        features = self.encoder(x)
        probabilities = torch.sigmoid(self.head(self.decoder(features)))
        if self.score is None:
            return probabilities
        return probabilities, self.score(features)
