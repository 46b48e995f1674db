"""Boundary probability map -> closed, 1-pixel boundaries and a 4-connected grain label map.

1. Markers: the 4-connected components of the grain cores (probability < ``marker_threshold``),
   eroded by a disk of ``marker_erosion`` px, so a boundary gap up to 2 x erosion px wide still
   separates two markers.
2. Watershed (:func:`flood`, the flooding of ``skimage.segmentation.watershed``) of the probability
   map from the markers: every pixel goes to one region, the region borders follow the probability
   ridges and close the gaps.
3. Merging: two adjacent regions whose shared border has a mean probability below
   ``min_border_probability`` are joined (erosion can cut a necked grain into two markers; no ridge
   separates them), and a region smaller than ``min_grain_area`` px joins the neighbour across its
   weakest border.
4. Boundary = the 1-pixel watershed line (``watershed_line=True``) of a last flooding from the same
   markers, each now carrying its merged region's id: it runs along the probability ridge (where the
   true boundary is) and leaves no two regions 4-adjacent, so it is closed for 4-connected grains.

Speed (docs/design.md §8.5.1): the flooding of step 2 is :func:`flood`, a numba flooding with scikit-image's
rule that queues only the boundary band between the grain cores (about a quarter of a micrograph) and
the cores' rims, each pixel once; merging works on the pixel pairs across region borders only; step 4
needs no second queue: it replays the order in which step 2 took the pixels (:func:`closed_boundaries`).
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage
from skimage.morphology import disk

from grainforge.errors import UserError
from grainforge.grains import label_grains

_AGE_BITS = 32  # a queue key is (order of the probability) << 32 | age; the age counts pushes, one per pixel at most
MAX_PIXELS = 2**31 - 1
"""Largest image (pixels) :func:`flood` accepts: queue items hold a flat index and a label in 32 bits each."""


def flood(probability: np.ndarray, markers: np.ndarray, watershed_line: bool = False) -> np.ndarray:
    """Marker-controlled watershed of a probability map, 4-connected: int32 (H, W) labels.

    The flooding of ``skimage.segmentation.watershed(probability, markers, connectivity=1,
    watershed_line=watershed_line)`` (scikit-image 0.26: priority = the larger of a pixel's
    probability and that of the pixel it was reached from, then the order of entry; marker pixels
    first), with two shortcuts that change nothing: a marker pixel whose four neighbours carry its
    label would flood nothing, so only the markers' rims enter the flooding, and a pixel is queued
    once (a later copy of it can never label a pixel). The result can differ from scikit-image's only
    where rim pixels have exactly the same probability: scikit-image's queue takes those in an order
    that depends on all the other marker pixels, here they go in raster order (docs/design.md §8.5.1).

    Parameters
    ----------
    probability : ndarray, shape (H, W)
        Boundary probability (any real values, cast to float32; NaN is not allowed).
    markers : ndarray of int, shape (H, W)
        0 = to flood, > 0 = the label of a marker pixel (kept).
    watershed_line : bool, optional
        Leave a 1-pixel line (label 0) between differently labelled regions.

    Returns
    -------
    labels : ndarray of int32, shape (H, W)
        Every pixel reachable from a marker gets a marker's label (0 on the watershed line).
    """
    return _flood_in_order(probability, markers, watershed_line)[0]


def _flood_in_order(probability: np.ndarray, markers: np.ndarray, watershed_line: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(:func:`flood` labels, the flat indices of the pixels in the order the flooding took them: int64 (n,),
    marker rims included, each pixel at most once)."""
    probability = np.ascontiguousarray(probability, dtype=np.float32)
    labels = np.array(markers, dtype=np.int32, order="C")
    if labels.shape != probability.shape or labels.ndim != 2:
        raise ValueError(f"flood: probability {probability.shape} and markers {labels.shape} must be the same 2-D shape")
    if labels.size > MAX_PIXELS:
        raise UserError(f"image of {labels.size} px: post-processing takes at most {MAX_PIXELS} px; split it into tiles")
    if np.isnan(probability).any():
        raise ValueError("flood: the probability map holds NaN")
    bits = probability.view(np.uint32)
    rims, priorities = _rims(labels, bits)
    order = np.empty(labels.size, dtype=np.int64)
    n_taken = _flood(bits, labels, rims[np.argsort(priorities, kind="stable")], watershed_line, order)  # ties: raster order
    return labels, order[:n_taken]


