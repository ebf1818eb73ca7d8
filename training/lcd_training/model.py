"""SNUNet-CBAM (Fang et al., "SNUNet-CD: A Densely Connected Siamese Network for Change Detection of VHR Images",
IEEE GRSL 2021), reimplemented for a single change logit plus an embedding output.

Structure (w = base width, filters w, 2w, 4w, 8w, 16w at levels 0..4):

* Siamese encoder, weights shared between the two dates: X^{i,0} = Block(maxpool(X^{i-1,0})). A Block is
  conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the output of the first convolution as identity, then ReLU
  (the residual form of the authors' released code).
* UNet++ nested dense decoder: X^{i,j} = Block(cat(X^{i,0}_before, X^{i,0}_after, X^{i,1}, ..., X^{i,j-1},
  Up(X^{i+1,j-1}))) where Up is a 2x2 stride-2 transposed convolution. As in the authors' code, the j=1 nodes
  upsample the deeper encoder node of the *after* branch (X^{i+1,0}_after).
* Deep supervision: the four full-resolution nodes X^{0,1..4} (w channels each) are concatenated (4w channels).
* ECAM (ensemble channel attention module): channel attention CA (avg-pool and max-pool through a shared two-layer
  1x1 MLP, summed, sigmoid) is computed on the concatenation (reduction 16) and on the element-wise sum of the four
  outputs ("intra", reduction 4); out = CA(cat) * (cat + repeat4(CA_intra(sum))), then a 1x1 conv to ONE channel.

Outputs: ``change_logits`` N x 1 x H x W (sigmoid gives the change probability) and ``embedding`` N x D.

Embedding (for drift monitoring): the per-channel global average over space of |X^{4,0}_after - X^{4,0}_before|
(the deepest encoder features, 16w channels), reduced to D = 4w by averaging groups of four adjacent channels
(parameter-free, deterministic). D = 64 for w = 16, 128 for w = 32, 192 for w = 48.

Input size: H and W must be multiples of 16 (four 2x poolings; the transposed convolutions then restore the exact
size). ``forward`` raises ValueError otherwise; use :func:`pad_to_multiple` / :func:`predict_padded` for other sizes.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

SIZE_MULTIPLE = 16
ARCHITECTURE = "SNUNet-CBAM"
HEAD_PRIOR_BIAS = -2.0  # sigmoid(-2) ~ 0.12 initial change probability


def embedding_dim(base_width: int) -> int:
    return 4 * base_width


class ResBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + identity (output of the first conv) -> ReLU."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        if mid_ch != out_ch:
            raise ValueError("identity path needs mid_ch == out_ch")
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(mid_ch)
        self.conv2 = nn.Conv2d(mid_ch, out_ch, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        skip = y
        y = F.relu(self.bn1(y))
        y = self.bn2(self.conv2(y))
        return F.relu(y + skip)


class ChannelAttention(nn.Module):
    """CBAM channel attention: sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))), MLP = 1x1 conv, ReLU, 1x1 conv."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        m = self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(x, 1))))
        return torch.sigmoid(a + m)


class SNUNetCBAM(nn.Module):
    def __init__(self, in_channels: int = 3, base_width: int = 32):
        super().__init__()
        if base_width < 4 or base_width % 4 != 0:
            raise ValueError("base_width must be a positive multiple of 4")
        if in_channels < 1:
            raise ValueError("in_channels must be >= 1")
        self.in_channels = int(in_channels)
        self.base_width = int(base_width)
        self.embedding_dim = embedding_dim(base_width)
        f = [base_width * (2 ** i) for i in range(5)]
        self.filters = f
        self.pool = nn.MaxPool2d(2, 2)
        # encoder X^{i,0}
        self.enc = nn.ModuleList([ResBlock(in_channels if i == 0 else f[i - 1], f[i], f[i]) for i in range(5)])
        # decoder nodes X^{i,j}, j >= 1, i + j <= 4; inputs: 2 encoder maps + (j-1) earlier nodes + 1 upsampled
        self.dec = nn.ModuleDict()
        self.up = nn.ModuleDict()
        for j in range(1, 5):
            for i in range(0, 5 - j):
                in_ch = f[i] * (j + 1) + f[i + 1]
                self.dec[f"{i}_{j}"] = ResBlock(in_ch, f[i], f[i])
                # Up(X^{i+1,j-1}) feeds X^{i,j}
                self.up[f"{i + 1}_{j - 1}"] = nn.ConvTranspose2d(f[i + 1], f[i + 1], 2, stride=2)
        self.ca = ChannelAttention(f[0] * 4, reduction=16)
        self.ca_intra = ChannelAttention(f[0], reduction=4)
        self.head = nn.Conv2d(f[0] * 4, 1, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # the 1x1 head starts near zero with a prior bias (change is rare): with Kaiming-initialised residual blocks
        # the raw logits would otherwise start in the tens and BCE would begin around 20
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.constant_(self.head.bias, HEAD_PRIOR_BIAS)

    def encode(self, x: torch.Tensor, levels: int = 5):
        feats = []
        for i in range(levels):
            x = self.enc[i](x if i == 0 else self.pool(x))
            feats.append(x)
        return feats

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if not tracing:
            if before.shape != after.shape:
                raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} differ in shape")
            if before.dim() != 4 or before.shape[1] != self.in_channels:
                raise ValueError(f"expected N x {self.in_channels} x H x W input, got {tuple(before.shape)}")
            h, w = before.shape[-2:]
            if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
                raise ValueError(f"H and W must be multiples of {SIZE_MULTIPLE} (got {h}x{w}); pad first")
        fa = self.encode(before)
        fb = self.encode(after)
        nodes = {}
        for i in range(5):
            nodes[(i, 0)] = fb[i]
        # evaluate in the order of increasing j then i so every dependency exists (UNet++ order)
        for j in range(1, 5):
            for i in range(0, 5 - j):
                parts = [fa[i], fb[i]] + [nodes[(i, k)] for k in range(1, j)]
                parts.append(self.up[f"{i + 1}_{j - 1}"](nodes[(i + 1, j - 1)]))
                nodes[(i, j)] = self.dec[f"{i}_{j}"](torch.cat(parts, 1))
        outs = [nodes[(0, j)] for j in range(1, 5)]
        cat = torch.cat(outs, 1)
        intra = outs[0] + outs[1] + outs[2] + outs[3]
        ca_intra = self.ca_intra(intra)
        fused = self.ca(cat) * (cat + ca_intra.repeat(1, 4, 1, 1))
        logits = self.head(fused)
        diff = torch.abs(fb[4] - fa[4])
        pooled = diff.mean(dim=(2, 3))  # N x 16w
        emb = pooled.reshape(-1, self.embedding_dim, 4).mean(dim=2)  # N x 4w
        return logits, emb


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE, mode: str = "reflect"
                    ) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Pad N x C x H x W on the bottom/right to multiples of ``multiple``; returns the padded tensor and (H, W)."""
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


@torch.no_grad()
def predict_padded(model: SNUNetCBAM, before: torch.Tensor, after: torch.Tensor
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run the model on inputs of any size: pad to a multiple of 16, then crop the logits back."""
    a, (h, w) = pad_to_multiple(before)
    b, _ = pad_to_multiple(after)
    logits, emb = model(a, b)
    return logits[..., :h, :w], emb
