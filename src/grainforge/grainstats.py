"""Grain statistics of boundary label maps and of simulation logs (docs/design.md §3.4, §5.7; paper Fig. 5).

Per grain (a 4-connected component of the non-boundary pixels, :mod:`grainforge.grains`):
area in pixels, equivalent-circle diameter in pixels (and in µm² and µm with a pixel size
``um_per_px``), number of edges (neighbouring grains across the boundary), and whether it touches
the image border. Distributions (area normalised by the
mean, edge-number histogram) use interior grains only, i.e. grains that do not touch the border.

Two grains are neighbours when at least ``min_contact`` boundary pixels see both of them in their
3 x 3 neighbourhood: a real shared edge of a 1-pixel boundary is seen by >= 2 pixels, while two
grains that only meet at a corner (a four-grain junction) are seen by one, so they do not count.
Thick real labels should be thinned first (``thin=True``) so that both sides of a boundary lie
within one pixel of it. For data-set statistics (:func:`folder_grain_tables`, :func:`mean_grain_area`,
``grainforge stats``) grains smaller than ``MIN_AREA_PX`` (3 pixels) are fragments of the boundary
network (slivers cut off by the 1-pixel rule at junctions), not grains: their pixels count as
boundary. Grain numbers are always those of :func:`grainforge.grains.label_grains`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numba
import numpy as np

from grainforge.data.io import check_pixel_size, ensure_writable_dir, read_csv, save_figure, write_csv, write_json
from grainforge.data.pairs import load_boundaries
from grainforge.errors import UserError
from grainforge.grains import label_grains, touches_border
from grainforge.progress import progress_bar
from grainforge.runinfo import RunRecord

GRAIN_COLUMNS = ("grain", "area_px", "equivalent_diameter_px", "n_neighbours", "touches_border")
GRAIN_COLUMNS_UM = ("area_um2", "equivalent_diameter_um")  # with a pixel size
AREA_BINS = np.linspace(0.0, 5.0, 41)  # bins of area / mean area for the normalised histogram
MIN_AREA_PX = 3


def label_grains_min_area(boundary: np.ndarray, min_area_px: int = MIN_AREA_PX) -> np.ndarray:
    """:func:`grainforge.grains.label_grains` of a bool boundary map with the grains below
    ``min_area_px`` pixels set to 0 (boundary); the other grains keep their numbers."""
    return drop_small_grains(label_grains(boundary), min_area_px)


def drop_small_grains(labels: np.ndarray, min_area_px: int = MIN_AREA_PX) -> np.ndarray:
    """int32 copy of a label map (0 = boundary) with the grains below ``min_area_px`` pixels set to 0;
    the other grains keep their numbers."""
    small = grain_areas(labels) < min_area_px
    small[0] = True
    return np.where(small[labels], 0, labels).astype(np.int32)


def grain_areas(labels: np.ndarray) -> np.ndarray:
    """Pixel count per label (int64, length n+1; index 0 = boundary pixels)."""
    labels = np.asarray(labels)
    return np.bincount(labels.ravel(), minlength=int(labels.max(initial=0)) + 1)


def interior_areas(labels: np.ndarray) -> np.ndarray:
    """Areas (pixels) of the grains of a label map that do not touch the image border (labels
    without pixels are skipped)."""
    areas = grain_areas(labels)
    keep = ~touches_border(labels) & (areas > 0)
    keep[0] = False
    return areas[keep]


def neighbour_pairs(labels: np.ndarray, min_contact: int = 2) -> np.ndarray:
    """Pairs (a, b), a < b, of neighbouring grains of a label map (0 = boundary): int64 (m, 2), sorted.

    Every boundary pixel votes once for each pair of distinct grains in its 3 x 3 neighbourhood;
    a pair is kept when it has at least ``min_contact`` votes.
    """
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    n = int(labels.max(initial=0))
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    keys, votes = np.unique(_pair_votes(labels, n), return_counts=True)
    keys = keys[votes >= min_contact]
    return np.stack([keys // (n + 1), keys % (n + 1)], axis=1)


@numba.njit(cache=True)
def _grains_around(labels, row, col, found):  # pragma: no cover - compiled
    """The distinct grains (labels > 0) of the 3 x 3 neighbourhood of (row, col), ascending in ``found``; returns
    how many."""
    height, width = labels.shape
    count = 0
    for r in range(max(row - 1, 0), min(row + 2, height)):
        for c in range(max(col - 1, 0), min(col + 2, width)):
            label = labels[r, c]
            if label <= 0:
                continue
            position = count
            while position > 0 and found[position - 1] > label:
                position -= 1
            if position > 0 and found[position - 1] == label:
                continue
            found[position + 1:count + 1] = found[position:count].copy()
            found[position] = label
            count += 1
    return count


@numba.njit(cache=True, nogil=True)
def _pair_votes(labels, n):  # pragma: no cover - compiled
    """int64 keys a * (n + 1) + b, one per boundary pixel (label 0) and pair a < b of grains around it."""
    height, width = labels.shape
    found = np.empty(9, dtype=np.int64)
    total = 0
    for row in range(height):
        for col in range(width):
            if labels[row, col] == 0:
                count = _grains_around(labels, row, col, found)
                total += count * (count - 1) // 2
    keys = np.empty(total, dtype=np.int64)
    total = 0
    for row in range(height):
        for col in range(width):
            if labels[row, col] == 0:
                count = _grains_around(labels, row, col, found)
                for i in range(count):
                    for j in range(i + 1, count):
                        keys[total] = found[i] * (n + 1) + found[j]
                        total += 1
    return keys


def neighbour_counts(labels: np.ndarray, min_contact: int = 2) -> np.ndarray:
    """Number of neighbouring grains per label (int64, length n+1; index 0 unused)."""
    pairs = neighbour_pairs(labels, min_contact)
    return np.bincount(pairs.ravel(), minlength=int(np.max(labels, initial=0)) + 1)


_PERIMETER_CODES = np.array([5, 7, 13, 15, 17, 21, 23, 25, 27, 33])
_PERIMETER_WEIGHTS = np.zeros(50)  # skimage.measure.perimeter's weights of the codes 1 + 2 x edge + 10 x corner neighbours
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2


def grain_perimeters(labels: np.ndarray) -> np.ndarray:
    """Perimeter (px) per label of a label map (0 = boundary): float64, length n+1 (index 0 unused).

    Equal to ``skimage.measure.regionprops(labels)[i].perimeter`` (``skimage.measure.perimeter`` of each grain,
    4-neighbourhood: its pixels with a 4-neighbour outside the grain, weighted by how their neighbours of the same
    kind lie), from one pass over the image instead of one erosion and convolution per grain.
    """
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    code_counts = _perimeter_code_counts(labels, int(labels.max(initial=0)), _PERIMETER_CODES)
    perimeters = np.zeros(code_counts.shape[0])
    histogram = np.zeros(_PERIMETER_WEIGHTS.size, dtype=np.int64)
    for label in range(1, code_counts.shape[0]):  # skimage's dot of a 50-bin histogram: the same float sums
        histogram[_PERIMETER_CODES] = code_counts[label]
        perimeters[label] = histogram @ _PERIMETER_WEIGHTS
    return perimeters


@numba.njit(cache=True, nogil=True)
def _perimeter_code_counts(labels, n, codes):  # pragma: no cover - compiled
    """int64 (n + 1, len(codes)): per label, how many of its edge pixels have each of the perimeter ``codes``.

    Edge pixel: a 4-neighbour is outside the image or of another label. Its code is 1 + 2 x (4-neighbours that
    are edge pixels of the same label) + 10 x (diagonal neighbours that are), as skimage's convolution."""
    height, width = labels.shape
    edge = np.zeros((height, width), dtype=np.bool_)
    for row in range(height):
        for col in range(width):
            label = labels[row, col]
            edge[row, col] = label > 0 and (row == 0 or col == 0 or row == height - 1 or col == width - 1
                                            or labels[row - 1, col] != label or labels[row + 1, col] != label
                                            or labels[row, col - 1] != label or labels[row, col + 1] != label)
    column_of_code = np.full(50, -1, dtype=np.int64)
    for k in range(codes.size):
        column_of_code[codes[k]] = k
    counts = np.zeros((n + 1, codes.size), dtype=np.int64)
    for row in range(height):
        for col in range(width):
            if not edge[row, col]:
                continue
            label = labels[row, col]
            code = 1
            for r in range(max(row - 1, 0), min(row + 2, height)):
                for c in range(max(col - 1, 0), min(col + 2, width)):
                    if (r != row or c != col) and edge[r, c] and labels[r, c] == label:
                        code += 2 if r == row or c == col else 10
            if column_of_code[code] >= 0:
                counts[label, column_of_code[code]] += 1
    return counts