@numba.njit(cache=True, inline="always")
def _priority(bits):  # pragma: no cover - compiled
    """uint64 whose integer order is the float order of the float32 with these bits (-0.0 = 0.0)."""
    if bits == np.uint32(0x80000000):  # -0.0
        bits = np.uint32(0)
    if bits >= np.uint32(0x80000000):
        return np.uint64(bits ^ np.uint32(0xFFFFFFFF))
    return np.uint64(bits | np.uint32(0x80000000))


@numba.njit(cache=True, inline="always")
def _neighbours(index, height, width, out):  # pragma: no cover - compiled
    """The 4-neighbours of a flat index inside the image, written to ``out`` in scikit-image's order
    (up, left, right, down); returns how many."""
    row, col = index // width, index % width
    count = 0
    if row > 0:
        out[count] = index - width
        count += 1
    if col > 0:
        out[count] = index - 1
        count += 1
    if col < width - 1:
        out[count] = index + 1
        count += 1
    if row < height - 1:
        out[count] = index + width
        count += 1
    return count


@numba.njit(cache=True)
def _sift_up(keys, items, position):  # pragma: no cover - compiled
    key, item = keys[position], items[position]
    while position > 0:
        parent = (position - 1) >> 1
        if keys[parent] <= key:
            break
        keys[position], items[position] = keys[parent], items[parent]
        position = parent
    keys[position], items[position] = key, item


@numba.njit(cache=True)
def _sift_down(keys, items, size):  # pragma: no cover - compiled
    """Restore the heap keys[:size] after keys[0] was replaced."""
    key, item = keys[0], items[0]
    position, child = 0, 1
    while child < size:
        if child + 1 < size and keys[child + 1] < keys[child]:
            child += 1
        if key <= keys[child]:
            break
        keys[position], items[position] = keys[child], items[child]
        position, child = child, 2 * child + 1
    keys[position], items[position] = key, item


@numba.njit(cache=True, nogil=True)
def _rims(labels, bits):  # pragma: no cover - compiled
    """(flat indices in raster order, priorities) of the marker pixels with a 4-neighbour of another label
    (0 included)."""
    height, width = labels.shape
    flat = labels.ravel()
    neighbours = np.empty(4, dtype=np.int64)
    rims = np.empty(flat.size, dtype=np.int64)
    n = 0
    for index in range(flat.size):
        if flat[index] != 0:
            for k in range(_neighbours(index, height, width, neighbours)):
                if flat[neighbours[k]] != flat[index]:
                    rims[n] = index
                    n += 1
                    break
    rims = rims[:n]
    priorities = np.empty(n, dtype=np.uint64)
    for k in range(n):
        priorities[k] = _priority(bits.ravel()[rims[k]])
    return rims, priorities


