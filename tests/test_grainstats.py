"""Grain statistics: neighbour counts on tilings with known answers and against scipy's Voronoi,
areas and diameters, the growth exponent, the stats report and CLI."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import Voronoi, cKDTree

from conftest import assert_user_error, run_cli
from grainforge import grainstats
from grainforge.data.io import read_csv, write_csv, write_png
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids, label_grains, touches_border


def square_tiling(cell: int, n: int) -> np.ndarray:
    """Id map of n x n square cells of side ``cell`` pixels."""
    index = np.arange(cell * n) // cell
    return np.add.outer(index * n, index)


def brick_tiling(height: int, width: int, rows: int, cols: int) -> np.ndarray:
    """Id map of bricks, every other row shifted by half a brick: each interior brick has 6 neighbours."""
    row = np.arange(height * rows)[:, None] // height
    col = (np.arange(width * cols)[None, :] + (row % 2) * (width // 2)) // width
    return row * (cols + 1) + col


def voronoi_ids(points: np.ndarray, size: int) -> np.ndarray:
    """Id map (size x size) of the Voronoi cells of ``points`` (row, col), sampled at pixel centres."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    return cKDTree(points).query(np.stack([rows.ravel(), cols.ravel()], axis=1))[1].reshape(size, size)


def interior_rows(rows):
    return [r for r in rows if not r["touches_border"]]


def test_square_tiling_interior_grains_have_four_edges_and_exact_areas():
    cell = 10
    rows = grainstats.grain_table(boundary_from_ids(square_tiling(cell, 8)))
    inner = interior_rows(rows)
    assert len(rows) == 64 and len(inner) == 36
    # the right column and lower row of each cell are boundary; corner-only contacts are not edges
    assert {r["n_neighbours"] for r in inner} == {4}
    assert {r["area_px"] for r in inner} == {(cell - 1) ** 2}
    assert inner[0]["equivalent_diameter_px"] == pytest.approx(math.sqrt(4 * 81 / math.pi))


def test_brick_tiling_interior_grains_have_six_edges():
    rows = grainstats.grain_table(boundary_from_ids(brick_tiling(8, 12, 10, 8)))
    inner = interior_rows(rows)
    assert len(inner) > 20
    assert {r["n_neighbours"] for r in inner} == {6}


@pytest.mark.parametrize("seed", [1, 2])
def test_voronoi_neighbour_counts_match_scipy_ridges(seed):
    size = 400
    points = np.random.default_rng(seed).uniform(0, size, (400, 2))
    ids = voronoi_ids(points, size)
    labels = grainstats.label_grains_min_area(boundary_from_ids(ids))
    counts = grainstats.neighbour_counts(labels)
    seed_of_label = np.zeros(labels.max() + 1, dtype=np.int64)
    seed_of_label[labels] = ids
    vor = Voronoi(points)
    all_ridges, long_ridges = Counter(), Counter()
    for (p, q), (v, w) in zip(vor.ridge_points, vor.ridge_vertices):
        all_ridges.update((p, q))
        if v >= 0 and w >= 0 and np.linalg.norm(vor.vertices[v] - vor.vertices[w]) >= 3.0:
            long_ridges.update((p, q))
    inner = np.flatnonzero(~touches_border(labels) & (np.bincount(labels.ravel()) > 0))[1:]
    ours = counts[inner]
    every = np.array([all_ridges[seed_of_label[g]] for g in inner])
    long = np.array([long_ridges[seed_of_label[g]] for g in inner])
    assert len(inner) > 300
    assert np.mean(ours == every) > 0.8  # exact, ridge for ridge
    assert np.mean((ours >= long) & (ours <= every)) > 0.97  # misses only ridges shorter than 3 px
    assert abs(ours.mean() - 6.0) < 0.3  # Euler: a planar map with triple junctions has 6 edges per grain