def grain_table(boundary: np.ndarray, min_contact: int = 2, min_area_px: int = 1, um_per_px: float | None = None) -> list[dict]:
    """One row per grain of a bool boundary map (H, W), in the label order of
    :func:`grainforge.grains.label_grains`: grain (its label), area_px, equivalent_diameter_px
    (diameter of the circle of the same area), n_neighbours, touches_border, and with a pixel size
    ``um_per_px`` (micrometres) area_um2 and equivalent_diameter_um. Grains below
    ``min_area_px`` get no row and count as boundary (default: every grain has a row)."""
    return label_table(label_grains_min_area(boundary, min_area_px), min_contact, um_per_px)


def label_table(labels: np.ndarray, min_contact: int = 2, um_per_px: float | None = None) -> list[dict]:
    """The rows of :func:`grain_table` of a grain label map (H, W), 0 = boundary: one per label that has pixels."""
    areas = grain_areas(labels)
    edges = neighbour_counts(labels, min_contact)
    border = touches_border(labels)
    diameters = np.sqrt(4.0 * areas / np.pi)
    rows = [
        {
            "grain": int(lab),
            "area_px": int(areas[lab]),
            "equivalent_diameter_px": float(diameters[lab]),
            "n_neighbours": int(edges[lab]),
            "touches_border": bool(border[lab]),
        }
        for lab in np.flatnonzero(areas[1:]) + 1
    ]
    if um_per_px is not None:
        for row in rows:
            row.update(area_um2=row["area_px"] * um_per_px**2, equivalent_diameter_um=row["equivalent_diameter_px"] * um_per_px)
    return rows


