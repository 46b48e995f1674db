"""Metrics speed: the paper's 1008 test tiles of 400 x 400 evaluated end to end (docs/design.md §4, §9.2).

Synthetic pairs, no data files needed: truth = 1-pixel boundaries of a Voronoi tessellation
(~300 grains per tile); prediction = the same tessellation with moved seeds (shifted boundaries),
erased boundary patches (merges), spurious straight lines (splits) and thickened stretches.
48 distinct pairs x 21 dihedral variants = 1008 tiles.

Figures (one per line):
- arrays: all metrics (MAP, ARI, VI, boundary P/R/F1) from in-memory bool boundary maps, including
  4-connected grain labelling, on a process pool of --workers; no file reading.
- files:  the same through ``evaluate_folders`` from PNG files (reading included, writing not).
- naive:  a per-grain-loop MAP (explicit masks per true grain and each overlapping predicted grain)
  plus scikit-learn's ARI, on --naive-tiles tiles, one process; ratio = naive / fast per tile, both
  measured serially in this run.

    .venv/bin/python benchmarks/metrics_speed.py [--tiles 1008] [--workers 2] [--no-files]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from grainforge.data.io import write_png
from grainforge.grains import boundary_from_ids, label_grains
from grainforge.metrics import evaluate_arrays, evaluate_boundaries, evaluate_folders

SIZE = 400
N_GRAINS = 300


def voronoi_ids(seeds: np.ndarray) -> np.ndarray:
    """Id map (SIZE, SIZE) of the nearest seed (seeds: (n, 2) in pixels, row/col)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return cKDTree(seeds).query(np.c_[yy.ravel(), xx.ravel()])[1].reshape(SIZE, SIZE)


def synthetic_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(true_boundary, pred_boundary), bool (SIZE, SIZE): a plausible imperfect segmentation."""
    seeds = rng.uniform(0, SIZE, size=(N_GRAINS, 2))
    truth = boundary_from_ids(voronoi_ids(seeds))
    pred = boundary_from_ids(voronoi_ids(seeds + rng.normal(0, 0.5, size=seeds.shape)))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for cy, cx in rng.uniform(0, SIZE, size=(10, 2)):  # under-segmented patches: merges
        pred[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = False
    for y0, x0, y1, x1 in rng.uniform(0, SIZE, size=(4, 4)):  # scratches taken for boundaries: splits
        t = np.linspace(0, 1, 2 * SIZE)
        pred[np.round(y0 + t * (y1 - y0)).astype(int).clip(0, SIZE - 1),
             np.round(x0 + t * (x1 - x0)).astype(int).clip(0, SIZE - 1)] = True
    thick = np.zeros_like(pred)
    for cy, cx in rng.uniform(0, SIZE, size=(10, 2)):  # thick stretches
        thick[(yy - cy) ** 2 + (xx - cx) ** 2 < 400] = True
    pred |= ndimage.binary_dilation(pred) & thick
    return truth, pred


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    return np.rot90(array if k < 4 else array.T, k % 4)


def naive_map_and_ari(true_boundary: np.ndarray, pred_boundary: np.ndarray) -> tuple[float, float]:
    """Per-grain-loop MAP (the usual notebook implementation) and scikit-learn's ARI."""
    from sklearn.metrics import adjusted_rand_score

    true_labels, pred_labels = label_grains(true_boundary), label_grains(pred_boundary)
    ious = []
    for i in range(1, true_labels.max() + 1):
        true_mask = true_labels == i
        for j in np.unique(pred_labels[true_mask]):
            if j:
                pred_mask = pred_labels == j
                ious.append((true_mask & pred_mask).sum() / (true_mask | pred_mask).sum())
    ious = np.array(ious)
    n_true, n_pred = true_labels.max(), pred_labels.max()
    precisions = []
    for t in np.arange(0.5, 1.0, 0.05):
        tp = int(np.sum(ious > t))
        precisions.append(tp / (n_true + n_pred - tp))
    return float(np.mean(precisions)), adjusted_rand_score(true_labels.ravel(), pred_labels.ravel())


def timed(func, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process and its finished worker processes)."""
    def cpu() -> float:
        return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                   for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

    wall0, cpu0 = time.perf_counter(), cpu()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - wall0, cpu() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1008)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--distinct", type=int, default=48, help="distinct synthetic pairs (then dihedral variants)")
    parser.add_argument("--naive-tiles", type=int, default=6)
    parser.add_argument("--no-files", action="store_true", help="skip the from-files figure")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    distinct = [synthetic_pair(rng) for _ in range(args.distinct)]
    tiles = [tuple(dihedral(a, k // args.distinct % 8).copy() for a in distinct[k % args.distinct])
             for k in range(args.tiles)]
    print(f"synthesis: {args.tiles} tiles of {SIZE}x{SIZE} ({args.distinct} distinct pairs) in "
          f"{time.perf_counter() - t0:.1f} s (not timed below)")

    rows, seconds, cpu_seconds = timed(evaluate_arrays, tiles, workers=args.workers)
    print(f"arrays, {args.workers} workers: {seconds:.2f} s for {len(rows)} tiles = {len(rows) / seconds:.1f} tiles/s "
          f"(target < 30 s; mean MAP {np.mean([r['map'] for r in rows]):.4f}, ARI {np.mean([r['ari'] for r in rows]):.4f})")
    print(f"arrays, CPU time: {cpu_seconds:.2f} CPU-s = {cpu_seconds / args.workers:.2f} s on {args.workers} idle cores")

    if not args.no_files:
        with tempfile.TemporaryDirectory() as tmp:
            for k, (truth, pred) in enumerate(tiles):
                write_png(Path(tmp, "true", f"tile{k:04d}.png"), truth.astype(np.uint8) * 255)
                write_png(Path(tmp, "pred", f"tile{k:04d}.png"), pred.astype(np.uint8) * 255)
            file_rows, seconds, cpu_seconds = timed(evaluate_folders, Path(tmp, "pred"), Path(tmp, "true"),
                                                    workers=args.workers)
        assert [r["map"] for r in file_rows] == [r["map"] for r in rows]
        print(f"files (PNG reading included), {args.workers} workers: {seconds:.2f} s = "
              f"{len(file_rows) / seconds:.1f} tiles/s")
        print(f"files, CPU time: {cpu_seconds:.2f} CPU-s = {cpu_seconds / args.workers:.2f} s on {args.workers} idle cores")

    subset = tiles[: args.naive_tiles]
    t0 = time.perf_counter()
    fast = [evaluate_boundaries(*pair) for pair in subset]
    fast_per_tile = (time.perf_counter() - t0) / len(subset)
    t0 = time.perf_counter()
    naive = [naive_map_and_ari(*pair) for pair in subset]
    naive_per_tile = (time.perf_counter() - t0) / len(subset)
    for row, (naive_map, naive_ari) in zip(fast, naive):
        assert abs(row["map"] - naive_map) < 1e-9 and abs(row["ari"] - naive_ari) < 1e-12
    print(f"fast, 1 process: {fast_per_tile * 1e3:.1f} ms/tile (all metrics)")
    print(f"naive per-grain loop, 1 process: {naive_per_tile * 1e3:.1f} ms/tile (MAP + sklearn ARI only); "
          f"ratio naive/fast = {naive_per_tile / fast_per_tile:.1f}x on {len(subset)} tiles")


if __name__ == "__main__":
    main()