def _pairs_by_windows(labels: np.ndarray, min_contact: int = 2) -> np.ndarray:
    """Reference for neighbour_pairs: the distinct grains of each boundary pixel's padded 3 x 3 window, voted in numpy."""
    rows, cols = np.nonzero(labels == 0)
    padded = np.pad(labels, 1).astype(np.int64)
    votes = Counter()
    for row, col in zip(rows, cols):
        grains = sorted(set(padded[row:row + 3, col:col + 3].ravel()) - {0})
        votes.update((a, b) for i, a in enumerate(grains) for b in grains[i + 1:])
    return np.array(sorted(pair for pair, count in votes.items() if count >= min_contact), dtype=np.int64).reshape(-1, 2)


def _label_maps() -> list[np.ndarray]:
    """Grain label maps with 1-pixel boundaries, four-grain junctions, fragments, grains on edges and corners and
    thick boundaries (noise), as label_grains makes them."""
    rng = np.random.default_rng(3)
    maps = [label_grains(boundary_from_ids(square_tiling(7, 5))), label_grains(boundary_from_ids(brick_tiling(6, 9, 5, 4)))]
    for size, n, noise in [(60, 40, 0.0), (90, 120, 0.05), (33, 300, 0.2)]:
        boundary = boundary_from_ids(voronoi_ids(rng.uniform(0, size, (n, 2)), size)) | (rng.random((size, size)) < noise)
        maps.append(label_grains(boundary))
    return maps


@pytest.mark.parametrize("min_contact", [1, 2, 3])
def test_neighbour_pairs_vote_per_boundary_pixel(min_contact):
    for labels in _label_maps():
        expected = _pairs_by_windows(labels, min_contact)
        np.testing.assert_array_equal(grainstats.neighbour_pairs(labels, min_contact), expected)
        assert len(expected) > 20


def test_grain_perimeters_equal_skimage_regionprops():
    from skimage.measure import regionprops

    values = set()
    for labels in _label_maps():
        expected = [region.perimeter for region in regionprops(labels)]
        perimeters = grainstats.grain_perimeters(labels)
        assert perimeters[0] == 0.0 and len(perimeters) == labels.max() + 1
        assert perimeters[1:].tolist() == expected  # bit for bit
        values.update(expected)
    assert len(values) > 100  # straight, diagonal and corner weights in many mixtures


def test_fragments_below_min_area_count_as_boundary():
    boundary = boundary_from_ids(square_tiling(10, 4))
    boundary[4, 4] = True
    boundary[3:6, 3:6] = True
    boundary[4, 4] = False  # a 1-pixel grain inside a boundary ring
    assert label_grains(boundary).max() == 17
    fragment = label_grains(boundary)[4, 4]
    labels = grainstats.label_grains_min_area(boundary)
    assert labels[4, 4] == 0 and np.array_equal(labels[labels > 0], label_grains(boundary)[labels > 0])
    assert len(grainstats.grain_table(boundary)) == 17  # every grain of label_grains, fragment included
    rows = grainstats.grain_table(boundary, min_area_px=3)
    assert len(rows) == 16 and fragment not in {r["grain"] for r in rows}
    assert [r["grain"] for r in rows] == sorted(r["grain"] for r in rows)


def test_growth_exponent_recovers_a_power_law_over_the_late_half():
    t = np.arange(1, 201)
    volume = 5.0 * t ** (3 * 0.42)
    volume[t < 100] = 2.0 * t[t < 100] ** 2.0  # an early transient that must not enter the fit
    rows = [{"mcs": str(a), "mean_grain_volume": str(b)} for a, b in zip(t, volume)]
    assert grainstats.growth_exponent(rows) == pytest.approx(0.42, abs=1e-9)
    with pytest.raises(UserError, match="mean_grain_volume"):
        grainstats.growth_exponent([{"mcs": 1}])