def folder_grain_tables(labels_dir: str | os.PathLike, boundary_value="auto", threshold: int = 127,
                        thin: bool = False, min_contact: int = 2, min_area_px: int = MIN_AREA_PX,
                        progress: bool = False, um_per_px: float | None = None) -> list[dict]:
    """Grain rows (see :func:`grain_table`) of every label image in a folder, each with ``image`` = stem."""
    boundaries = load_boundaries(labels_dir, boundary_value, threshold, thin)
    rows: list[dict] = []
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task(f"grains of {Path(labels_dir).name}", total=len(boundaries))
        for stem, boundary in boundaries:
            rows.extend({"image": stem, **row} for row in grain_table(boundary, min_contact, min_area_px, um_per_px))
            bar.update(task, advance=1)
    return rows


def interior(rows: Sequence[Mapping]) -> list[Mapping]:
    """The rows of grains that do not touch the image border."""
    return [row for row in rows if not _as_bool(row["touches_border"])]


def _as_bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1")


def mean_grain_area(labels_dir: str | os.PathLike, boundary_value="auto", threshold: int = 127,
                    thin: bool = False) -> float:
    """Mean area (pixels) of the interior grains over all label images of a folder."""
    areas = [interior_areas(label_grains_min_area(boundary))
             for _, boundary in load_boundaries(labels_dir, boundary_value, threshold, thin)]
    pooled = np.concatenate(areas)
    if pooled.size == 0:
        raise UserError(f"{labels_dir}: no grain lies inside an image (all touch the border); check boundary_value")
    return float(pooled.mean())


