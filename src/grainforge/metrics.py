"""Segmentation metrics of docs/design.md §4: MAP, ARI, VI (split, merge) and boundary precision/recall/F1.

Conventions (paper defaults; every alternative is an explicit option):

- Label images (H, W) int: 0 = boundary, 1..n = grains. Boundary maps are turned into label images
  with :func:`grainforge.grains.label_grains` (4-connected grains, so a diagonal gap in a 1-pixel
  boundary does not merge two grains), in truth and prediction alike.
- Everything comes from one sparse contingency table per image (the non-zero counts n_ij of pixels
  with true label i and predicted label j), never from per-grain pixel loops.
- MAP (Data Science Bowl 2018): for t in 0.50, 0.55, ..., 0.95 a predicted grain matches a true
  grain when IoU > t (strictly; one-to-one since t >= 0.5); precision(t) = TP / (TP + FP + FN);
  an image's AP is the mean over t, MAP the mean over images. Boundary pixels belong to no grain:
  a grain's area is its own pixel count and intersections count pixels that are grain on both sides.
  The comparison IoU > k/20 is done in exact integers (20 * n_ij > k * union).
  Empty cases: no grains on either side -> AP = 1; grains on one side only -> AP = 0.
- True boundaries drawn wider than 1 px are thinned to their centre line before scoring
  (``truth_lines="auto"``, :func:`scoring_truth`, docs/design.md §4.6); 1-px truths are untouched.
- ARI, mode "paper": adjusted Rand index over all pixels with the boundary as one more cluster
  (label 0) on each side; equal to ``sklearn.metrics.adjusted_rand_score(true.ravel(), pred.ravel())``
  (same pair-counting formula, exact Python-integer arithmetic). Mode "grains": every boundary pixel
  first joins its nearest grain (``skimage.segmentation.expand_labels``), on both sides.
- VI (bits): over the pixels that are grain (non-zero) in BOTH images; split = H(pred | true)
  (true grains cut into several predicted ones), merge = H(true | pred) (predicted grains covering
  several true ones); the order of ``skimage.metrics.variation_of_information(true, pred)``.
  No such pixel -> (0, 0).
- Boundary precision/recall/F1 with a tolerance of ``tolerance`` pixels (Euclidean): a predicted
  boundary pixel is correct when a true boundary pixel lies within that distance, and vice versa
  for recall (distance transform <= tolerance, computed as a dilation by the digital disk).
  No predicted boundary pixel -> precision 1 if the truth has none either, else 0; likewise recall.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from grainforge.errors import UserError
from grainforge.grains import label_grains

#: MAP IoU thresholds 0.50, 0.55, ..., 0.95 as integers k with t = k / 20.
IOU_THRESHOLDS_TWENTIETHS = np.arange(10, 20, dtype=np.int64)
ARI_MODES = ("paper", "grains")
#: How true boundaries wider than 1 px are scored (docs/design.md §4.6): "auto" thins them, "as-is" keeps them.
TRUTH_LINES = ("auto", "as-is")
#: Columns of a per-image metrics row (and of the CSV written by ``grainforge evaluate``).
METRIC_COLUMNS = ("map", "ari", "vi_split", "vi_merge", "boundary_precision", "boundary_recall", "boundary_f1")
ROW_COLUMNS = ("image", *METRIC_COLUMNS, "n_true", "n_pred")


@dataclass(frozen=True)
class Contingency:
    """Sparse contingency table of two label images (all pixels, label 0 included).

    true_ids, pred_ids, counts: int64 arrays (K,) of the non-zero cells (i, j, n_ij);
    true_sizes: int64 (max true label + 1,) pixel count per true label; pred_sizes likewise.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    counts: np.ndarray
    true_sizes: np.ndarray
    pred_sizes: np.ndarray

    @property
    def n_pixels(self) -> int:
        """Number of pixels in the table (both images)."""
        return int(self.counts.sum())


