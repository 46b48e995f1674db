"""ASTM E112 grain size (docs/design.md §3.6): the formulas against the standard's tables, the
planimetric 1/4 corner rule, the sample statistics, intercepts on patterns with known answers
(square grid, bricks, a continuous Voronoi reference), the grain-size error and the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import Voronoi, cKDTree

from conftest import assert_user_error, run_cli
from grainforge.data.io import read_csv, write_boundary_png, write_tiff
from grainforge.grains import boundary_from_ids, label_grains
from grainforge.grainsize import (ProbeCurve, astm_g_from_grains_per_mm2, astm_g_from_mean_intercept, count_intersections,
                                  field_grain_size, grain_size_error, line_grid, planimetric_count, sample_statistics,
                                  three_circles)

# ASTM E112-13 Table 4 (uniform, randomly oriented, equiaxed grains): G, N_A (grains/mm² at 1x), ℓ̄ (mm)
E112_TABLE_4 = [(0, 7.75, 0.3200), (1, 15.50, 0.2263), (2, 31.00, 0.1600), (3, 62.00, 0.1131), (4, 124.0, 0.0800),
                (5, 248.0, 0.0566), (6, 496.0, 0.0400), (7, 992.0, 0.0283), (8, 1984.0, 0.0200), (9, 3968.0, 0.0141),
                (10, 7936.0, 0.0100)]


def offset_grid(period: int, size: int) -> np.ndarray:
    """Label map of square grains ``period`` px wide whose boundaries lie half a grain from the field
    edges: the field holds exactly (size / period)² grains' worth of area."""
    rows, cols = (np.indices((size, size)) + period // 2) // period
    return label_grains(boundary_from_ids(rows * 1000 + cols))


def brick_labels(height: int, width: int, size: int) -> np.ndarray:
    """Bricks ``width`` x ``height`` px, every other band shifted by half a brick, edges placed so that
    every test line of 0 and 90 degrees meets exactly size / width (rows) or size / height (columns) boundaries."""
    r, c = np.indices((size, size))
    band = (r + height // 2) // height
    col = (c + width // 4 + (band % 2) * (width // 2)) // width
    return label_grains(boundary_from_ids(band * 1000 + col))


def test_g_from_mean_intercept_and_from_grains_per_mm2_match_the_e112_table():
    for g, n_a, mean_intercept_mm in E112_TABLE_4:
        assert astm_g_from_grains_per_mm2(n_a) == pytest.approx(g, abs=0.01)
        assert astm_g_from_mean_intercept(mean_intercept_mm) == pytest.approx(g, abs=0.02)  # table rounds ℓ̄ to 3 digits
    assert math.isnan(astm_g_from_mean_intercept(0.0)) and math.isnan(astm_g_from_mean_intercept(math.inf))
    assert math.isnan(astm_g_from_grains_per_mm2(0.0))


def test_planimetric_count_weights_corner_grains_one_quarter():
    ids = np.indices((12, 12)) // 3  # 4 x 4 grains, no boundary pixels
    count = planimetric_count(ids[0] * 4 + ids[1] + 1)
    assert (count["n_inside"], count["n_edge"], count["n_corner"]) == (4, 8, 4)
    assert count["n_weighted"] == 4 + 8 / 2 + 4 / 4  # the old 1/2-for-every-edge-grain rule gave 10
    assert planimetric_count(np.ones((5, 7), dtype=int))["n_weighted"] == 1.0  # one grain holding all four corners
    halves = np.ones((6, 6), dtype=int)
    halves[:, 3:] = 2
    assert planimetric_count(halves)["n_weighted"] == 1.0  # two grains, two corners each
    # field edges through the middle of the grains: the weights add up to the area in grains exactly
    for period, size in ((16, 128), (20, 160)):
        assert planimetric_count(offset_grid(period, size))["n_weighted"] == (size / period) ** 2
    result = field_grain_size(offset_grid(16, 128), um_per_px=2.0, angles_deg=(0,))
    assert result.grains_per_mm2 == pytest.approx(64 / (256e-3) ** 2)


def test_sample_statistics_95_ci_and_relative_accuracy_on_a_fixed_sample():
    stats = sample_statistics([10.0, 12.0, 11.0, 9.0, 13.0, float("nan")])
    t_5_fields = 2.776  # E112 Table 7 (Student's t, 95 %, n = 5 fields)
    assert stats["n"] == 5 and stats["mean"] == 11.0 and stats["std"] == pytest.approx(math.sqrt(2.5))
    assert stats["ci95"] == pytest.approx(t_5_fields * math.sqrt(2.5) / math.sqrt(5), rel=1e-3)
    assert stats["relative_accuracy_pct"] == pytest.approx(100 * stats["ci95"] / 11.0)
    assert stats["relative_accuracy_pct"] == pytest.approx(17.85, abs=0.01)
    assert (stats["ci95_low"], stats["ci95_high"]) == pytest.approx((11.0 - stats["ci95"], 11.0 + stats["ci95"]))
    assert math.isnan(sample_statistics([4.0])["ci95"])


def test_square_grid_intercepts_are_the_period_in_both_directions():
    result = field_grain_size(offset_grid(16, 128), um_per_px=0.5, angles_deg=(0, 90), line_spacing_px=16)
    assert result.directions[0.0].count == 7 * 8 and result.directions[90.0].count == 7 * 8  # 7 lines x 8 boundaries
    assert result.intercept_at(0) == result.intercept_at(90) == 8.0  # 16 px at 0.5 um/px
    assert result.mean_intercept == 8.0 and result.anisotropy == 1.0
    assert not any(result.directions[0.0].triple)
    assert astm_g_from_mean_intercept(result.mean_intercept * 1e-3) == pytest.approx(-6.643856 * math.log10(0.008) - 3.288)


def test_diagonal_line_counts_every_row_and_column_boundary_it_crosses():
    labels = offset_grid(16, 128)  # boundary rows and columns at 7 mod 16
    start, end = np.array([-0.5, 118.5]), np.array([118.5, -0.5])  # row + col = 118: never within 1 px of a junction
    t = np.linspace(0.0, 1.0, 2000)
    hits = count_intersections(labels, ProbeCurve(start + t[:, None] * (end - start), float(np.hypot(*(end - start)))))
    assert hits.count == 7 + 7 and not any(hits.triple)  # rows 7..103 and columns 7..103


def test_brick_pattern_intercepts_and_anisotropy_are_the_brick_sides():
    result = field_grain_size(brick_labels(12, 24, 240), angles_deg=(0, 90), line_spacing_px=24)
    assert result.intercept_at(0) == 24.0  # along the rows: one brick length between boundaries
    assert result.intercept_at(90) == 12.0  # across the bands: one brick height
    assert result.anisotropy == 2.0
    assert result.mean_intercept == pytest.approx(1 / np.mean([1 / 24, 1 / 12]))


def test_a_crossing_through_a_triple_junction_counts_one_and_a_half():
    ids = np.ones((40, 40), dtype=int)
    ids[:20, 20:] = 2
    ids[20:, 20:] = 3  # a T junction at (19, 19)
    labels = label_grains(boundary_from_ids(ids))

    def diagonal(offset: float) -> ProbeCurve:
        t = np.linspace(0.0, 1.0, 400)
        start, end = np.array([39.0 + offset, 0.0 + offset]), np.array([0.0 + offset, 39.0 + offset])
        return ProbeCurve(start + t[:, None] * (end - start), float(np.hypot(39.0, 39.0)))

    through = count_intersections(labels, diagonal(0.0))
    assert through.count == 1.5 and through.triple == [True]
    away = count_intersections(labels, diagonal(-10.0))  # crosses the vertical boundary far from the junction
    assert away.count == 1.0 and away.triple == [False]


def _continuous_crossings(tree: cKDTree, start: np.ndarray, end: np.ndarray) -> int:
    """Changes of the nearest seed along a segment, sampled every 0.01 px: the exact Voronoi geometry."""
    t = np.linspace(0.0, 1.0, int(np.hypot(*(end - start)) / 0.01) + 2)
    return int(np.count_nonzero(np.diff(tree.query(start + t[:, None] * (end - start))[1])))


def test_voronoi_intercepts_match_the_continuous_cells():
    rng = np.random.default_rng(1)
    size = 400
    seeds = rng.uniform(0, size - 1, (40, 2))
    tree = cKDTree(seeds)
    ids = tree.query(np.indices((size, size)).reshape(2, -1).T)[1].reshape(size, size)
    result = field_grain_size(label_grains(boundary_from_ids(ids)), angles_deg=(0, 45, 90, 135), line_spacing_px=40)
    pixel = sum(hits.count for hits in result.directions.values())
    exact = 0
    for angle in (0, 45, 90, 135):
        for curve in line_grid((size, size), angle, 40):
            inside = curve.points[np.all((curve.points >= 0) & (curve.points <= size - 1), axis=1)]
            exact += _continuous_crossings(tree, inside[0], inside[-1])
    assert pixel == pytest.approx(exact, rel=0.02)
    # every crossing scored as a triple point lies near a vertex of the Voronoi diagram
    vertices = cKDTree(Voronoi(seeds).vertices)
    triples = [p for hits in result.directions.values() for p, triple in zip(hits.points, hits.triple) if triple]
    assert triples and max(vertices.query(np.array(triples))[0]) < 4.0


def test_three_circle_pattern_has_e112_proportions_and_counts_two_crossings_per_stripe():
    circles = three_circles((200, 200))
    lengths = [c.length_px for c in circles]
    assert lengths[0] / lengths[2] == pytest.approx(3.0, rel=1e-3) and lengths[1] / lengths[2] == pytest.approx(2.0, rel=1e-3)
    assert lengths[0] / math.pi == pytest.approx(0.95 * 200)
    stripes = label_grains(boundary_from_ids(np.indices((200, 200))[1] // 10))  # boundary columns 9, 19, ..., 189
    result = field_grain_size(stripes, angles_deg=(0,))
    centre = 99.5
    expected = sum(2 * sum(abs(c - centre) < curve.length_px / (2 * math.pi) for c in range(9, 199, 10)) for curve in circles)
    assert result.circles.count == expected
    assert result.circle_mean_intercept == pytest.approx(sum(lengths) / expected)


def test_grain_size_error_of_a_segmentation_that_misses_every_other_boundary():
    truth = offset_grid(16, 256)
    rows, cols = (np.indices((256, 256)) + 8) // 16
    pred = label_grains(boundary_from_ids((rows // 2) * 1000 + cols // 2))
    error = grain_size_error(truth, pred, angles_deg=(0, 90))
    assert error["mean_intercept_rel_error"] == 1.0
    assert error["delta_G_intercept"] == pytest.approx(-6.643856 * math.log10(2))  # -2.00
    assert (error["n_grains_weighted_true"], error["n_grains_weighted_pred"]) == (256.0, 64.0)
    assert error["delta_G_planimetric"] == pytest.approx(3.321928 * math.log10(1 / 4))  # -2.00
    sized = grain_size_error(truth, pred, um_per_px=0.5, angles_deg=(0, 90))
    assert sized["delta_G_intercept"] == error["delta_G_intercept"]  # a pixel size cancels in ΔG
    assert sized["mean_intercept_true_um"] == 8.0 and sized["G_intercept_pred"] - sized["G_intercept_true"] == pytest.approx(-2.0, abs=1e-3)
    assert sized["G_planimetric_true"] == pytest.approx(astm_g_from_grains_per_mm2(256 / (128e-3) ** 2))
    assert grain_size_error(truth == 0, pred == 0, angles_deg=(0, 90)) == error  # bool boundary maps work alike


def test_grainsize_cli_writes_fields_and_sample_in_px_or_um(tmp_path: Path):
    pred = tmp_path / "pred"
    write_boundary_png(pred / "a.png", offset_grid(16, 128) == 0)
    write_boundary_png(pred / "b.png", brick_labels(16, 32, 128) == 0)
    result = run_cli("grainsize", pred, "--out", tmp_path / "px", "--angles", "0,90", "--line-spacing", "16")
    assert result.returncode == 0, result.stderr
    assert "grainforge: warning:" in result.stderr and "< 50" in result.stderr  # 64 grains' area but few per field
    fields = read_csv(tmp_path / "px" / "fields.csv")
    assert {"image", "n_grains", "mean_intercept_px", "G_intercept", "G_planimetric", "anisotropy"} <= set(fields[0])
    assert fields[0]["image"] == "a" and float(fields[0]["mean_intercept_px"]) == 16.0 and fields[0]["G_intercept"] == ""
    assert float(fields[0]["n_grains_weighted"]) == 64.0 and float(fields[1]["anisotropy"]) == 2.0
    sample = {row["quantity"]: row for row in read_csv(tmp_path / "px" / "sample.csv")}
    assert float(sample["mean_intercept_px"]["n_fields"]) == 2 and sample["mean_intercept_px"]["G_of_mean"] == ""
    assert "2 fields < 5" in sample["mean_intercept_px"]["warnings"]
    assert (tmp_path / "px" / "overlays" / "a.png").is_file() and (tmp_path / "px" / "run.json").is_file()

    # the pixel size from the TIFF resolution tags of the prediction files
    write_tiff(tmp_path / "tif" / "a.tif", (offset_grid(16, 128) == 0).astype(np.uint8) * 255, um_per_px=0.25)
    result = run_cli("grainsize", tmp_path / "tif", "--out", tmp_path / "um", "--angles", "0,90", "--line-spacing", "16")
    assert result.returncode == 0, result.stderr
    row = read_csv(tmp_path / "um" / "fields.csv")[0]
    assert float(row["um_per_px"]) == pytest.approx(0.25) and float(row["mean_intercept_um"]) == pytest.approx(4.0)
    assert float(row["G_intercept"]) == pytest.approx(astm_g_from_mean_intercept(0.004))
    assert float(row["G_planimetric"]) == pytest.approx(astm_g_from_grains_per_mm2(64 / (32e-3) ** 2))


def test_grainsize_cli_bad_inputs_are_one_line_errors(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli("grainsize", tmp_path / "empty", "--out", tmp_path / "o"), "empty", "holds no images")
    write_boundary_png(tmp_path / "pred" / "a.png", offset_grid(16, 64) == 0)
    assert_user_error(run_cli("grainsize", tmp_path / "pred", "--out", tmp_path / "o", "--um-per-px", "0"),
                      "--um-per-px 0.0: must be > 0")
    assert_user_error(run_cli("slice", tmp_path / "no-run", "--out", tmp_path / "o", "--match-mean-area", "75furlong2",
                              "--um-per-px", "0.5"), "--match-mean-area", "unknown length unit 'furlong'")


def test_evaluate_cli_reports_delta_g_next_to_map(tmp_path: Path):
    truth = offset_grid(16, 128)
    rows, cols = (np.indices((128, 128)) + 8) // 16
    write_boundary_png(tmp_path / "true" / "a.png", truth == 0)
    pred = label_grains(boundary_from_ids((rows // 2) * 1000 + cols // 2))
    write_boundary_png(tmp_path / "pred" / "a.png", pred == 0)
    result = run_cli("evaluate", tmp_path / "pred", tmp_path / "true", "--out", tmp_path / "m.csv", "--workers", "1",
                     "--um-per-px", "0.5")
    assert result.returncode == 0, result.stderr
    row = read_csv(tmp_path / "m.csv")[0]
    expected = grain_size_error(truth, pred, um_per_px=0.5)  # default angles 0, 45, 90, 135
    assert float(row["map"]) < 1.0 and float(row["delta_G_intercept"]) == pytest.approx(expected["delta_G_intercept"])
    assert float(row["delta_G_intercept"]) == pytest.approx(-2.0, abs=0.1)
    assert float(row["delta_G_planimetric"]) == pytest.approx(-2.0, abs=1e-3)  # 64 -> 16 grains
    assert float(row["G_intercept_true"]) == pytest.approx(expected["G_intercept_true"])
    assert f"ΔG intercept {expected['delta_G_intercept']:+.2f}" in result.stdout


def test_folder_errors_read_a_thick_truth_as_the_metrics_do(tmp_path: Path):
    from scipy.ndimage import binary_dilation

    from grainforge.grainsize import folder_grain_size_errors
    from grainforge.metrics import scoring_truth

    thin = offset_grid(16, 128) == 0
    thick = binary_dilation(thin, iterations=1)  # 3-px hand-traced lines
    # thinning keeps the line ends on the image edge: no gap there merges two edge grains (81 grains, not 50)
    np.testing.assert_array_equal(scoring_truth(thick), thin)
    write_boundary_png(tmp_path / "true" / "a.png", thick)
    write_boundary_png(tmp_path / "pred" / "a.png", thin)
    scored = folder_grain_size_errors(tmp_path / "pred", tmp_path / "true")[0]
    assert scored["image"] == "a" and scored["delta_G_intercept"] == 0.0 and scored["delta_G_planimetric"] == 0.0
    assert scored["n_grains_weighted_true"] == 64.0
    as_traced = folder_grain_size_errors(tmp_path / "pred", tmp_path / "true", truth_lines="as-is")[0]
    assert as_traced["delta_G_planimetric"] == 0.0  # the same grains, each 2 px narrower
    # test lines that run inside a 3-px band cross nothing, so the traced truth's intercept is longer
    assert as_traced["mean_intercept_true_px"] > scored["mean_intercept_true_px"]
    # grainforge grainsize reads hand-traced labels the same way (--lines auto)
    from grainforge.grainsize import grainsize_run

    with pytest.warns(UserWarning, match="fields < 5"):
        traced = grainsize_run(tmp_path / "true", tmp_path / "size", angles_deg=(0, 90))["fields"][0]
        drawn = grainsize_run(tmp_path / "true", tmp_path / "size-as-is", angles_deg=(0, 90), lines="as-is")["fields"][0]
    assert traced["mean_intercept_px"] == 16.0 and drawn["mean_intercept_px"] > 16.0  # 16 px: the period