@numba.njit(cache=True, nogil=True)
def _flood(bits, labels, rims, watershed_line, order):  # pragma: no cover - compiled
    """Flood ``labels`` (int32 (H, W), 0 = to flood) in place from the marker rims ``rims`` (flat indices in
    flooding order) by the probability whose float32 bits are ``bits`` (uint32 (H, W)); see :func:`flood`.
    Writes the flat indices in the order they are taken to ``order`` (int64, length H x W) and returns how many.

    Queue entries: key = priority << 32 | age (unique), item = label << 32 | flat index. Rim pixels are
    not queued: each is taken when its key (priority, age 0) precedes the queue's head.
    """
    height, width = labels.shape
    out, flat_bits = labels.ravel(), bits.ravel()
    state = np.zeros(out.size if watershed_line else 0, dtype=np.uint8)  # 1 = queued, 2 = on a watershed line
    capacity = max(1, out.size - np.count_nonzero(out))
    keys = np.empty(capacity, dtype=np.uint64)
    items = np.empty(capacity, dtype=np.int64)
    size, next_rim, age, n_taken = 0, 0, np.uint64(1), 0
    age_mask = np.uint64(2**_AGE_BITS - 1)
    neighbours = np.empty(4, dtype=np.int64)
    while next_rim < rims.size or size > 0:
        rim_key = np.uint64(0)
        if next_rim < rims.size:
            rim_key = _priority(flat_bits[rims[next_rim]]) << np.uint64(_AGE_BITS)
        if next_rim < rims.size and (size == 0 or rim_key < keys[0]):
            index = rims[next_rim]
            label, level = out[index], rim_key
            next_rim += 1
        else:
            level = keys[0] & ~age_mask
            index, label = items[0] & np.int64(2**32 - 1), np.int32(items[0] >> 32)
            size -= 1
            if size > 0:
                keys[0], items[0] = keys[size], items[size]
                _sift_down(keys, items, size)
        order[n_taken] = index
        n_taken += 1
        count = _neighbours(index, height, width, neighbours)
        if watershed_line:  # labelled when taken, unless it touches another label (then on the line; a marker keeps its label)
            for k in range(count):
                other = out[neighbours[k]]
                if state[neighbours[k]] != 2 and other != 0 and other != label:
                    state[index] = 2
                    break
            if state[index] != 2:
                out[index] = label
        for k in range(count):
            neighbour = neighbours[k]
            if out[neighbour] != 0 or (watershed_line and state[neighbour] != 0):  # without the line, queued = labelled
                continue
            age += np.uint64(1)
            if watershed_line:
                state[neighbour] = 1
            else:
                out[neighbour] = label
            keys[size] = max(_priority(flat_bits[neighbour]) << np.uint64(_AGE_BITS), level) | age
            items[size] = (np.int64(label) << np.int64(32)) | neighbour
            _sift_up(keys, items, size)
            size += 1
    return n_taken


@numba.njit(cache=True, nogil=True)
def _line_in_order(regions, seeds, order):  # pragma: no cover - compiled
    """The watershed line of a flooding from ``seeds`` (int32 (H, W), 0 = to flood) that takes the pixels in
    ``order`` (flat indices) and gives each the label it has in ``regions`` (int32 (H, W)): int32 (H, W), 0 on
    the line. The line rule of :func:`_flood` with ``watershed_line``, without its queue: a pixel on the line
    stays 0, a marker pixel on it keeps its label but is stored negated until the end (it counts as on the
    line for the pixels taken after it)."""
    height, width = regions.shape
    flat_regions = regions.ravel()
    out = seeds.copy().ravel()
    neighbours = np.empty(4, dtype=np.int64)
    for index in order:
        label = flat_regions[index]
        on_line = False
        for k in range(_neighbours(index, height, width, neighbours)):
            other = out[neighbours[k]]
            if other > 0 and other != label:
                on_line = True
                break
        out[index] = -label if on_line and out[index] != 0 else (0 if on_line else label)
    return np.abs(out).reshape(height, width)


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
    horizontal, vertical = regions[:, :-1] != regions[:, 1:], regions[:-1] != regions[1:]  # pixel pairs across a border
    a = np.concatenate([regions[:, :-1][horizontal], regions[:-1][vertical]]).astype(np.int64)
    b = np.concatenate([regions[:, 1:][horizontal], regions[1:][vertical]]).astype(np.int64)
    strength = np.concatenate([np.maximum(probability[:, :-1][horizontal], probability[:, 1:][horizontal]),
                               np.maximum(probability[:-1][vertical], probability[1:][vertical])])
    n = int(regions.max()) + 1
    keys, inverse = np.unique(np.minimum(a, b) * n + np.maximum(a, b), return_inverse=True)
    mean_strength = np.bincount(inverse, weights=strength) / np.bincount(inverse)
    first, second = keys // n, keys % n
    weak = mean_strength < min_border_probability
    # each small region's weakest border: candidate edges sorted by (region, strength), first per region
    source, target = np.concatenate([first, second]), np.concatenate([second, first])
    area = np.bincount(regions.ravel(), minlength=n)
    small = area[source] < min_grain_area
    order = np.lexsort((np.concatenate([mean_strength, mean_strength])[small], source[small]))
    source, target = source[small][order], target[small][order]
    weakest = np.r_[True, source[1:] != source[:-1]] if source.size else np.zeros(0, dtype=bool)
    rows = np.concatenate([first[weak], source[weakest]])
    cols = np.concatenate([second[weak], target[weakest]])
    component = _smallest_in_component(n, rows, cols)
    # ids 1..k' in the order of the components present (np.unique of component[regions], on k ids, not H x W pixels)
    present = np.unique(component[np.flatnonzero(area)])
    return (np.searchsorted(present, component) + 1).astype(np.int32)[regions]


