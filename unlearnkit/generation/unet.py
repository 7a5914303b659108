"""A small class-conditional U-Net that predicts the noise of a diffusion model: `model(x_t, t, y)`.

The label embedding has `num_classes + 1` rows; the last is the null (unconditional) label of
classifier-free guidance. Pass `NULL_LABEL` (-1, or any negative label) to ask for it, so code that
drops labels never needs to know the number of classes. GroupNorm only (no BatchNorm, no buffers),
so `torch.func.functional_call` and train/eval modes need no special care.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.registry import MODELS

NULL_LABEL = -1  # "no label": the model uses its last embedding row


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal features of (possibly fractional) timesteps, (n,) -> (n, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.cos(), args.sin()], dim=-1)
    return F.pad(emb, (0, dim % 2))


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """norm-SiLU-conv, plus the (time + label) embedding as a per-channel shift, norm-SiLU-conv, skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2, self.conv2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        return self.conv2(F.silu(self.norm2(h))) + self.skip(x)


class UNet(nn.Module):
    """`levels` resolutions with `width`·2^i channels; stride-2 convs down, nearest-neighbour up.

    Any image size works (8×8 digits, 28×28 Fashion-MNIST, 32×32 CIFAR): upsampling goes back to
    the size of the matching skip connection, so odd sizes (7×7) are fine too.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, levels: int = 2) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(levels)]
        emb_dim = 4 * width
        self.num_classes, self.width = num_classes, width
        self.time_mlp = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim)  # last row: null label
        self.stem = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock(c, c, emb_dim) for c in chans)
        self.pool = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chans, chans[1:]))
        self.mid = ResBlock(chans[-1], chans[-1], emb_dim)
        self.up = nn.ModuleList(ResBlock(2 * c, c, emb_dim) for c in chans)
        self.unpool = nn.ModuleList(nn.Conv2d(b, a, 3, padding=1) for a, b in zip(chans, chans[1:]))
        self.out = nn.Sequential(group_norm(chans[0]), nn.SiLU(), nn.Conv2d(chans[0], in_channels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Predicted noise for noisy images `x` (n, C, H, W) at timesteps `t` (n,) with labels `y`
        (n,); `y=None` or negative labels mean unconditional."""
        n = x.shape[0]
        t = t.expand(n) if t.dim() == 0 else t
        if y is None:
            y = torch.full((n,), NULL_LABEL, dtype=torch.long, device=x.device)
        y = torch.where(y < 0, torch.full_like(y, self.num_classes), y)
        emb = self.time_mlp(timestep_embedding(t, self.width)) + self.label_emb(y)
        h, skips = self.stem(x), []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, emb)
        for i in reversed(range(len(self.up))):
            h = self.up[i](torch.cat([h, skips[i]], dim=1), emb)
            if i > 0:
                h = self.unpool[i - 1](F.interpolate(h, size=skips[i - 1].shape[-2:], mode="nearest"))
        return self.out(h)


@MODELS.register("unet", task="generation")
def unet(in_shape: tuple[int, ...], num_classes: int, width: int = 32, levels: int | None = None) -> nn.Module:
    """Class-conditional noise-prediction U-Net for diffusion (`unlearnkit.generation`);
    `forward(x_t, t, y)`, label -1 = unconditional. Resolutions: 3 for images of 16 px and up, else 2."""
    if levels is None:
        levels = 3 if min(in_shape[1:]) >= 16 else 2
    return UNet(in_shape[0], num_classes, width, levels)
