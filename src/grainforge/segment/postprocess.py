"""Boundary probability map -> closed, 1-pixel boundaries and a 4-connected grain label map.

1. Markers: the 4-connected components of the grain cores (probability < ``marker_threshold``),
   eroded by a disk of ``marker_erosion`` px, so a boundary gap up to 2 x erosion px wide still
   separates two markers.
2. Watershed (``skimage.segmentation.watershed``) of the probability map from the markers: every
   pixel goes to one region, the region borders follow the probability ridges and close the gaps.
3. Merging: two adjacent regions whose shared border has a mean probability below
   ``min_border_probability`` are joined (erosion can cut a necked grain into two markers; no ridge
   separates them), and a region smaller than ``min_grain_area`` px joins the neighbour across its
   weakest border.
4. Boundary = the 1-pixel watershed line (``watershed_line=True``) of a last flooding from the same
   markers, each now carrying its merged region's id: it runs along the probability ridge (where the
   true boundary is) and leaves no two regions 4-adjacent, so it is closed for 4-connected grains.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components
from skimage.morphology import disk
from skimage.segmentation import watershed

from grainforge.grains import label_grains


def grain_markers(probability: np.ndarray, marker_threshold: float, marker_erosion: int) -> np.ndarray:
    """int32 (H, W) marker image: 0 = no marker, 1..k = eroded 4-connected grain cores."""
    cores = probability < marker_threshold
    if marker_erosion > 0:
        cores = ndimage.binary_erosion(cores, structure=disk(marker_erosion), border_value=1)
    markers, _ = ndimage.label(cores)  # default structure = 4-connectivity
    return markers.astype(np.int32)


def merge_regions(regions: np.ndarray, probability: np.ndarray, min_grain_area: int,
                  min_border_probability: float) -> np.ndarray:
    """Merge regions (ids 1..k covering the image) across weak borders and small regions into a neighbour.

    Border strength of two 4-adjacent pixels in different regions = the larger probability of the two;
    a pair of regions whose mean border strength is below ``min_border_probability`` is joined, and a
    region of fewer than ``min_grain_area`` px is joined to the neighbour with the weakest border
    (transitively, as graph components). Returns int32 ids 1..k'.
    """
    a = np.concatenate([regions[:, :-1].ravel(), regions[:-1, :].ravel()]).astype(np.int64)
    b = np.concatenate([regions[:, 1:].ravel(), regions[1:, :].ravel()]).astype(np.int64)
    strength = np.concatenate([np.maximum(probability[:, :-1], probability[:, 1:]).ravel(),
                               np.maximum(probability[:-1, :], probability[1:, :]).ravel()])
    across = a != b
    n = int(regions.max()) + 1
    keys, inverse = np.unique(np.minimum(a[across], b[across]) * n + np.maximum(a[across], b[across]),
                              return_inverse=True)
    mean_strength = np.bincount(inverse, weights=strength[across]) / np.bincount(inverse)
    first, second = keys // n, keys % n
    weak = mean_strength < min_border_probability
    # each small region's weakest border: candidate edges sorted by (region, strength), first per region
    source, target = np.concatenate([first, second]), np.concatenate([second, first])
    small = np.bincount(regions.ravel(), minlength=n)[source] < min_grain_area
    order = np.lexsort((np.concatenate([mean_strength, mean_strength])[small], source[small]))
    source, target = source[small][order], target[small][order]
    weakest = np.r_[True, source[1:] != source[:-1]] if source.size else np.zeros(0, dtype=bool)
    rows = np.concatenate([first[weak], source[weakest]])
    cols = np.concatenate([second[weak], target[weakest]])
    graph = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    _, relabelled = np.unique(component[regions], return_inverse=True)
    return (relabelled.reshape(regions.shape) + 1).astype(np.int32)


def _regions_and_markers(probability: np.ndarray, marker_threshold: float, marker_erosion: int, min_grain_area: int,
                         min_border_probability: float) -> tuple[np.ndarray, np.ndarray]:
    markers = grain_markers(probability, marker_threshold, marker_erosion)
    if markers.max() == 0:  # no grain core at all: the whole image is one grain
        return np.ones(probability.shape, dtype=np.int32), markers
    regions = merge_regions(watershed(probability, markers), probability, min_grain_area, min_border_probability)
    return regions, markers


def watershed_regions(probability: np.ndarray, marker_threshold: float = 0.3, marker_erosion: int = 2,
                      min_grain_area: int = 30, min_border_probability: float = 0.3) -> np.ndarray:
    """int32 (H, W) region ids 1..k covering every pixel (steps 1-3 of the module docstring)."""
    probability = np.asarray(probability, dtype=np.float32)
    return _regions_and_markers(probability, marker_threshold, marker_erosion, min_grain_area, min_border_probability)[0]


def closed_boundaries(probability: np.ndarray, marker_threshold: float = 0.3, marker_erosion: int = 2,
                      min_grain_area: int = 30, min_border_probability: float = 0.3) -> np.ndarray:
    """Closed 1-pixel boundary map (bool, H x W) of a boundary probability map (H x W in [0, 1])."""
    probability = np.asarray(probability, dtype=np.float32)
    regions, markers = _regions_and_markers(probability, marker_threshold, marker_erosion, min_grain_area,
                                            min_border_probability)
    if markers.max() == 0:
        return np.zeros(probability.shape, dtype=bool)
    seeds = np.where(markers > 0, regions, 0)
    return watershed(probability, seeds, watershed_line=True) == 0


def threshold_boundaries(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Plain binary boundary map (bool): probability > threshold (no thinning, gaps stay open)."""
    return np.asarray(probability) > threshold


