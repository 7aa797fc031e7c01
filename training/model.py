"""AlexNet as in Krizhevsky, Sutskever & Hinton (2012), section 3.

The paper splits the network over two GPUs; conv2, conv4 and conv5 see only the feature maps of
their own GPU. ``variant="grouped"`` keeps that connectivity with ``groups=2`` convolutions (the
default); ``variant="single"`` is one tower with full connectivity (a named deviation).
"""

from __future__ import annotations

import torch
from torch import nn

from training.architecture import FEATURE_DIM, INITS, VARIANTS, Init, Variant

# Paper, section 3.3: k=2, n=5, alpha=1e-4, beta=0.75, with alpha multiplying the plain sum of
# squares. torch's LocalResponseNorm divides alpha by n, so alpha * n gives the paper's function.
LRN_SIZE = 5
LRN_ALPHA = 1e-4
LRN_BETA = 0.75
LRN_K = 2.0


def scaled(units: int, width: float) -> int:
    """``units`` times ``width``, rounded to an even number (the two towers split every layer), at least 2."""
    return max(2, 2 * round(units * width / 2))


def paper_lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(size=LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)


class AlexNet(nn.Module):
    """Five conv layers, LRN after conv1/conv2, overlapping 3/2 max-pooling, two dropout fc layers.

    ``forward`` returns ``(logits, fc7_features)``; the features are the 4096-d output of the
    last hidden layer after ReLU (the paper's Figure 4 retrieval features).

    ``width`` (a deviation; the paper's is 1) multiplies every layer's channels and the hidden
    units: the same graph, cheaper, for smoke runs and the test suite (``feature_dim`` follows it).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        variant: Variant = "grouped",
        dropout: float = 0.5,
        init: Init = "paper",
        width: float = 1.0,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if not 0 < width <= 1:
            raise ValueError(f"width must be in (0, 1], got {width!r}")
        groups = 2 if variant == "grouped" else 1
        self.variant = variant
        self.num_classes = num_classes
        self.width = width
        c1, c2, c3, c4, c5 = (scaled(n, width) for n in (96, 256, 384, 384, 256))
        hidden = scaled(4096, width)
        self.feature_dim = scaled(FEATURE_DIM, width)
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),  # conv1
            nn.ReLU(inplace=True),
            paper_lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2, groups=groups),  # conv2
            nn.ReLU(inplace=True),
            paper_lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),  # conv3: sees both towers
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1, groups=groups),  # conv4
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1, groups=groups),  # conv5
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.hidden = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c5 * 6 * 6, hidden),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, self.feature_dim),  # fc7
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(self.feature_dim, num_classes)  # fc8
        self.reset_parameters() if init == "paper" else self.reset_parameters_kaiming()

    def conv_layers(self) -> list[nn.Conv2d]:
        return [m for m in self.features if isinstance(m, nn.Conv2d)]

    def fc_layers(self) -> list[nn.Linear]:
        return [m for m in self.hidden if isinstance(m, nn.Linear)] + [self.classifier]

    def reset_parameters(self) -> None:
        """Section 5: weights N(0, 0.01); bias 1 in conv2, conv4, conv5 and the hidden fc layers."""
        conv1, conv2, conv3, conv4, conv5 = self.conv_layers()
        fc6, fc7, fc8 = self.fc_layers()
        for layer in (conv1, conv2, conv3, conv4, conv5, fc6, fc7, fc8):
            nn.init.normal_(layer.weight, mean=0.0, std=0.01)
            nn.init.zeros_(layer.bias)
        for layer in (conv2, conv4, conv5, fc6, fc7):
            nn.init.ones_(layer.bias)

    def reset_parameters_kaiming(self) -> None:
        """A deviation: He et al. (2015) fan-in init for conv1..fc7, zero biases, zero fc8.

        With inputs of about unit variance it keeps activations at a constant scale through the
        layers, and a zero classifier starts at loss ln(C): no start-up plateau, which the paper's
        N(0, 0.01) has for many epochs on a small dataset.
        """
        *hidden, fc8 = self.conv_layers() + self.fc_layers()
        for layer in hidden:
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(fc8.weight)
        nn.init.zeros_(fc8.bias)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(images)
        x = torch.flatten(x, 1)
        fc7 = self.hidden(x)
        return self.classifier(fc7), fc7


def build_alexnet(
    num_classes: int, variant: Variant = "grouped", dropout: float = 0.5, init: Init = "paper", width: float = 1.0
) -> AlexNet:
    return AlexNet(num_classes=num_classes, variant=variant, dropout=dropout, init=init, width=width)
