"""Boundary probability maps of images of any size: sliding-window inference
(:func:`grainforge.tiling.sliding_window`, ``"aligned"`` layout) with overlapping tiles blended by a
Hann window, on a reflect-padded image.

The image is reflect-padded by a margin (a multiple of the network's size multiple, so that tiles
keep the pooling grid of the full image) and then up to a whole number of strides; tile origins
are multiples of the stride, itself a multiple of ``2**depth``.
"""

from __future__ import annotations

import numpy as np
import torch

from grainforge.tiling import round_up, sliding_window


@torch.inference_mode()
def full_probability(network, image: np.ndarray) -> np.ndarray:
    """Boundary probability (float32, H x W) from one forward pass over the whole image,
    reflect-padded at the bottom/right to the network's size multiple."""
    device = next(network.parameters()).device
    h, w = image.shape
    m = network.size_multiple
    padded = np.pad(np.asarray(image, dtype=np.float32), ((0, round_up(h, m) - h), (0, round_up(w, m) - w)),
                    mode="reflect")
    x = torch.from_numpy(padded).to(device)[None, None]
    return torch.softmax(network(x), dim=1)[0, 1, :h, :w].float().cpu().numpy()


@torch.inference_mode()
def tiled_probability(network, image: np.ndarray, tile: int, overlap: float = 0.25, tile_batch: int = 4) -> np.ndarray:
    """Boundary probability (float32, H x W in [0, 1]) of a grey image (H x W in [0, 1]) of any size,
    by Hann-blended overlapping tiles of side ``tile`` (a multiple of the network's size multiple)."""

    def predict(tiles: torch.Tensor) -> torch.Tensor:
        return torch.softmax(network(tiles), dim=1)[:, 1]

    return sliding_window(predict, image, tile, overlap, multiple=network.size_multiple, batch=tile_batch,
                          window="hann", pad_mode="reflect", layout="aligned",
                          device=next(network.parameters()).device)
