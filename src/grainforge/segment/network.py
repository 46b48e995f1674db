"""The classic U-Net (Ronneberger et al. 2015) in plain torch, and its model files.

Input (B, 1, H, W) grey images in [0, 1], H and W multiples of ``2**depth``; output (B, 2, H, W)
logits of the classes grain (0) and boundary (1). Convolutions are 'same'-padded, so the output has
the input's size.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from grainforge.errors import UserError

def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder of ``depth`` (double conv, 2x2 max-pool) levels, bottleneck, decoder of transposed
    2x2 convolutions and double convs on the concatenated skip; 1x1 conv to 2 class logits."""

    def __init__(self, width: int = 64, depth: int = 4):
        super().__init__()
        self.depth = depth
        channels = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(1 if level == 0 else channels[level - 1], channels[level])
                                   for level in range(depth)])
        self.bottleneck = _double_conv(channels[depth - 1], channels[depth])
        self.up = nn.ModuleList([nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2)
                                 for level in reversed(range(depth))])
        self.decode = nn.ModuleList([_double_conv(2 * channels[level], channels[level])
                                     for level in reversed(range(depth))])
        self.head = nn.Conv2d(channels[0], 2, 1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.up, self.decode, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_network(config) -> UNet:
    """The U-Net a :class:`SegmentConfig` describes."""
    return UNet(width=config.width, depth=config.depth)


def save_model(path: str | os.PathLike, network: UNet, config, **extra) -> None:
    """Write a model file (atomic): config dict, weights and ``extra`` (iteration, scores; with an
    ``optimizer`` state it is a training checkpoint). Format: :mod:`grainforge.checkpoint`."""
    from grainforge import checkpoint
    from grainforge.config import config_to_dict

    kind = "segment-checkpoint" if "optimizer" in extra else "segment-unet"
    checkpoint.save(path, kind, config_to_dict(config), state_dict=network.state_dict(), **extra)


def read_model_file(path: str | os.PathLike) -> dict:
    """Load and check a model or checkpoint file without running code from it (``weights_only``);
    UserError naming the file if it is missing, corrupt, foreign or holds pickled objects."""
    from grainforge import checkpoint

    return checkpoint.load(path, "segment-unet", "segment-checkpoint")


def model_file(model: str | os.PathLike) -> Path:
    """The weights to predict with: ``best.pt`` in a model folder (else ``checkpoint.pt``), or a .pt file itself."""
    model = Path(model)
    if model.is_dir():
        for name in ("best.pt", "checkpoint.pt"):
            if (model / name).is_file():
                return model / name
        raise UserError(f"{model}: holds no best.pt or checkpoint.pt; train a model into this folder first")
    if not model.exists():
        raise UserError(f"{model}: no such model folder or file; train one with 'grainforge segment train'")
    return model


def load_model(model: str | os.PathLike, device: torch.device | str = "cpu"):
    """(network in eval mode on ``device``, SegmentConfig, payload) from a model folder or .pt file."""
    from grainforge.config import config_from_dict
    from grainforge.segment.config import SegmentConfig

    path = model_file(model)
    payload = read_model_file(path)
    try:
        config = config_from_dict(SegmentConfig, payload["config"], str(path))
        network = build_network(config)
        network.load_state_dict(payload["state_dict"])
    except (TypeError, RuntimeError, KeyError) as err:
        raise UserError(f"{path}: weights do not match the stored config ({str(err).splitlines()[0]}); retrain it") from err
    return network.to(device).eval(), config, payload