def contingency(true_labels: np.ndarray, pred_labels: np.ndarray) -> Contingency:
    """Sparse contingency table of two non-negative integer label images of the same shape."""
    true_flat = _as_labels(true_labels).ravel()
    pred_flat = _as_labels(pred_labels).ravel()
    if true_flat.shape != pred_flat.shape:
        raise ValueError(f"label images differ in shape: {np.shape(true_labels)} vs {np.shape(pred_labels)}")
    n_true_ids = int(true_flat.max(initial=0)) + 1
    n_pred_ids = int(pred_flat.max(initial=0)) + 1
    if n_true_ids * n_pred_ids >= 2**62:  # huge sparse ids (e.g. uint32 volume ids): keys would overflow
        true_flat, pred_flat = _compact_ids(true_flat), _compact_ids(pred_flat)
        n_true_ids, n_pred_ids = int(true_flat.max()) + 1, int(pred_flat.max()) + 1
    keys = true_flat * n_pred_ids + pred_flat
    if n_true_ids * n_pred_ids <= 4 * keys.size + 65536:  # dense bincount is cheaper than sorting
        cells = np.bincount(keys, minlength=n_true_ids * n_pred_ids)
        keys = np.flatnonzero(cells)
        counts = cells[keys]
    else:
        keys, counts = np.unique(keys, return_counts=True)
    true_ids, pred_ids = np.divmod(keys, n_pred_ids)
    counts = counts.astype(np.int64)
    return Contingency(
        true_ids=true_ids, pred_ids=pred_ids, counts=counts,
        true_sizes=np.bincount(true_ids, weights=counts, minlength=n_true_ids).astype(np.int64),
        pred_sizes=np.bincount(pred_ids, weights=counts, minlength=n_pred_ids).astype(np.int64),
    )


def _as_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"label images must be integer arrays, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("label images must be non-negative (0 = boundary, 1..n = grains)")
    return labels.astype(np.int64, copy=False)


