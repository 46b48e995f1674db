"""pix2pix networks in plain torch: a U-Net generator and a 70x70 PatchGAN discriminator.

Both follow the reference pix2pix (Isola et al. 2017; junyanz/pytorch-CycleGAN-and-pix2pix):
4x4 convolutions of stride 2, batch norm, LeakyReLU(0.2) on the way down, ReLU on the way up,
dropout 0.5 in the innermost decoder blocks, tanh output, weights drawn from normal(0, 0.02).
Images and labels enter and leave as (B, 1, H, W) tensors in [-1, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn

MIN_DEPTH = 5  # the reference U-Net's fixed outer blocks: ngf, 2ngf, 4ngf, 8ngf, innermost


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (the range the networks take and the generator's tanh gives)."""
    return x * 2.0 - 1.0


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


def unet_depth(crop: int) -> int:
    """Number of 2x down-samplings for a square crop of ``crop`` px: log2(crop) (8 for 256 px).

    The innermost feature map is then 1x1, as in the reference ``unet_256``; ``crop`` must be a
    power of two >= 32.
    """
    depth = int(round(math.log2(crop))) if crop > 0 else 0
    if crop <= 0 or 2**depth != crop or depth < MIN_DEPTH:
        raise ValueError(f"crop {crop} must be a power of two >= {2**MIN_DEPTH}")
    return depth


UPSAMPLING = ("transpose", "resize")


def up_convolution(c_in: int, c_out: int, upsample: str, bias: bool) -> nn.Module:
    """2x up-sampling convolution: ``transpose`` = the reference's 4x4 stride-2 transposed convolution;
    ``resize`` = nearest-neighbour 2x resize then a 3x3 convolution (Odena et al. 2016, "Deconvolution
    and checkerboard artifacts"), which cannot paint the periodic dot grid the uneven overlap of a
    stride-2 transposed kernel leaves."""
    if upsample == "transpose":
        return nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=bias)
    if upsample == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias))
    raise ValueError(f"upsample {upsample!r} is not one of {', '.join(UPSAMPLING)}")


class UnetBlock(nn.Module):
    """One level of the U-Net: down-sample, run ``inner`` (None = innermost), up-sample, skip-concat.

    Channels: ``outer`` in/out of the level, ``width`` inside it. The outermost level has no
    skip (it returns the tanh image); every other level returns ``cat(x, up(...))``.
    """

    def __init__(self, outer: int, width: int, inner: nn.Module | None, *, in_channels: int | None = None,
                 outermost: bool = False, dropout: float = 0.0, upsample: str = "transpose"):
        super().__init__()
        self.outermost = outermost
        in_channels = outer if in_channels is None else in_channels
        innermost = inner is None
        down_conv = nn.Conv2d(in_channels, width, kernel_size=4, stride=2, padding=1, bias=False)
        up_in = width if innermost else 2 * width
        if outermost:
            down = [down_conv]
            up = [nn.ReLU(True), up_convolution(up_in, outer, upsample, bias=True), nn.Tanh()]
        elif innermost:  # no norm on the 1x1 bottleneck (batch norm of one value per channel is undefined at batch 1)
            down = [nn.LeakyReLU(0.2, True), down_conv]
            up = [nn.ReLU(True), up_convolution(up_in, outer, upsample, bias=False), nn.BatchNorm2d(outer)]
        else:
            down = [nn.LeakyReLU(0.2, True), down_conv, nn.BatchNorm2d(width)]
            up = [nn.ReLU(True), up_convolution(up_in, outer, upsample, bias=False), nn.BatchNorm2d(outer)]
        if dropout > 0:
            up.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*down, *([inner] if inner is not None else []), *up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], dim=1)


class UnetGenerator(nn.Module):
    """U-Net generator label (B, 1, H, W) -> image (B, 1, H, W) in [-1, 1]; H, W multiples of 2**depth.

    Widths from the outside in: ngf, 2ngf, 4ngf, then 8ngf for the remaining ``depth - 3``
    levels; the ``depth - 5`` decoder blocks next to the innermost one carry dropout. ``upsample``:
    see :func:`up_convolution`.
    """

    def __init__(self, depth: int, ngf: int = 64, dropout: float = 0.5, channels: int = 1, upsample: str = "transpose"):
        super().__init__()
        if depth < MIN_DEPTH:
            raise ValueError(f"U-Net depth {depth} < {MIN_DEPTH}")
        self.depth = depth
        block = UnetBlock(ngf * 8, ngf * 8, None, upsample=upsample)
        for _ in range(depth - MIN_DEPTH):
            block = UnetBlock(ngf * 8, ngf * 8, block, dropout=dropout, upsample=upsample)
        block = UnetBlock(ngf * 4, ngf * 8, block, upsample=upsample)
        block = UnetBlock(ngf * 2, ngf * 4, block, upsample=upsample)
        block = UnetBlock(ngf, ngf * 2, block, upsample=upsample)
        self.model = UnetBlock(channels, ngf, block, in_channels=channels, outermost=True, upsample=upsample)

    def forward(self, label: torch.Tensor) -> torch.Tensor:
        return self.model(label)


class PatchDiscriminator(nn.Module):
    """PatchGAN on the pair concat(label, image) (B, 2, H, W) -> real/fake logits (B, 1, h, w).

    With ``n_layers = 3`` each logit sees a 70x70 px patch of the input.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 3, channels: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            next_width = ndf * min(2**n, 8)
            layers += [nn.Conv2d(width, next_width, 4, stride, 1, bias=False), nn.BatchNorm2d(next_width),
                       nn.LeakyReLU(0.2, True)]
            width = next_width
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([label, image], dim=1))


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """pix2pix init in place: conv weights ~ normal(0, gain), batch-norm scale ~ normal(1, gain), biases 0."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return net


def set_dropout(net: nn.Module, active: bool) -> None:
    """Switch only the dropout layers of ``net`` to training (active) or eval mode."""
    for module in net.modules():
        if isinstance(module, nn.Dropout):
            module.train(active)
