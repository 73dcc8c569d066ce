"""U-Net (Ronneberger et al. 2015): an encoder-decoder with skip connections.

Input float32 ``(N, in_channels, H, W)`` with ``H`` and ``W`` multiples of ``2 ** depth``;
output float32 probabilities ``(N, out_channels, H, W)`` in [0, 1] (the sigmoid is part of the
network, so the exported ONNX graph returns probabilities, as the service expects).
"""

from __future__ import annotations

import torch
from torch import nn

from training.networks.score import Output, ScoreHead


def conv_block(in_ch: int, out_ch: int, dropout: float = 0.0) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU; spatial size kept."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    layers += [
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net with ``depth`` poolings; level ``i`` has ``base_channels * 2**i`` channels.

    Args:
        in_channels: image channels (1: grayscale).
        out_channels: output maps (2: lung, infection).
        base_channels: channels of the full-resolution level.
        depth: number of 2x down-samplings (the bottleneck is ``H / 2**depth``).
        dropout: channel dropout in the bottleneck block (0 = off).
        score_head: add the image-level decision head on the bottleneck
            (:class:`~training.networks.score.ScoreHead`); ``forward`` then returns
            ``(probabilities, score)``.
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
        self.encoders = nn.ModuleList([conv_block(in_channels, widths[0])])
        for i in range(depth):
            drop = dropout if i == depth - 1 else 0.0
            self.encoders.append(conv_block(widths[i], widths[i + 1], drop))
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(
            [
                nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                for i in reversed(range(depth))
            ]
        )
        self.decoders = nn.ModuleList(
            [conv_block(2 * widths[i], widths[i]) for i in reversed(range(depth))]
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.score = ScoreHead(widths[-1], score_dropout) if score_head else None

    def forward(self, x: torch.Tensor) -> Output:
        """``(N, C_in, H, W)`` -> probabilities ``(N, C_out, H, W)``; with the score head
        ``(probabilities, score (N, 1))``."""
        skips: list[torch.Tensor] = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        score = None if self.score is None else self.score(x)
        for up, decoder in zip(self.ups, self.decoders, strict=True):
            x = decoder(torch.cat([up(x), skips.pop()], dim=1))
        probabilities = torch.sigmoid(self.head(x))
        return probabilities if score is None else (probabilities, score)