def summarize(rows: Sequence[Mapping], um_per_px: float | None = None) -> dict:
    """Summary of the interior grains of grain rows: counts, area (pixels) mean/median/std,
    equivalent diameter mean, edges mean, and the log-normal fit (mu, sigma of ln(area / mean));
    with a pixel size ``um_per_px`` the areas in µm² and the diameter in µm too."""
    inner = interior(rows)
    areas = np.array([float(r["area_px"]) for r in inner])
    areas = areas[areas > 0]
    edges = np.array([int(r["n_neighbours"]) for r in inner])
    summary = {
        "n_images": len({r["image"] for r in rows}) if rows and "image" in rows[0] else 1,
        "n_grains": len(rows),
        "n_interior_grains": int(areas.size),
    }
    if areas.size == 0:
        return summary
    mu, sigma = lognormal_fit(areas / areas.mean())
    if um_per_px is not None:
        summary.update(um_per_px=um_per_px, mean_area_um2=float(areas.mean()) * um_per_px**2,
                       median_area_um2=float(np.median(areas)) * um_per_px**2, std_area_um2=float(areas.std()) * um_per_px**2,
                       mean_equivalent_diameter_um=float(np.mean(np.sqrt(4.0 * areas / np.pi))) * um_per_px)
    return {
        **summary,
        "mean_area_px": float(areas.mean()),
        "median_area_px": float(np.median(areas)),
        "std_area_px": float(areas.std()),
        "mean_equivalent_diameter_px": float(np.mean(np.sqrt(4.0 * areas / np.pi))),
        "mean_edges": float(edges.mean()),
        "lognormal_mu": mu,
        "lognormal_sigma": sigma,
    }


def lognormal_fit(values: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood log-normal fit of positive values: (mu, sigma) of ln(values)."""
    logs = np.log(np.asarray(values, dtype=np.float64))
    return float(logs.mean()), float(logs.std())


def lognormal_pdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Log-normal probability density at x > 0."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-((np.log(x) - mu) ** 2) / (2 * sigma**2)) / (x * sigma * math.sqrt(2 * math.pi))


def area_distribution(rows: Sequence[Mapping], bins: np.ndarray = AREA_BINS) -> np.ndarray:
    """Probability density of area / mean area of the interior grains over ``bins`` (len(bins)-1)."""
    areas = np.array([float(r["area_px"]) for r in interior(rows)])
    if areas.size == 0:
        return np.zeros(len(bins) - 1)
    density, _ = np.histogram(areas / areas.mean(), bins=bins, density=True)
    return density


def edge_distribution(rows: Sequence[Mapping], max_edges: int) -> np.ndarray:
    """Fraction of interior grains with 0..max_edges neighbours (length max_edges+1)."""
    edges = np.array([int(r["n_neighbours"]) for r in interior(rows)], dtype=np.int64)
    counts = np.bincount(np.minimum(edges, max_edges), minlength=max_edges + 1)
    return counts / max(edges.size, 1)


def plot_grain_distributions(datasets: Mapping[str, Sequence[Mapping]], path: str | os.PathLike) -> None:
    """Paper Fig. 5 as a PNG: area / mean histogram with log-normal fits, and the edge-number
    histogram, every data set (name -> grain rows) side by side on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_area, ax_edges) = plt.subplots(1, 2, figsize=(11, 4))
    centres = 0.5 * (AREA_BINS[1:] + AREA_BINS[:-1])
    width = 0.8 / max(len(datasets), 1)
    max_edges = _max_edges(datasets)
    fine = np.linspace(0.01, AREA_BINS[-1], 300)
    for k, (name, rows) in enumerate(datasets.items()):
        summary = summarize(rows)
        colour = f"C{k}"
        ax_area.step(centres, area_distribution(rows), where="mid", color=colour,
                     label=f"{name} (n={summary['n_interior_grains']})")
        if summary["n_interior_grains"] > 1:
            ax_area.plot(fine, lognormal_pdf(fine, summary["lognormal_mu"], summary["lognormal_sigma"]),
                         color=colour, linestyle="--", label=f"{name} log-normal σ={summary['lognormal_sigma']:.2f}")
            ax_edges.bar(np.arange(max_edges + 1) + (k - (len(datasets) - 1) / 2) * width,
                         edge_distribution(rows, max_edges), width=width, color=colour,
                         label=f"{name} (mean {summary['mean_edges']:.2f})")
    ax_area.set(xlabel="grain area / mean area", ylabel="probability density", title="Grain area (interior grains)")
    ax_edges.set(xlabel="number of edges (neighbouring grains)", ylabel="fraction of grains", title="Edges per grain")
    ax_area.legend(fontsize=8)
    ax_edges.legend(fontsize=8)
    save_figure(fig, path)