def _compact_ids(flat: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 in sorted order, label 0 (boundary) kept as 0."""
    unique, inverse = np.unique(flat, return_inverse=True)
    return inverse.astype(np.int64) + (1 if unique[0] != 0 else 0)


def _n_grains(sizes: np.ndarray) -> int:
    return int(np.count_nonzero(sizes[1:]))


def average_precision_from_table(table: Contingency) -> float:
    """Compute the Data Science Bowl average precision over IoU 0.50:0.05:0.95 (see module docstring)."""
    n_true, n_pred = _n_grains(table.true_sizes), _n_grains(table.pred_sizes)
    if n_true == 0 and n_pred == 0:
        return 1.0
    grain_cells = (table.true_ids > 0) & (table.pred_ids > 0)
    inter = table.counts[grain_cells]
    union = table.true_sizes[table.true_ids[grain_cells]] + table.pred_sizes[table.pred_ids[grain_cells]] - inter
    above_half = 2 * inter > union  # only these pairs can match at any t >= 0.5; at most one per grain
    inter, union = inter[above_half], union[above_half]
    tp = np.count_nonzero(20 * inter[None, :] > IOU_THRESHOLDS_TWENTIETHS[:, None] * union[None, :], axis=1)
    precision = tp / (n_true + n_pred - tp)  # TP / (TP + FP + FN)
    return float(precision.mean())


def average_precision(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Average precision of one image over IoU thresholds 0.50:0.05:0.95 (MAP = mean over images).

    Parameters
    ----------
    true_labels, pred_labels : ndarray of int, shape (H, W)
        Grain label maps: 0 = boundary, 1..n = grains (e.g. :func:`grainforge.grains.label_grains`).

    Returns
    -------
    ap : float
        Mean over t = 0.50, 0.55, ..., 0.95 of TP / (TP + FP + FN), where a predicted grain matches
        a true grain when their IoU > t (boundary pixels belong to no grain). 1.0 when neither image
        has a grain, 0.0 when only one has.

    References
    ----------
    .. [1] Caicedo, J. C. et al. (2019). Nucleus segmentation across imaging experiments: the 2018
           Data Science Bowl. Nature Methods 16, 1247-1253. :DOI:`10.1038/s41592-019-0612-7`

    Examples
    --------
    Each grain of the prediction has IoU 8/12 = 0.67 with its true grain: it matches at the four
    thresholds 0.50..0.65 and at none of the six above.

    >>> import numpy as np
    >>> from grainforge.grains import label_grains
    >>> from grainforge.metrics import average_precision
    >>> true = np.zeros((4, 6), dtype=bool); true[:, 3] = True
    >>> pred = np.zeros((4, 6), dtype=bool); pred[:, 2] = True
    >>> average_precision(label_grains(true), label_grains(pred))
    0.4
    >>> average_precision(label_grains(true), label_grains(true))
    1.0
    """
    return average_precision_from_table(contingency(true_labels, pred_labels))


def adjusted_rand_from_table(table: Contingency) -> float:
    """Compute the adjusted Rand index of a contingency table, identical to scikit-learn's pair-counting formula."""
    n = table.n_pixels
    sum_cells = int(np.dot(table.counts, table.counts))
    sum_true = int(np.dot(table.true_sizes, table.true_sizes))
    sum_pred = int(np.dot(table.pred_sizes, table.pred_sizes))
    # twice the pair counts: same/same, same-true/different-pred, different-true/same-pred, different/different
    tp = sum_cells - n
    fn = sum_true - sum_cells
    fp = sum_pred - sum_cells
    tn = n * n - fp - fn - sum_cells
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def expand_to_grains(labels: np.ndarray) -> np.ndarray:
    """Give every boundary pixel (0) the label of its nearest grain; all-boundary images stay 0."""
    from skimage.segmentation import expand_labels

    labels = np.asarray(labels)
    if not labels.any():
        return labels
    return expand_labels(labels, distance=sum(labels.shape))


def adjusted_rand(true_labels: np.ndarray, pred_labels: np.ndarray, mode: str = "paper") -> float:
    """Compute the adjusted Rand index of two label images over all their pixels.

    Parameters
    ----------
    true_labels, pred_labels : ndarray of int, shape (H, W)
        Grain label maps: 0 = boundary, 1..n = grains.
    mode : {"paper", "grains"}, optional
        "paper": boundary pixels form one more cluster (label 0) on each side, which equals
        ``sklearn.metrics.adjusted_rand_score(true.ravel(), pred.ravel())``. "grains": every
        boundary pixel first joins its nearest grain (``skimage.segmentation.expand_labels``).

    Returns
    -------
    ari : float
        1.0 for identical partitions, about 0.0 for independent ones; can be negative.

    References
    ----------
    .. [1] Hubert, L. and Arabie, P. (1985). Comparing partitions. Journal of Classification 2,
           193-218. :DOI:`10.1007/BF01908075`

    Examples
    --------
    >>> import numpy as np
    >>> from grainforge.grains import label_grains
    >>> from grainforge.metrics import adjusted_rand
    >>> true = np.zeros((4, 6), dtype=bool); true[:, 3] = True
    >>> pred = np.zeros((4, 6), dtype=bool); pred[:, 2] = True
    >>> round(adjusted_rand(label_grains(true), label_grains(pred)), 4)
    0.4982
    >>> round(adjusted_rand(label_grains(true), label_grains(pred), mode="grains"), 4)
    0.4221
    """
    if mode not in ARI_MODES:
        raise ValueError(f"ARI mode must be one of {ARI_MODES}, got {mode!r}")
    if mode == "grains":
        true_labels, pred_labels = expand_to_grains(true_labels), expand_to_grains(pred_labels)
    return adjusted_rand_from_table(contingency(true_labels, pred_labels))


def variation_of_information_from_table(table: Contingency) -> tuple[float, float]:
    """(split, merge) in bits over pixels that are grain in both images (see module docstring)."""
    grain_cells = (table.true_ids > 0) & (table.pred_ids > 0)
    counts = table.counts[grain_cells].astype(np.float64)
    total = float(counts.sum())
    if total == 0:
        return 0.0, 0.0
    true_ids, pred_ids = table.true_ids[grain_cells], table.pred_ids[grain_cells]
    true_sizes = np.bincount(true_ids, weights=counts)[true_ids]
    pred_sizes = np.bincount(pred_ids, weights=counts)[pred_ids]
    split = 0.0 - float(np.sum(counts * np.log2(counts / true_sizes))) / total  # H(pred | true); 0.0 - : no -0.0
    merge = 0.0 - float(np.sum(counts * np.log2(counts / pred_sizes))) / total  # H(true | pred)
    return split, merge


def variation_of_information(true_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[float, float]:
    """Split and merge parts of the variation of information, in bits.

    Parameters
    ----------
    true_labels, pred_labels : ndarray of int, shape (H, W)
        Grain label maps: 0 = boundary, 1..n = grains. Only pixels that are grain in both images
        count; boundary pixels (0 on either side) are ignored.

    Returns
    -------
    split : float
        H(pred | true): how much the prediction cuts true grains apart (0 = no split).
    merge : float
        H(true | pred): how much predicted grains span several true grains (0 = no merge).
        Both are 0.0 when no pixel is grain in both images. The order is that of
        ``skimage.metrics.variation_of_information(true, pred)``.

    References
    ----------
    .. [1] Meila, M. (2007). Comparing clusterings - an information based distance. Journal of
           Multivariate Analysis 98, 873-895. :DOI:`10.1016/j.jmva.2006.11.013`

    Examples
    --------
    A predicted boundary across both true grains splits each of them:

    >>> import numpy as np
    >>> from grainforge.grains import label_grains
    >>> from grainforge.metrics import variation_of_information
    >>> true = np.zeros((4, 6), dtype=bool); true[:, 3] = True
    >>> pred = true.copy(); pred[2, :] = True
    >>> split, merge = variation_of_information(label_grains(true), label_grains(pred))
    >>> round(split, 4), merge
    (0.9183, 0.0)
    """
    return variation_of_information_from_table(contingency(true_labels, pred_labels))


def within_distance(mask: np.ndarray, radius: float) -> np.ndarray:
    """Bool (H, W): pixels within Euclidean distance <= ``radius`` of a True pixel of ``mask`` (H, W).

    The dilation by the digital disk, done as one horizontal max filter per row offset dy (half-width
    floor(sqrt(r^2 - dy^2))) shifted by dy; equal to ``distance_transform_edt(~mask) <= radius``.
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    height = mask.shape[0]
    near = np.zeros_like(mask)
    spread_by_half_width = {}
    reach = int(math.floor(radius))
    for dy in range(-reach, reach + 1):
        half_width = int(math.floor(math.sqrt(radius * radius - dy * dy)))
        if half_width not in spread_by_half_width:
            spread_by_half_width[half_width] = ndimage.maximum_filter1d(
                mask.view(np.uint8), 2 * half_width + 1, axis=1, mode="constant", cval=0).view(bool)
        spread = spread_by_half_width[half_width]
        if dy >= 0:
            near[dy:] |= spread[: height - dy]
        else:
            near[:dy] |= spread[-dy:]
    return near


def boundary_prf(true_boundary: np.ndarray, pred_boundary: np.ndarray, tolerance: float = 2) -> tuple[float, float, float]:
    """Boundary precision, recall and F1 with a distance tolerance.

    Parameters
    ----------
    true_boundary, pred_boundary : ndarray of bool, shape (H, W)
        Boundary maps, True on boundary pixels.
    tolerance : float, optional
        Euclidean distance in pixels within which a boundary pixel counts as found.

    Returns
    -------
    precision : float
        Fraction of predicted boundary pixels with a true boundary pixel within ``tolerance``.
    recall : float
        Fraction of true boundary pixels with a predicted boundary pixel within ``tolerance``.
    f1 : float
        Harmonic mean of the two (0.0 when both are 0). With no predicted pixel precision is 1.0
        if the truth has none either, else 0.0; likewise recall.

    References
    ----------
    .. [1] Martin, D. R., Fowlkes, C. C. and Malik, J. (2004). Learning to detect natural image
           boundaries using local brightness, color, and texture cues. IEEE Transactions on Pattern
           Analysis and Machine Intelligence 26, 530-549. :DOI:`10.1109/TPAMI.2004.1273918`
           (boundary precision/recall with a tolerance; here without their one-to-one matching).

    Examples
    --------
    >>> import numpy as np
    >>> from grainforge.metrics import boundary_prf
    >>> true = np.zeros((4, 6), dtype=bool); true[:, 3] = True
    >>> pred = np.zeros((4, 6), dtype=bool); pred[:, 2] = True
    >>> boundary_prf(true, pred)
    (1.0, 1.0, 1.0)
    >>> boundary_prf(true, pred, tolerance=0)
    (0.0, 0.0, 0.0)
    """
    true_boundary = np.asarray(true_boundary, dtype=bool)
    pred_boundary = np.asarray(pred_boundary, dtype=bool)
    n_true, n_pred = int(true_boundary.sum()), int(pred_boundary.sum())

    def hit_fraction(points: np.ndarray, n_points: int, targets: np.ndarray, n_targets: int) -> float:
        if n_points == 0:
            return 1.0 if n_targets == 0 else 0.0
        if n_targets == 0:
            return 0.0
        return int(np.count_nonzero(within_distance(targets, tolerance) & points)) / n_points

    precision = hit_fraction(pred_boundary, n_pred, true_boundary, n_true)
    recall = hit_fraction(true_boundary, n_true, pred_boundary, n_pred)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1


def evaluate_labels(true_labels: np.ndarray, pred_labels: np.ndarray, ari_mode: str = "paper") -> dict:
    """All metrics of one image from two label images (0 = boundary).

    Keys: map, ari, vi_split, vi_merge, boundary_precision, boundary_recall, boundary_f1
    (boundary = label 0), n_true, n_pred.
    """
    if ari_mode not in ARI_MODES:
        raise ValueError(f"ARI mode must be one of {ARI_MODES}, got {ari_mode!r}")
    table = contingency(true_labels, pred_labels)
    ari = adjusted_rand_from_table(table) if ari_mode == "paper" else adjusted_rand(true_labels, pred_labels, "grains")
    split, merge = variation_of_information_from_table(table)
    precision, recall, f1 = boundary_prf(np.asarray(true_labels) == 0, np.asarray(pred_labels) == 0)
    return {
        "map": average_precision_from_table(table), "ari": ari, "vi_split": split, "vi_merge": merge,
        "boundary_precision": precision, "boundary_recall": recall, "boundary_f1": f1,
        "n_true": _n_grains(table.true_sizes), "n_pred": _n_grains(table.pred_sizes),
    }


def scoring_truth(true_boundary: np.ndarray, truth_lines: str = "auto") -> np.ndarray:
    """Return the true boundary map as it is scored (docs/design.md §4.6).

    grainforge predicts 1-px boundaries. A hand-traced truth drawn wider (measured line width above
    ``ONE_PIXEL_WIDTH_PX + WIDTH_TOLERANCE_PX`` of :mod:`grainforge.labelwidth`) is thinned to its 1-px
    centre line, so that grains are compared at one line width: scored as traced, even the truth's own
    centre line reaches only MAP 0.48 on 4-6 px labels (tbm).

    Parameters
    ----------
    true_boundary : ndarray of bool, shape (H, W)
        True boundary map.
    truth_lines : {"auto", "as-is"}, optional
        "auto" thins a thick truth; "as-is" never thins.

    Returns
    -------
    boundary : ndarray of bool, shape (H, W)
        The thinned map, or ``true_boundary`` itself when it is 1 px wide, has no boundary or no grain
        pixel, or ``truth_lines`` is "as-is".
    """
    from grainforge.data.pairs import thin_lines
    from grainforge.labelwidth import ONE_PIXEL_WIDTH_PX, WIDTH_TOLERANCE_PX, line_width

    if truth_lines not in TRUTH_LINES:
        raise ValueError(f"truth_lines must be one of {TRUTH_LINES}, got {truth_lines!r}")
    if truth_lines == "as-is" or not true_boundary.any() or true_boundary.all():
        return true_boundary
    if line_width(true_boundary) <= ONE_PIXEL_WIDTH_PX + WIDTH_TOLERANCE_PX:
        return true_boundary
    return thin_lines(true_boundary)  # lines kept on the image edge: a gap there would merge two grains


def evaluate_boundaries(true_boundary: np.ndarray, pred_boundary: np.ndarray, ari_mode: str = "paper",
                        truth_lines: str = "auto") -> dict:
    """All metrics of one image from two boundary maps, grains 4-connected (docs/design.md §4).

    Parameters
    ----------
    true_boundary, pred_boundary : ndarray of bool, shape (H, W)
        Boundary maps, True on boundary pixels; both are labelled with
        :func:`grainforge.grains.label_grains`.
    ari_mode : {"paper", "grains"}, optional
        Convention of the ARI (see :func:`adjusted_rand`).
    truth_lines : {"auto", "as-is"}, optional
        "auto" thins a true boundary wider than 1 px to its centre line before scoring
        (:func:`scoring_truth`); "as-is" scores it as traced.

    Returns
    -------
    row : dict
        ``map`` (this image's AP, :func:`average_precision`), ``ari`` (:func:`adjusted_rand`),
        ``vi_split``, ``vi_merge`` (bits, :func:`variation_of_information`),
        ``boundary_precision``, ``boundary_recall``, ``boundary_f1`` (tolerance 2 px,
        :func:`boundary_prf`), ``n_true`` and ``n_pred`` (grain counts).

    Raises
    ------
    ValueError
        If the maps differ in shape.

    Examples
    --------
    >>> import numpy as np
    >>> from grainforge.metrics import evaluate_boundaries
    >>> true = np.zeros((4, 6), dtype=bool); true[:, 3] = True
    >>> pred = np.zeros((4, 6), dtype=bool); pred[:, 2] = True
    >>> row = evaluate_boundaries(true, pred)
    >>> row["map"], round(row["ari"], 4), row["boundary_f1"], row["n_true"], row["n_pred"]
    (0.4, 0.4982, 1.0, 2, 2)
    """
    true_boundary, pred_boundary = np.asarray(true_boundary, dtype=bool), np.asarray(pred_boundary, dtype=bool)
    if true_boundary.shape != pred_boundary.shape:
        raise ValueError(f"boundary maps differ in shape: {true_boundary.shape} vs {pred_boundary.shape}")
    true_boundary = scoring_truth(true_boundary, truth_lines)
    return evaluate_labels(label_grains(true_boundary), label_grains(pred_boundary), ari_mode)


def _evaluate_pair(args: tuple) -> dict:
    true_boundary, pred_boundary, ari_mode, truth_lines = args
    return evaluate_boundaries(true_boundary, pred_boundary, ari_mode, truth_lines)


def _pool_map(func: Callable, items: Sequence, workers: int | None, progress: bool, description: str) -> list:
    """``[func(item) for item in items]`` in order, on a process pool, with a rich progress bar.

    ``workers``: None = all CPUs; 1 = in this process.
    """
    from grainforge.progress import progress_bar

    workers = min(workers or os.cpu_count() or 1, len(items))
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task(description, total=len(items))
        if workers <= 1:
            results = []
            for item in items:
                results.append(func(item))
                bar.update(task, advance=1)
            return results
        chunk = max(1, min(16, len(items) // (4 * workers)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = []
            for result in pool.map(func, items, chunksize=chunk):
                results.append(result)
                bar.update(task, advance=1)
            return results


def evaluate_arrays(pairs: Iterable[tuple[np.ndarray, np.ndarray]], ari_mode: str = "paper",
                    workers: int | None = 1, progress: bool = False, truth_lines: str = "auto") -> list[dict]:
    """Metrics rows for (true_boundary, pred_boundary) bool map pairs, in order (see evaluate_boundaries)."""
    items = [(true_b, pred_b, ari_mode, truth_lines) for true_b, pred_b in pairs]
    return _pool_map(_evaluate_pair, items, workers, progress, "evaluating")


# ---------------------------------------------------------------- folders


#: A prediction with more than this share of boundary pixels is warned about (likely the wrong polarity).
MAX_PRED_BOUNDARY_SHARE = 0.5


def _read_prediction(path: Path, boundary_value: int) -> np.ndarray:
    """Predicted boundary map (bool, H x W), boundary pixels = ``boundary_value`` (0 or 255, never guessed).

    Unlike a true label it may be uniform: a segmenter that found no boundary writes a blank map,
    read as no boundary pixels (one grain) in any convention. Its polarity is never guessed from the
    file: a weak model's map can be more than half boundary, and a "rarer value" rule would invert it.
    """
    from grainforge.data.io import read_image
    from grainforge.data.pairs import label_to_boundary

    label = read_image(path)
    if label.min() == label.max():
        return np.zeros(label.shape, dtype=bool)
    return label_to_boundary(label, str(path), boundary_value)


def _image_folder(folder: Path) -> Path:
    """``folder`` itself if it holds images, else its ``boundaries/`` or ``labels/`` subfolder.

    Those are the layouts written by ``grainforge segment predict`` and ``grainforge demo-data``.
    """
    from grainforge.data.io import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; pass a folder of boundary maps")
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        return folder
    for sub in ("boundaries", "labels"):
        if (folder / sub).is_dir():
            return folder / sub
    return folder


def pair_files(pred_dir: str | os.PathLike, true_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(stem, pred_file, true_file) for every stem, sorted; UserError naming any file without a partner."""
    from grainforge.data.io import list_images

    pred_files = {p.stem: p for p in list_images(_image_folder(Path(pred_dir)))}
    true_files = {p.stem: p for p in list_images(_image_folder(Path(true_dir)))}
    for stem, path in sorted(pred_files.items()):
        if stem not in true_files:
            raise UserError(f"{path}: no true label with stem '{stem}' in {true_dir}; "
                            "give both folders the same file names")
    for stem, path in sorted(true_files.items()):
        if stem not in pred_files:
            raise UserError(f"{path}: no prediction with stem '{stem}' in {pred_dir}; "
                            "give both folders the same file names")
    return [(stem, pred_files[stem], true_files[stem]) for stem in sorted(true_files)]


def _evaluate_files(args: tuple) -> dict:
    stem, pred_path, true_path, boundary_value, pred_boundary_value, ari_mode, truth_lines = args
    from grainforge.data.pairs import read_boundary

    pred_boundary = _read_prediction(pred_path, pred_boundary_value)
    true_boundary = read_boundary(true_path, boundary_value)
    if pred_boundary.shape != true_boundary.shape:
        raise UserError(f"{pred_path}: size {pred_boundary.shape[1]}x{pred_boundary.shape[0]} differs from "
                        f"{true_path} ({true_boundary.shape[1]}x{true_boundary.shape[0]}); predict on the same images")
    return {"image": stem, **evaluate_boundaries(true_boundary, pred_boundary, ari_mode, truth_lines),
            "_pred_boundary_share": float(pred_boundary.mean()), "_pred_path": str(pred_path)}


def evaluate_folders(pred_dir: str | os.PathLike, true_dir: str | os.PathLike, boundary_value: str | int = "auto",
                     ari_mode: str = "paper", workers: int | None = None, progress: bool = False,
                     pred_boundary_value: int = 255, truth_lines: str = "auto") -> list[dict]:
    """Metrics rows (key "image" = stem, then ROW_COLUMNS) for boundary maps paired by stem.

    Either folder may also be a run folder holding ``boundaries/`` or ``labels/``. True labels are read
    with :func:`grainforge.data.pairs.read_boundary` (``boundary_value`` "auto" = the rarer value of each
    true label, 0 or 255; threshold 127); a uniform true label is a UserError naming the file.
    Predictions mark boundaries with ``pred_boundary_value`` (0 or 255; 255 is what grainforge writes),
    never guessed per file (docs/design.md §4.5); a uniform (blank) prediction is "no boundary found",
    and one that is more than half boundary gets a :class:`grainforge.errors.GrainforgeWarning` naming it.
    ``truth_lines``: how true lines wider than 1 px are scored (:func:`scoring_truth`).
    """
    import warnings

    from grainforge.errors import GrainforgeWarning

    if ari_mode not in ARI_MODES:
        raise UserError(f"ari_mode: unknown mode '{ari_mode}'; use one of {', '.join(ARI_MODES)}")
    if truth_lines not in TRUTH_LINES:
        raise UserError(f"truth_lines: unknown value '{truth_lines}'; use one of {', '.join(TRUTH_LINES)}")
    if pred_boundary_value not in (0, 255):
        raise UserError(f"pred_boundary_value: {pred_boundary_value!r} must be 0 or 255 (the predictions' boundary value)")
    items = [(stem, pred, true, boundary_value, pred_boundary_value, ari_mode, truth_lines)
             for stem, pred, true in pair_files(pred_dir, true_dir)]
    rows = _pool_map(_evaluate_files, items, workers, progress, "evaluating")
    for row in rows:
        share, path = row.pop("_pred_boundary_share"), row.pop("_pred_path")
        if share > MAX_PRED_BOUNDARY_SHARE:
            warnings.warn(f"{path}: {100 * share:.0f} % of the prediction is boundary (value {pred_boundary_value}); "
                          f"if its boundaries are {255 - pred_boundary_value}, pass --pred-boundary-value "
                          f"{255 - pred_boundary_value}", GrainforgeWarning, stacklevel=2)
    return rows


def summarize(rows: Sequence[dict]) -> dict[str, tuple[float, float]]:
    """(mean, population std) over rows of each metric column; MAP = mean of the per-image APs."""
    return {name: (float(np.mean([r[name] for r in rows])), float(np.std([r[name] for r in rows])))
            for name in METRIC_COLUMNS}
