"""Boundary probability maps of images of any size: sliding-window inference with overlapping
tiles blended by a Hann window, all in torch.

The image is reflect-padded by a margin (a multiple of the network's size multiple, so that tiles
keep the pooling grid of the full image) and then up to a whole number of strides; tile origins
are multiples of the stride, itself a multiple of ``2**depth``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_layout(length: int, tile: int, overlap: float, multiple: int) -> tuple[int, int, int, int]:
    """(tile, stride, margin, padded length) along one axis of ``length`` px.

    The tile shrinks to fit a short axis; stride = tile * (1 - overlap) rounded to ``multiple``;
    the margin (half the overlap, rounded up to ``multiple``) puts image edges inside tiles.
    """
    stride = max(multiple, int(round(tile * (1.0 - overlap) / multiple)) * multiple)
    stride = min(stride, tile)
    margin = _round_up(math.ceil((tile - stride) / 2), multiple)
    tile = min(tile, _round_up(length + 2 * margin, multiple))
    stride = min(stride, tile)
    n_tiles = max(1, math.ceil((length + 2 * margin - tile) / stride) + 1)
    return tile, stride, margin, tile + (n_tiles - 1) * stride


def tile_origins(padded: int, tile: int, stride: int) -> list[int]:
    """Start offsets (in the padded image) of the tiles along one axis."""
    return list(range(0, padded - tile + 1, stride))


def hann_window(height: int, width: int) -> torch.Tensor:
    """Blending weights (height, width): product of sin^2 windows sampled at pixel centres, so
    every weight is > 0 and the weights fall smoothly to ~0 at the tile edges."""

    def axis(n: int) -> torch.Tensor:
        return torch.sin(math.pi * (torch.arange(n, dtype=torch.float64) + 0.5) / n) ** 2

    return (axis(height)[:, None] * axis(width)[None, :]).float()


def reflect_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last two dims of (B, C, H, W) by any amount (repeated reflections when a pad
    exceeds the current size, which a single torch reflect pad refuses)."""
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        step = [min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)]
        if h == 1 or w == 1:  # nothing to reflect: repeat the edge
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return x


def _as_batch(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(image, dtype=np.float32), device=device)[None, None]


@torch.inference_mode()
def full_probability(network, image: np.ndarray) -> np.ndarray:
    """Boundary probability (float32, H x W) from one forward pass over the whole image,
    reflect-padded at the bottom/right to the network's size multiple."""
    device = next(network.parameters()).device
    h, w = image.shape
    m = network.size_multiple
    x = reflect_pad(_as_batch(image, device), 0, _round_up(h, m) - h, 0, _round_up(w, m) - w)
    return torch.softmax(network(x), dim=1)[0, 1, :h, :w].float().cpu().numpy()


@torch.inference_mode()
def tiled_probability(network, image: np.ndarray, tile: int, overlap: float = 0.25, tile_batch: int = 4) -> np.ndarray:
    """Boundary probability (float32, H x W in [0, 1]) of a grey image (H x W in [0, 1]) of any size,
    by Hann-blended overlapping tiles of side ``tile`` (a multiple of the network's size multiple)."""
    device = next(network.parameters()).device
    h, w = image.shape
    m = network.size_multiple
    tile_h, stride_h, margin_h, padded_h = tile_layout(h, tile, overlap, m)
    tile_w, stride_w, margin_w, padded_w = tile_layout(w, tile, overlap, m)
    x = reflect_pad(_as_batch(image, device), margin_h, padded_h - h - margin_h, margin_w, padded_w - w - margin_w)
    weight = hann_window(tile_h, tile_w).to(device)
    total = torch.zeros((padded_h, padded_w), device=device)
    weight_sum = torch.zeros_like(total)
    origins = [(y, x0) for y in tile_origins(padded_h, tile_h, stride_h) for x0 in tile_origins(padded_w, tile_w, stride_w)]
    for start in range(0, len(origins), tile_batch):
        chunk = origins[start:start + tile_batch]
        tiles = torch.cat([x[..., y:y + tile_h, x0:x0 + tile_w] for y, x0 in chunk])
        probability = torch.softmax(network(tiles), dim=1)[:, 1]
        for (y, x0), p in zip(chunk, probability):
            total[y:y + tile_h, x0:x0 + tile_w] += p * weight
            weight_sum[y:y + tile_h, x0:x0 + tile_w] += weight
    blended = total / weight_sum
    return blended[margin_h:margin_h + h, margin_w:margin_w + w].float().cpu().numpy()