def raw_boundaries(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boundaries as the network draws them (the paper's scoring): probability > threshold, thinned to
    1 px (:func:`grainforge.data.pairs.thin_lines`); no closing, no merging, gaps stay open. bool (H, W)."""
    from grainforge.data.pairs import thin_lines

    return thin_lines(threshold_boundaries(probability, threshold))


def postprocess(probability: np.ndarray, config, threshold_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(boundary bool H x W, grain labels int32 H x W: 0 = boundary, 1..n) with the settings of a
    :class:`grainforge.segment.config.PostprocessConfig` (a U-Net's SegmentConfig or a ForestConfig)."""
    if threshold_only:
        boundary = threshold_boundaries(probability, config.threshold)
    else:
        boundary = closed_boundaries(probability, config.marker_threshold, config.marker_erosion, config.min_grain_area,
                                     config.min_border_probability)
    return boundary, label_grains(boundary)


MIN_FOUND_BOUNDARY = 0.2
"""A trained model that finds less than this share of the (thinned) labelled boundary length on its own
training images after post-processing is reported by :func:`missing_boundary_warnings`."""


def missing_boundary_warnings(pairs, probability_of, config, n_images: int = 2) -> list[str]:
    """``[warning]`` when a trained model finds (almost) no boundary on its own training images, else ``[]``;
    the warning is also issued as a :class:`grainforge.errors.GrainforgeWarning`.

    ``pairs``: the training pairs (the first ``n_images`` are checked); ``probability_of``: image (H x W in
    [0, 1]) -> boundary probability (H x W); ``config``: a PostprocessConfig. The boundary pixels after
    :func:`postprocess` are compared with the labelled boundary thinned to 1 px (so that thick labels do
    not count against the 1-px predicted lines); below :data:`MIN_FOUND_BOUNDARY` of it (summed over the
    checked images) the model's predictions would be (nearly) one-grain maps.
    """
    import warnings

    from skimage.morphology import thin

    from grainforge.errors import GrainforgeWarning

    checked = list(pairs)[:n_images]
    found = sum(int(postprocess(probability_of(pair.image), config)[0].sum()) for pair in checked)
    labelled = sum(int(thin(pair.boundary).sum()) for pair in checked)
    if labelled == 0 or found >= MIN_FOUND_BOUNDARY * labelled:
        return []
    message = (f"the trained model finds almost no boundary on its own training images "
               f"({', '.join(pair.name for pair in checked)}: {found} boundary px after post-processing vs {labelled} "
               f"labelled, {100 * found / labelled:.0f} %); its predictions will be (nearly) one-grain maps: check that "
               f"the labels mark boundaries, or train longer or on more images")
    warnings.warn(message, GrainforgeWarning, stacklevel=3)
    return [message]
