"""Boundary maps <-> grain label maps, the one convention every stage shares.

- A boundary map is a bool array (H, W): True = boundary pixel.
- A grain label map is an int32 array (H, W): 0 = boundary, 1..n = grains, each grain a
  4-connected component of the non-boundary pixels (8-connectivity would leak through diagonal
  gaps in 1-pixel boundaries; docs/design.md §3).
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as _cc_label


def label_grains(boundary: np.ndarray) -> np.ndarray:
    """Label the grains of a boundary map: 4-connected components of its non-boundary pixels.

    Parameters
    ----------
    boundary : ndarray of bool, shape (H, W)
        True on boundary pixels. Other dtypes are cast to bool.

    Returns
    -------
    labels : ndarray of int32, shape (H, W)
        0 on boundary pixels, 1..n on the grains, numbered in raster order of their first pixel.

    Notes
    -----
    Grains are 4-connected (``skimage.measure.label(~boundary, connectivity=1)``): with
    8-connectivity two grains separated by a diagonal 1-pixel line would touch at the corners and
    merge. Truth and prediction are labelled alike (docs/design.md §3.1).

    Examples
    --------
    A diagonal 1-pixel line separates two grains:

    >>> import numpy as np
    >>> from grainforge.grains import label_grains
    >>> label_grains(np.eye(3, dtype=bool))
    array([[0, 1, 1],
           [2, 0, 1],
           [2, 2, 0]], dtype=int32)
    """
    boundary = np.asarray(boundary, dtype=bool)
    return _cc_label(~boundary, connectivity=1, background=0).astype(np.int32)


def boundary_from_ids(ids: np.ndarray) -> np.ndarray:
    """1-pixel closed boundary (bool, H x W) of an id map (docs/design.md §3.2).

    A pixel is boundary if its right or lower 4-neighbour has another id. Every pair of 4-adjacent
    pixels with different ids then has at least one boundary pixel, so the 4-connected grains of the
    complement never merge two ids.
    """
    ids = np.asarray(ids)
    boundary = np.zeros(ids.shape, dtype=bool)
    boundary[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    boundary[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return boundary


def touches_border(labels: np.ndarray) -> np.ndarray:
    """Bool array indexed by label (length n+1): True where the grain has a pixel on the image edge."""
    labels = np.asarray(labels)
    flags = np.zeros(int(labels.max(initial=0)) + 1, dtype=bool)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    flags[edge] = True
    flags[0] = False
    return flags
