"""Sliding-window inference: apply a network to an image of any size by overlapping tiles, blended
by a window, as MONAI's ``sliding_window_inference`` does. Both networks use it: the pix2pix
generator (``style.apply.paint``) and the segmentation U-Net (``segment.inference``).

Two tile layouts along each axis (``layout``):

- ``"spread"``: tiles of exactly ``tile`` px whose starts are spread evenly from 0 to the end of the
  image (the overlap is at least the requested one); an image shorter than a tile is padded at
  the bottom/right up to one tile.
- ``"aligned"``: the image is padded by a margin (half the overlap, rounded up to ``multiple``) so
  that its edges lie inside tiles, then up to a whole number of strides; the stride is a multiple
  of ``multiple`` and tile origins are multiples of the stride, so every tile keeps the pooling grid
  of the full image. The tile shrinks (to a multiple of ``multiple``) on a short axis.

Two blending windows (``window``): ``"ramp"``, 1 inside with linear ramps over the overlap width at
the tile edges (a trapezoid), and ``"hann"``, a product of sin^2 windows that falls smoothly to ~0
at the tile edges. Both are > 0 everywhere, so every pixel has weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

LAYOUTS = ("spread", "aligned")
WINDOWS = ("ramp", "hann")


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` >= ``value`` (positive ints)."""
    return -(-value // multiple) * multiple


def spread_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of ``tile``-px tiles covering [0, length) (length >= tile), evenly spread, overlap >= requested."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))
    n = int(np.ceil((length - tile) / stride)) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - tile, n)})


def aligned_layout(length: int, tile: int, overlap: float, multiple: int) -> tuple[int, int, int, int]:
    """(tile, stride, margin, padded length) along one axis of ``length`` px (``"aligned"`` layout).

    The tile shrinks to fit a short axis; stride = tile * (1 - overlap) rounded to ``multiple``;
    the margin (half the overlap, rounded up to ``multiple``) puts image edges inside tiles.
    """
    stride = max(multiple, int(round(tile * (1.0 - overlap) / multiple)) * multiple)
    stride = min(stride, tile)
    margin = round_up(math.ceil((tile - stride) / 2), multiple)
    tile = min(tile, round_up(length + 2 * margin, multiple))
    stride = min(stride, tile)
    n_tiles = max(1, math.ceil((length + 2 * margin - tile) / stride) + 1)
    return tile, stride, margin, tile + (n_tiles - 1) * stride


def aligned_origins(padded: int, tile: int, stride: int) -> list[int]:
    """Start offsets (in the padded image) of the tiles along one axis (``"aligned"`` layout)."""
    return list(range(0, padded - tile + 1, stride))


def ramp_window(height: int, width: int, overlap: float) -> torch.Tensor:
    """Blending weights (height, width), float32: 1 inside, linear ramps over ``overlap`` x side at the
    edges, > 0 everywhere."""

    def axis(n: int) -> np.ndarray:
        ramp_width = max(1, int(n * overlap))
        ramp = np.minimum(np.arange(n) + 1, np.arange(n)[::-1] + 1) / (ramp_width + 1)
        return np.minimum(ramp, 1.0).astype(np.float32)

    return torch.from_numpy(np.outer(axis(height), axis(width)))


def hann_window(height: int, width: int) -> torch.Tensor:
    """Blending weights (height, width), float32: product of sin^2 windows sampled at pixel centres, so
    every weight is > 0 and the weights fall smoothly to ~0 at the tile edges."""

    def axis(n: int) -> torch.Tensor:
        return torch.sin(math.pi * (torch.arange(n, dtype=torch.float64) + 0.5) / n) ** 2

    return (axis(height)[:, None] * axis(width)[None, :]).float()


def _axis_plan(length: int, tile: int, overlap: float, multiple: int, layout: str) -> tuple[int, int, int, list[int]]:
    """(tile, padding before, padding after, tile origins in the padded image) along one axis."""
    if layout == "spread":
        padded = max(length, tile)
        return tile, 0, padded - length, spread_starts(padded, tile, overlap)
    tile, stride, margin, padded = aligned_layout(length, tile, overlap, multiple)
    return tile, margin, padded - length - margin, aligned_origins(padded, tile, stride)


@torch.no_grad()
def sliding_window(predict: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray, tile: int, overlap: float, *,
                   multiple: int = 1, batch: int = 4, window: str = "hann", pad_mode: str = "reflect",
                   layout: str = "aligned", device: torch.device | str = "cpu") -> np.ndarray:
    """``predict`` applied to ``image`` (H x W, float) by overlapping tiles: float32 H x W.

    ``predict`` maps a batch of tiles (B, 1, h, w) float32 on ``device`` to outputs (B, h, w) of
    the same size, e.g. a boundary probability or a generated image. ``tile``: tile side in px;
    ``overlap``: fraction of a tile shared with its neighbour; ``multiple``: the network's size
    multiple (``"aligned"`` layout); ``batch``: tiles per call of ``predict``; ``window``: ``"hann"``
    or ``"ramp"``; ``pad_mode``: a numpy.pad mode (``"reflect"``, ``"symmetric"``, ...) for the
    padding the layout needs; ``layout``: ``"aligned"`` or ``"spread"`` (module docstring). Tiles
    are visited row by row, ``batch`` at a time; the blend sums in float32 on ``device``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: must be one of {', '.join(LAYOUTS)}")
    if window not in WINDOWS:
        raise ValueError(f"window {window!r}: must be one of {', '.join(WINDOWS)}")
    height, width = image.shape
    tile_h, top, bottom, ys = _axis_plan(height, tile, overlap, multiple, layout)
    tile_w, left, right, xs = _axis_plan(width, tile, overlap, multiple, layout)
    padded = np.pad(np.asarray(image, dtype=np.float32), ((top, bottom), (left, right)), mode=pad_mode)
    x = torch.from_numpy(padded).to(device)[None, None]
    weight = (hann_window(tile_h, tile_w) if window == "hann" else ramp_window(tile_h, tile_w, overlap)).to(device)
    total = torch.zeros(padded.shape, device=device)
    weight_sum = torch.zeros_like(total)
    origins = [(y, x0) for y in ys for x0 in xs]
    for start in range(0, len(origins), batch):
        chunk = origins[start:start + batch]
        outputs = predict(torch.cat([x[..., y:y + tile_h, x0:x0 + tile_w] for y, x0 in chunk]))
        for (y, x0), output in zip(chunk, outputs):
            total[y:y + tile_h, x0:x0 + tile_w] += output * weight
            weight_sum[y:y + tile_h, x0:x0 + tile_w] += weight
    return (total / weight_sum)[top:top + height, left:left + width].cpu().numpy()
