"""MobileNetV2 (Sandler et al. 2018) in torchvision's module layout.

The module tree mirrors ``torchvision.models.mobilenet_v2`` exactly, so the torchvision
``IMAGENET1K_V1`` checkpoint (``mobilenet_v2-b0353104.pth``) loads with ``strict=True``
without torchvision being installed. Key layout it reproduces::

    features.0.{0,1}                     stem conv 3x3/2 + BN (+ReLU6)
    features.N.conv.0.{0,1}              1x1 expand conv + BN (+ReLU6)   (absent when t == 1)
    features.N.conv.{1|0}.{0,1}          3x3 depthwise conv + BN (+ReLU6)
    features.N.conv.{2,3} / {1,2}        1x1 linear projection conv + BN
    features.18.{0,1}                    1x1 head conv 320 -> 1280 + BN (+ReLU6)
    classifier.1                         Linear 1280 -> 1000
"""

from __future__ import annotations

from torch import Tensor, nn

# (expand ratio t, output channels c, repeats n, stride of the first repeat s), from Table 2
# of the paper; width multiplier 1.0 so no channel rounding is needed.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) + BatchNorm + ReLU6; a Sequential so keys read ``.0.weight``/``.1.*``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        # Symmetric padding: torchvision trained with it, unlike TF's asymmetric "SAME".
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=False),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear project (1x1), residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.has_expand = expand_ratio != 1

    def expand(self, x: Tensor) -> Tensor:
        """Post-ReLU6 output of the 1x1 expand conv (the "expansion layer" of the paper)."""
        if not self.has_expand:
            raise ValueError("this block has no expand conv (t == 1)")
        return self.conv[0](x)

    def forward_from_expanded(self, x: Tensor, expanded: Tensor) -> Tensor:
        """Finish the block from ``expand(x)`` so a feature tap does not recompute it."""
        out = self.conv[1:](expanded)
        return x + out if self.use_res_connect else out

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """The full ImageNet classifier (needed to load and to sanity-check the checkpoint)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        cin = 32
        layers: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(ConvBNReLU6(cin, 1280, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x).mean(dim=(2, 3))  # global average pool, as torchvision does
        return self.classifier(x)


class MobileNetV2Features(nn.Module):
    """Dense stride-8 and stride-16 features, stopping at the last layer they need.

    Outputs, in order:
      s8_block   features.6 output (last block at stride 8), 32 ch
      s8_expand  features.7.conv.0 post-ReLU6 (expand of the first stride-16 block,
                 computed at stride 8), 192 ch
      s16_block  features.13 output (last block at stride 16), 96 ch
      s16_expand features.14.conv.0 post-ReLU6 (expand of the first stride-32 block,
                 computed at stride 16), 576 ch; the MobileNetV2 paper attaches SSDLite
                 to this same "expansion of layer 15"
    Only modules on that path are kept, so the exported graph carries no unused weights.
    """

    output_names = ("s8_block", "s8_expand", "s16_block", "s16_expand")

    def __init__(self, model: MobileNetV2) -> None:
        super().__init__()
        f = model.features
        self.to_s8 = f[:7]  # stem + features.1..6
        self.block7: InvertedResidual = f[7]  # stride-2 block whose expand is the s8 tap
        self.s16_rest = f[8:14]  # features.8..13
        self.expand14 = f[14].conv[0]  # only the expand conv of features.14 is needed

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        s8_block = self.to_s8(x)
        s8_expand = self.block7.expand(s8_block)
        s16_block = self.s16_rest(self.block7.forward_from_expanded(s8_block, s8_expand))
        s16_expand = self.expand14(s16_block)
        return s8_block, s8_expand, s16_block, s16_expand