@numba.njit(cache=True)
def _smallest_in_component(n, rows, cols):  # pragma: no cover - compiled
    """Per node 0..n-1 of the undirected graph with edges (rows[i], cols[i]): the smallest node of its connected
    component (int64 (n,)), by union-find; components in the order of their smallest node, as scipy's
    ``connected_components`` numbers them."""
    parent = np.arange(n)
    for i in range(rows.size):
        a, b = rows[i], cols[i]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a < b:
            parent[b] = a
        elif b < a:
            parent[a] = b
    for node in range(n):  # roots are the smallest nodes; a parent is smaller than its child
        parent[node] = parent[parent[node]]
    return parent


def _regions_markers_order(probability: np.ndarray, marker_threshold: float, marker_erosion: int, min_grain_area: int,
                           min_border_probability: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(merged regions, markers, the order in which the first flooding took the pixels); steps 1-3."""
    markers = grain_markers(probability, marker_threshold, marker_erosion)
    if markers.max() == 0:  # no grain core at all: the whole image is one grain
        return np.ones(probability.shape, dtype=np.int32), markers, np.zeros(0, dtype=np.int64)
    flooded, order = _flood_in_order(probability, markers)
    return merge_regions(flooded, probability, min_grain_area, min_border_probability), markers, order


def watershed_regions(probability: np.ndarray, marker_threshold: float = 0.3, marker_erosion: int = 2,
                      min_grain_area: int = 30, min_border_probability: float = 0.3) -> np.ndarray:
    """int32 (H, W) region ids 1..k covering every pixel (steps 1-3 of the module docstring)."""
    probability = np.asarray(probability, dtype=np.float32)
    return _regions_markers_order(probability, marker_threshold, marker_erosion, min_grain_area, min_border_probability)[0]


def closed_boundaries(probability: np.ndarray, marker_threshold: float = 0.3, marker_erosion: int = 2,
                      min_grain_area: int = 30, min_border_probability: float = 0.3) -> np.ndarray:
    """Closed 1-pixel boundary map (bool, H x W) of a boundary probability map (H x W in [0, 1]).

    Step 4 without a second queue: a flooding from the markers relabelled by their merged regions takes the
    pixels in the same order as the first one (the order depends on the probabilities and on which pixels are
    markers, not on the labels) and reaches each with its merged region's label, so :func:`_line_in_order`
    replays the first flooding's order; the result is that of ``flood(probability, seeds, watershed_line=True)``.
    """
    probability = np.asarray(probability, dtype=np.float32)
    regions, markers, order = _regions_markers_order(probability, marker_threshold, marker_erosion, min_grain_area,
                                                     min_border_probability)
    if markers.max() == 0:
        return np.zeros(probability.shape, dtype=bool)
    seeds = np.where(markers > 0, regions, 0)
    return _line_in_order(regions, seeds, order) == 0


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
