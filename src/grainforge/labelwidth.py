"""Line width of boundary labels: measure it on hand-drawn labels, draw simulated boundaries at it.

Hand-traced labels of real micrographs are 2-6 px wide lines; Potts sections give 1-px boundaries.
A pix2pix model trained on the first and applied to the second paints faint, wrong boundaries, and a
U-Net trained on the mix learns two conventions at once. So grainforge measures the real labels'
width and draws every simulated label at that width before it reaches pix2pix or the U-Net.

Width of a boundary map (bool, H x W) = boundary area / skeleton length (px): 1.0 for 1-px lines,
about 2r + 1 for lines dilated by a disk of radius r.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize, thin

#: What :func:`line_width` measures on closed 1-px boundaries (their staircases outrun the skeleton), px.
ONE_PIXEL_WIDTH_PX = 1.2
#: Labels whose widths differ by less than this (px) count as drawn the same way.
WIDTH_TOLERANCE_PX = 0.5


def line_width(boundary: np.ndarray) -> float:
    """Mean line width (px) of a bool boundary map (H, W): area / skeleton length; nan without boundary."""
    return mean_line_width([boundary])


def mean_line_width(boundaries: Iterable[np.ndarray]) -> float:
    """Line width (px) of several boundary maps taken together (total area / total skeleton length)."""
    area = length = 0
    for boundary in boundaries:
        boundary = np.asarray(boundary, dtype=bool)
        area += int(np.count_nonzero(boundary))
        length += int(np.count_nonzero(skeletonize(boundary)))
    return float(area) / length if length else float("nan")


def _radii(width: float) -> np.ndarray:
    """Distinct Euclidean pixel distances 0, 1, sqrt(2), 2, ... up to ``width``: the thresholds a
    distance-transform dilation can take."""
    n = int(np.ceil(width)) + 1
    squares = np.add.outer(np.arange(n) ** 2, np.arange(n) ** 2).ravel()
    return np.sqrt(np.unique(squares[squares <= width * width]))


def draw_at_width(boundary: np.ndarray, width: float) -> np.ndarray:
    """The boundary map (bool, H x W) redrawn as lines ``width`` px wide (>= 1).

    The lines are thinned to their 1-px centre lines, then dilated to every pixel within Euclidean
    distance r of them, r chosen among the attainable distances so that the result's
    :func:`line_width` is nearest ``width``. Closed boundaries stay closed. (A closed 1-px boundary
    measures about 1.2 px: its staircases are longer than its skeleton.)
    """
    if not width >= 1.0:
        raise ValueError(f"line width {width} px: must be >= 1")
    boundary = np.asarray(boundary, dtype=bool)
    if not boundary.any():
        return boundary.copy()
    centre = boundary if line_width(boundary) < 1.0 + WIDTH_TOLERANCE_PX else thin(boundary)
    distance = ndimage.distance_transform_edt(~centre)
    best, best_error = centre, abs(line_width(centre) - width)
    for radius in _radii(width)[1:]:
        drawn = distance <= radius + 1e-9
        error = abs(line_width(drawn) - width)
        if error < best_error:
            best, best_error = drawn, error
    return best


def same_width(a: float, b: float) -> bool:
    """Whether two label widths (px) count as drawn the same way (within :data:`WIDTH_TOLERANCE_PX`)."""
    return abs(a - b) < WIDTH_TOLERANCE_PX