def _max_edges(datasets: Mapping[str, Sequence[Mapping]]) -> int:
    return max([int(r["n_neighbours"]) for rows in datasets.values() for r in interior(rows)] or [0])


def write_grain_report(datasets: Mapping[str, Sequence[Mapping]], out: str | os.PathLike,
                       um_per_px: float | None = None) -> dict[str, dict]:
    """Write grains.csv (every grain, with a ``dataset`` column), summary.csv/.json, the area and
    edge distributions as CSV, and grain_distributions.png into ``out``; with a pixel size
    ``um_per_px`` the grain and summary tables carry µm columns too. Returns name -> summary."""
    out = Path(out)
    columns = ("dataset", "image", *GRAIN_COLUMNS, *(GRAIN_COLUMNS_UM if um_per_px is not None else ()))
    write_csv(out / "grains.csv", ({"dataset": name, **row} for name, rows in datasets.items() for row in rows), columns)
    summaries = {name: summarize(rows, um_per_px) for name, rows in datasets.items()}
    write_csv(out / "summary.csv", ({"dataset": name, **s} for name, s in summaries.items()),
              ["dataset", *max(summaries.values(), key=len)])
    write_json(out / "summary.json", summaries)
    area_rows = [{"bin_lo": lo, "bin_hi": hi} for lo, hi in zip(AREA_BINS[:-1], AREA_BINS[1:])]
    max_edges = _max_edges(datasets)
    edge_rows = [{"n_edges": k} for k in range(max_edges + 1)]
    for name, rows in datasets.items():
        for row, value in zip(area_rows, area_distribution(rows)):
            row[f"{name}_density"] = float(value)
        for row, value in zip(edge_rows, edge_distribution(rows, max_edges)):
            row[f"{name}_fraction"] = float(value)
    write_csv(out / "area_distribution.csv", area_rows)
    write_csv(out / "edge_distribution.csv", edge_rows)
    plot_grain_distributions(datasets, out / "grain_distributions.png")
    return summaries


def growth_exponent(log_rows: Sequence[Mapping]) -> float:
    """Grain-growth exponent n from a simulation log (rows with ``mcs`` and ``mean_grain_volume``):
    mean volume ∝ t^(3n), least-squares slope of ln V vs ln t over the late half (t >= t_max / 2), / 3."""
    t, volume = _growth_series(log_rows)
    late = t >= t.max() / 2
    if late.sum() < 2:
        raise UserError("log: fewer than 2 logged steps in the late half of the run; log more often (log_every)")
    slope = np.polyfit(np.log(t[late]), np.log(volume[late]), 1)[0]
    return float(slope / 3.0)


def _growth_series(log_rows: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray]:
    try:
        t = np.array([float(r["mcs"]) for r in log_rows])
        volume = np.array([float(r["mean_grain_volume"]) for r in log_rows])
    except KeyError as err:
        raise UserError(f"log: missing column {err}; expected mcs and mean_grain_volume") from err
    keep = (t > 0) & (volume > 0)
    if keep.sum() < 2:
        raise UserError("log: fewer than 2 rows with mcs > 0; run the simulation longer")
    return t[keep], volume[keep]