def test_lognormal_fit_and_area_distribution_normalisation():
    rng = np.random.default_rng(0)
    sample = rng.lognormal(mean=0.3, sigma=0.5, size=20000)
    mu, sigma = grainstats.lognormal_fit(sample)
    assert mu == pytest.approx(0.3, abs=0.02) and sigma == pytest.approx(0.5, abs=0.02)
    x = np.linspace(1e-3, 40, 200001)
    assert np.trapezoid(grainstats.lognormal_pdf(x, 0.0, 0.5), x) == pytest.approx(1.0, abs=1e-3)
    rows = [{"area_px": a, "n_neighbours": 6, "touches_border": False} for a in sample]
    density = grainstats.area_distribution(rows)
    assert np.sum(density * np.diff(grainstats.AREA_BINS)) == pytest.approx(1.0, abs=0.01)  # few areas > 5x mean


def write_label_folder(folder: Path, ids_maps, boundary_value: int = 255) -> None:
    for k, ids in enumerate(ids_maps):
        boundary = boundary_from_ids(ids)
        image = boundary if boundary_value == 255 else ~boundary
        write_png(folder / f"img{k:02d}.png", image.astype(np.uint8) * 255)


def test_folder_stats_and_mean_area(tmp_path: Path):
    write_label_folder(tmp_path / "squares", [square_tiling(10, 6), square_tiling(10, 5)], boundary_value=0)
    rows = grainstats.folder_grain_tables(tmp_path / "squares", boundary_value=0)
    assert {r["image"] for r in rows} == {"img00", "img01"} and len(rows) == 36 + 25
    assert grainstats.mean_grain_area(tmp_path / "squares", boundary_value="auto") == 81.0
    summary = grainstats.summarize(rows)
    assert summary["n_interior_grains"] == 16 + 9 and summary["mean_edges"] == 4.0
    assert summary["lognormal_sigma"] == 0.0


def test_stats_cli_compare_and_log(tmp_path: Path):
    write_label_folder(tmp_path / "squares" / "labels", [square_tiling(12, 6)])
    write_label_folder(tmp_path / "bricks", [brick_tiling(8, 12, 10, 8)])
    t = np.arange(0, 41)
    write_csv(tmp_path / "run" / "log.csv", [{"mcs": a, "n_grains": 1, "mean_grain_volume": 3.0 * max(a, 1) ** 1.5,
                                              "energy": 0, "wall_time_s": 0} for a in t])
    out = tmp_path / "stats"
    result = run_cli("stats", tmp_path / "squares", "--compare", tmp_path / "bricks", "--log", tmp_path / "run",
                     "--out", out, "--boundary-value", "255")
    assert result.returncode == 0, result.stderr
    for name in ("grains.csv", "summary.csv", "area_distribution.csv", "edge_distribution.csv",
                 "grain_distributions.png", "growth.png", "run.json"):
        assert (out / name).is_file(), name
    summaries = json.loads((out / "summary.json").read_text())
    assert summaries["squares"]["mean_edges"] == 4.0 and summaries["bricks"]["mean_edges"] == 6.0
    assert json.loads((out / "growth.json").read_text())["growth_exponent"] == pytest.approx(0.5)
    edges = read_csv(out / "edge_distribution.csv")
    assert float(edges[4]["squares_fraction"]) == 1.0 and float(edges[6]["bricks_fraction"]) == 1.0
    assert {r["dataset"] for r in read_csv(out / "grains.csv")} == {"squares", "bricks"}


def test_stats_cli_bad_inputs(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli("stats", tmp_path / "empty", "--out", tmp_path / "o"), "empty")
    assert_user_error(run_cli("stats", "--out", tmp_path / "o"), "LABELS_DIR")
    assert_user_error(run_cli("stats", "--log", tmp_path / "nowhere", "--out", tmp_path / "o"), "log.csv")
    write_label_folder(tmp_path / "labels", [square_tiling(10, 3)])
    assert_user_error(run_cli("stats", tmp_path / "labels", "--boundary-value", "7", "--out", tmp_path / "o"),
                      "boundary_value '7': must be 0, 255 or auto")