def plot_growth(log_rows: Sequence[Mapping], path: str | os.PathLike) -> float:
    """Log-log plot of mean grain volume (voxels) vs MCS with the late-half fit; returns n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, volume = _growth_series(log_rows)
    n = growth_exponent(log_rows)
    late = t >= t.max() / 2
    intercept = np.mean(np.log(volume[late]) - 3 * n * np.log(t[late]))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(t, volume, "o", markersize=3, label="simulation")
    ax.loglog(t[late], np.exp(intercept) * t[late] ** (3 * n), "-", label=f"fit (late half): V ∝ t^(3n), n = {n:.3f}")
    ax.set(xlabel="Monte Carlo steps", ylabel="mean grain volume (voxels)", title="Grain growth")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return n


def read_log(source: str | os.PathLike) -> list[dict]:
    """Rows of a simulation ``log.csv`` (a file or the run folder holding it)."""
    path = Path(source)
    path = path / "log.csv" if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"{source}: no log.csv found; pass a simulation run folder or its log.csv")
    rows = read_csv(path)
    if not rows:
        raise UserError(f"{path}: the log has no rows; run the simulation for at least 2 logged steps")
    return rows


def write_growth_report(source: str | os.PathLike, out: str | os.PathLike) -> float:
    """growth.png (log-log mean grain volume vs MCS with the late-half fit) and growth.json from a
    simulation log (file or run folder); returns the growth exponent n."""
    rows = read_log(source)
    try:
        n = plot_growth(rows, Path(out) / "growth.png")
    except UserError as err:
        raise UserError(f"{source}: {err}") from err
    write_json(Path(out) / "growth.json", {"growth_exponent": n, "fit": "late half, t >= t_max / 2", "log": str(source)})
    return n


def dataset_name(folder: Path, taken: Mapping[str, object]) -> str:
    """A short name for a label folder: its own name, or its parent's when it is called ``labels``;
    made unique against ``taken``."""
    name = folder.resolve().parent.name if folder.name == "labels" else folder.name
    return name if name not in taken else f"{name}_{len(taken) + 1}"


def stats_run(out: str | os.PathLike, label_folders: Sequence[str | os.PathLike] = (), log: str | os.PathLike | None = None,
              boundary_value="auto", threshold: float = 127, thin: bool = False, min_area_px: int = MIN_AREA_PX,
              progress: bool = True, um_per_px: float | None = None) -> dict:
    """The ``grainforge stats`` job: grain report of each label folder (a folder of label images or
    one holding ``labels/``), side by side, and/or the growth report of a simulation log; writes
    run.json. ``um_per_px`` (micrometres per pixel, for every folder) adds µm columns. Returns
    {"datasets": name -> summary, "growth_exponent": n or None}."""
    if not label_folders and log is None:
        raise UserError("label_folders and log: both empty; give label folders and/or a simulation log.csv")
    if min_area_px < 1:
        raise UserError(f"min_area_px {min_area_px}: must be >= 1 pixel (1 keeps every grain)")
    um_per_px = check_pixel_size(um_per_px, "um_per_px")
    out = ensure_writable_dir(out)
    record = RunRecord(out, command="stats", seed=None, config={
        "label_folders": [str(f) for f in label_folders], "log": None if log is None else str(log),
        "boundary_value": str(boundary_value), "threshold": threshold, "thin": thin, "min_area_px": min_area_px,
        "um_per_px": um_per_px})
    datasets: dict[str, list[dict]] = {}
    with record.phase("grains"):
        for folder in map(Path, label_folders):
            folder = folder / "labels" if (folder / "labels").is_dir() else folder
            datasets[dataset_name(folder, datasets)] = folder_grain_tables(folder, boundary_value, threshold, thin,
                                                                         min_area_px=min_area_px, progress=progress,
                                                                         um_per_px=um_per_px)
        summaries = write_grain_report(datasets, out, um_per_px) if datasets else {}
    exponent = write_growth_report(log, out) if log is not None else None
    record.write(summaries=summaries, growth_exponent=exponent)
    return {"datasets": summaries, "growth_exponent": exponent}
