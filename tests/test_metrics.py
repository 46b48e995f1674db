"""Metrics of docs/design.md §4 against scikit-learn / scikit-image and slow, obviously-correct references."""

from __future__ import annotations

import csv
import math
import shutil
from fractions import Fraction

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label as skimage_label
from skimage.metrics import variation_of_information as skimage_vi
from skimage.segmentation import expand_labels
from sklearn.metrics import adjusted_rand_score

from conftest import assert_user_error, run_cli
from grainforge.data.io import write_png
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids, label_grains
from grainforge.metrics import (
    METRIC_COLUMNS,
    adjusted_rand,
    average_precision,
    boundary_prf,
    contingency,
    evaluate_arrays,
    evaluate_boundaries,
    evaluate_folders,
    evaluate_labels,
    summarize,
    variation_of_information,
    within_distance,
)


# ------------------------------------------------------------------ helpers


def voronoi_boundary(shape, n_seeds, rng, jitter=None):
    """1-pixel boundary map of a random Voronoi tessellation (optionally with moved seeds)."""
    seeds = rng.uniform(0, 1, size=(n_seeds, 2)) * shape
    if jitter is not None:
        seeds = seeds + rng.normal(0, jitter, size=seeds.shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dist = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    return boundary_from_ids(dist.argmin(axis=-1))


def reference_ap(true_labels, pred_labels):
    """Slow DSB-2018 AP: explicit IoU of every (true, pred) grain pair, exact fractions, label 0 = no grain."""
    true_ids = [i for i in np.unique(true_labels) if i != 0]
    pred_ids = [j for j in np.unique(pred_labels) if j != 0]
    if not true_ids and not pred_ids:
        return 1.0
    iou = {}
    for i in true_ids:
        for j in pred_ids:
            inter = int(np.sum((true_labels == i) & (pred_labels == j)))
            union = int(np.sum((true_labels == i) | (pred_labels == j)))
            iou[i, j] = Fraction(inter, union)
    precisions = []
    for k in range(10, 20):
        threshold = Fraction(k, 20)
        matches = [pair for pair, value in iou.items() if value > threshold]
        assert len({i for i, _ in matches}) == len(matches) == len({j for _, j in matches})  # one-to-one
        tp = len(matches)
        fp, fn = len(pred_ids) - tp, len(true_ids) - tp
        precisions.append(Fraction(tp, tp + fp + fn))
    return float(sum(precisions) / len(precisions))


def four_quadrants():
    """11 x 11 boundary map: lines at row 5 and column 5 -> four 5 x 5 grains of 25 px each."""
    boundary = np.zeros((11, 11), dtype=bool)
    boundary[5, :] = True
    boundary[:, 5] = True
    return boundary


# ------------------------------------------------------------------ ARI


@pytest.mark.parametrize("shape, n_labels, seed", [((37, 41), 5, 0), ((64, 64), 40, 1), ((200, 150), 5000, 2), ((1, 9), 3, 3)])
def test_ari_equals_sklearn_with_boundary_as_label_zero(shape, n_labels, seed):
    rng = np.random.default_rng(seed)
    true_labels = rng.integers(0, n_labels, size=shape)
    pred_labels = np.where(rng.random(shape) < 0.7, true_labels, rng.integers(0, n_labels, size=shape))
    assert (true_labels == 0).any() and (pred_labels == 0).any()
    expected = adjusted_rand_score(true_labels.ravel(), pred_labels.ravel())
    assert abs(adjusted_rand(true_labels, pred_labels) - expected) < 1e-12


def test_ari_equals_sklearn_on_grain_maps_with_boundaries():
    rng = np.random.default_rng(4)
    true_labels = label_grains(voronoi_boundary((96, 80), 30, rng))
    pred_labels = label_grains(voronoi_boundary((96, 80), 30, rng))
    expected = adjusted_rand_score(true_labels.ravel(), pred_labels.ravel())
    assert abs(adjusted_rand(true_labels, pred_labels) - expected) < 1e-12


def test_grains_mode_gives_boundary_pixels_to_nearest_grain():
    rng = np.random.default_rng(5)
    boundary = voronoi_boundary((80, 80), 20, rng)
    thick = ndimage.binary_dilation(boundary)  # a correct but 3-pixel-thick prediction
    true_labels, pred_labels = label_grains(boundary), label_grains(thick)
    grains = adjusted_rand(true_labels, pred_labels, mode="grains")
    expected = adjusted_rand_score(expand_labels(true_labels, 1000).ravel(), expand_labels(pred_labels, 1000).ravel())
    assert abs(grains - expected) < 1e-12
    assert grains > 0.9 > adjusted_rand(true_labels, pred_labels, mode="paper")  # thick boundaries cost only in "paper"
    with pytest.raises(ValueError):
        adjusted_rand(true_labels, pred_labels, mode="pixels")


# ------------------------------------------------------------------ MAP


@pytest.mark.parametrize("seed", range(6))
def test_map_equals_slow_reference_on_random_grain_maps(seed):
    rng = np.random.default_rng(seed)
    true_boundary = voronoi_boundary((40, 44), 12, rng)
    pred_boundary = true_boundary ^ (rng.random(true_boundary.shape) < 0.04 * seed)  # noise: splits and merges
    true_labels, pred_labels = label_grains(true_boundary), label_grains(pred_boundary)
    assert average_precision(true_labels, pred_labels) == pytest.approx(reference_ap(true_labels, pred_labels), abs=1e-12)


def test_map_equals_slow_reference_on_moved_grains():
    rng = np.random.default_rng(11)
    for _ in range(4):
        state = rng.bit_generator.state
        true_labels = label_grains(voronoi_boundary((36, 36), 10, rng))
        rng.bit_generator.state = state  # same seeds, moved by ~1.5 px: IoUs spread over the thresholds
        pred_labels = label_grains(voronoi_boundary((36, 36), 10, rng, jitter=1.5))
        assert average_precision(true_labels, pred_labels) == pytest.approx(reference_ap(true_labels, pred_labels), abs=1e-12)


def test_perfect_prediction_scores_one():
    rng = np.random.default_rng(6)
    boundary = voronoi_boundary((60, 70), 15, rng)
    row = evaluate_boundaries(boundary, boundary)
    assert row["map"] == 1.0 and row["ari"] == 1.0 and row["boundary_f1"] == 1.0
    assert row["vi_split"] == 0.0 and row["vi_merge"] == 0.0
    assert all(type(row[name]) is float and math.copysign(1, row[name]) == 1 for name in METRIC_COLUMNS)  # CSV-clean
    assert row["n_true"] == row["n_pred"] == label_grains(boundary).max()


def test_one_merged_grain_costs_the_hand_computed_map():
    truth = four_quadrants()
    merged = truth.copy()
    merged[0:5, 5] = False  # the two upper grains become one of 25 + 25 + 5 = 55 px
    # IoU(merged, either upper grain) = 25/55 < 0.5 -> no match; the two lower grains match at every t.
    # TP = 2, FP = 3 - 2 = 1, FN = 4 - 2 = 2 -> precision = 2 / 5 at all ten thresholds.
    assert evaluate_boundaries(truth, truth)["map"] == 1.0
    assert evaluate_boundaries(truth, merged)["map"] == pytest.approx(2 / 5, abs=1e-15)
    assert reference_ap(label_grains(truth), label_grains(merged)) == pytest.approx(2 / 5, abs=1e-15)


def test_one_split_grain_costs_the_hand_computed_map():
    truth = four_quadrants()
    split = truth.copy()
    split[2, 0:5] = True  # upper-left grain -> two pieces of 2 x 5 = 10 px; IoU with the 25 px grain = 0.4
    # TP = 3, FP = 5 - 3 = 2, FN = 4 - 3 = 1 -> precision = 3 / 6 at all thresholds.
    assert evaluate_boundaries(truth, split)["map"] == pytest.approx(3 / 6, abs=1e-15)
    assert reference_ap(label_grains(truth), label_grains(split)) == pytest.approx(3 / 6, abs=1e-15)


def test_iou_exactly_on_a_threshold_does_not_match():
    truth = four_quadrants()
    shrunk = truth.copy()
    shrunk[4, 0:5] = True  # upper-left grain -> 4 x 5 = 20 px inside the true 25 px: IoU = 0.8 exactly
    # t = 0.50 ... 0.75 (6 thresholds): 4 matches of 4 -> precision 1;
    # t = 0.80 ... 0.95 (4 thresholds, IoU > t fails): TP 3, FP 1, FN 1 -> 3 / 5.
    assert evaluate_boundaries(truth, shrunk)["map"] == pytest.approx((6 * 1 + 4 * 3 / 5) / 10, abs=1e-15)
    assert reference_ap(label_grains(truth), label_grains(shrunk)) == pytest.approx(0.84, abs=1e-15)


def test_diagonal_gap_is_not_one_grain():
    boundary = np.zeros((8, 8), dtype=bool)
    boundary[np.arange(8), np.arange(8)] = True  # diagonal 1-pixel line: two 4-connected grains
    assert skimage_label(~boundary).max() == 1  # 8-connectivity would leak through the diagonal
    row = evaluate_boundaries(boundary, boundary)
    assert row["n_true"] == row["n_pred"] == 2 and row["map"] == 1.0
    one_grain = np.zeros_like(boundary)  # a prediction with no boundary at all is one grain, not a match
    assert evaluate_boundaries(boundary, one_grain)["map"] == 0.0


def test_empty_images():
    all_boundary = np.ones((6, 6), dtype=bool)
    some_grains = four_quadrants()[:6, :6]
    assert evaluate_boundaries(all_boundary, all_boundary)["map"] == 1.0  # no grains on either side
    assert evaluate_boundaries(some_grains, all_boundary)["map"] == 0.0
    assert evaluate_boundaries(all_boundary, some_grains)["map"] == 0.0
    assert average_precision(np.zeros((3, 3), int), np.zeros((3, 3), int)) == 1.0


def test_huge_sparse_ids_do_not_overflow():
    rng = np.random.default_rng(14)
    true_labels = label_grains(voronoi_boundary((40, 40), 12, rng))
    pred_labels = label_grains(voronoi_boundary((40, 40), 12, rng))
    huge_true = np.where(true_labels > 0, true_labels.astype(np.int64) * 700_000_000 + 1, 0)  # ids up to ~1e10
    huge_pred = np.where(pred_labels > 0, 4_000_000_000 - pred_labels.astype(np.int64), 0)
    assert int(huge_true.max()) * int(huge_pred.max()) > 2**63
    assert evaluate_labels(huge_true, huge_pred) == evaluate_labels(true_labels, pred_labels)
    assert abs(adjusted_rand(huge_true, huge_pred) - adjusted_rand_score(huge_true.ravel(), huge_pred.ravel())) < 1e-12


def test_contingency_is_sparse_and_complete():
    rng = np.random.default_rng(7)
    true_labels, pred_labels = rng.integers(0, 9000, size=(2, 100, 100))  # forces the np.unique path
    table = contingency(true_labels, pred_labels)
    assert table.n_pixels == 10000 and len(table.counts) <= 10000
    assert np.array_equal(table.true_sizes, np.bincount(true_labels.ravel()))
    small = contingency(true_labels % 7, pred_labels % 5)  # dense bincount path
    for i, j, n in zip(small.true_ids, small.pred_ids, small.counts):
        assert n == np.sum((true_labels % 7 == i) & (pred_labels % 5 == j))


# ------------------------------------------------------------------ VI and boundary F1


def test_vi_equals_skimage_on_pixels_that_are_grain_in_both():
    rng = np.random.default_rng(8)
    true_labels = label_grains(voronoi_boundary((50, 60), 14, rng))
    pred_labels = label_grains(voronoi_boundary((50, 60), 9, rng))
    both = (true_labels > 0) & (pred_labels > 0)
    expected_split, expected_merge = skimage_vi(true_labels[both], pred_labels[both])
    split, merge = variation_of_information(true_labels, pred_labels)
    assert split == pytest.approx(expected_split, abs=1e-12) and merge == pytest.approx(expected_merge, abs=1e-12)
    # one true grain cut into two equal halves: split = 1 bit on that grain's share, merge = 0
    truth = np.ones((4, 8), dtype=np.int32)
    halves = np.where(np.arange(8) < 4, 1, 2)[None, :].repeat(4, axis=0)
    assert variation_of_information(truth, halves) == pytest.approx((1.0, 0.0))
    assert variation_of_information(halves, truth) == pytest.approx((0.0, 1.0))


def test_boundary_prf_matches_distance_transform_reference():
    rng = np.random.default_rng(9)
    true_boundary = voronoi_boundary((64, 64), 16, rng)
    pred_boundary = voronoi_boundary((64, 64), 16, rng)
    dist_to_true = ndimage.distance_transform_edt(~true_boundary)
    dist_to_pred = ndimage.distance_transform_edt(~pred_boundary)
    precision = np.mean(dist_to_true[pred_boundary] <= 2)
    recall = np.mean(dist_to_pred[true_boundary] <= 2)
    got = boundary_prf(true_boundary, pred_boundary, tolerance=2)
    assert got == pytest.approx((precision, recall, 2 * precision * recall / (precision + recall)), abs=1e-15)


@pytest.mark.parametrize("radius", [0, 1, 1.5, 2, 3, 4.2])
def test_within_distance_equals_distance_transform(radius):
    mask = np.random.default_rng(13).random((30, 41)) < 0.02
    assert np.array_equal(within_distance(mask, radius), ndimage.distance_transform_edt(~mask) <= radius)


def test_boundary_tolerance_is_two_pixels():
    truth = np.zeros((20, 20), dtype=bool)
    truth[:, 10] = True
    for shift, expected in [(0, 1.0), (2, 1.0), (3, 0.0)]:
        assert boundary_prf(truth, np.roll(truth, shift, axis=1)) == pytest.approx((expected,) * 3)
    empty = np.zeros_like(truth)
    assert boundary_prf(empty, empty) == (1.0, 1.0, 1.0)
    assert boundary_prf(truth, empty) == (0.0, 0.0, 0.0)


def test_evaluate_arrays_is_the_same_serial_and_in_parallel():
    rng = np.random.default_rng(10)
    pairs = [(voronoi_boundary((48, 48), 10, rng), voronoi_boundary((48, 48), 10, rng)) for _ in range(4)]
    serial = evaluate_arrays(pairs, workers=1)
    assert evaluate_arrays(pairs, workers=2) == serial
    assert serial[0] == evaluate_boundaries(*pairs[0])
    means = summarize(serial)
    assert means["map"][0] == pytest.approx(np.mean([row["map"] for row in serial]))


# ------------------------------------------------------------------ folders and CLI


def write_label(path, boundary, boundary_value=255):
    value = np.uint8(boundary_value)
    write_png(path, np.where(boundary, value, np.uint8(255 - boundary_value)).astype(np.uint8))


@pytest.fixture
def label_folders(tmp_path):
    """pred/ and true/ with two 48 x 40 label PNGs each (255 = boundary); pred a = truth, pred b = noisy."""
    rng = np.random.default_rng(12)
    truths = {stem: voronoi_boundary((48, 40), 10, rng) for stem in ("a", "b")}
    for stem, boundary in truths.items():
        write_label(tmp_path / "true" / f"{stem}.png", boundary)
    write_label(tmp_path / "pred" / "a.png", truths["a"])
    write_label(tmp_path / "pred" / "b.png", truths["b"] ^ (rng.random((48, 40)) < 0.05))
    return tmp_path / "pred", tmp_path / "true", truths


def test_evaluate_folders_reads_labels_and_pairs_by_stem(label_folders, tmp_path):
    pred_dir, true_dir, truths = label_folders
    rows = evaluate_folders(pred_dir, true_dir, workers=1)
    assert [row["image"] for row in rows] == ["a", "b"]
    assert rows[0]["map"] == 1.0 and rows[0]["ari"] == 1.0
    assert rows[1]["map"] < 1.0
    # labels stored the other way round (0 = boundary): same numbers with boundary_value=0 (truth) and
    # pred_boundary_value=0 (predictions), or "auto" per true label
    from grainforge.data.io import read_image

    for folder in ("pred", "true"):
        for stem in truths:
            write_png(tmp_path / "inverted" / folder / f"{stem}.png", 255 - read_image(tmp_path / folder / f"{stem}.png"))
    inverted = evaluate_folders(tmp_path / "inverted" / "pred", tmp_path / "inverted" / "true", boundary_value=0,
                                pred_boundary_value=0, workers=1)
    assert inverted == rows
    assert evaluate_folders(pred_dir, tmp_path / "inverted" / "true", boundary_value="auto", workers=1) == rows
    assert evaluate_folders(pred_dir, tmp_path / "inverted" / "true", boundary_value=255, workers=1)[0]["map"] == 0.0
    # run folders: predictions in RUN/boundaries/ (segment predict), truth in SPLIT/labels/ (demo-data)
    shutil.copytree(pred_dir, tmp_path / "run" / "boundaries")
    shutil.copytree(true_dir, tmp_path / "split" / "labels")
    (tmp_path / "split" / "images").mkdir()
    assert evaluate_folders(tmp_path / "run", tmp_path / "split", workers=1) == rows


def test_cli_writes_per_image_csv_and_summary(label_folders, tmp_path):
    pred_dir, true_dir, _ = label_folders
    out = tmp_path / "metrics.csv"
    result = run_cli("evaluate", pred_dir, true_dir, "--out", out, "--boundary-value", "255", "--ari", "grains")
    assert result.returncode == 0, result.stderr
    assert "map" in result.stdout and "mean" in result.stdout
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:10] == ["image", "map", "ari", "vi_split", "vi_merge", "boundary_precision",
                                  "boundary_recall", "boundary_f1", "n_true", "n_pred"]
    assert {"delta_G_intercept", "delta_G_planimetric", "mean_intercept_rel_error"} <= set(rows[0])  # docs/design.md §3.6
    assert [r["image"] for r in rows] == ["a", "b"] and float(rows[0]["map"]) == 1.0


def test_missing_partner_and_size_mismatch_name_the_file(label_folders, tmp_path):
    pred_dir, true_dir, truths = label_folders
    write_label(pred_dir / "c.png", truths["a"])
    with pytest.raises(UserError, match="c.png"):
        evaluate_folders(pred_dir, true_dir, workers=1)
    assert_user_error(run_cli("evaluate", pred_dir, true_dir, "--out", tmp_path / "m.csv"), "c.png", "same file names")
    (pred_dir / "c.png").unlink()
    (pred_dir / "b.png").unlink()
    assert_user_error(run_cli("evaluate", pred_dir, true_dir, "--out", tmp_path / "m.csv"), str(true_dir / "b.png"))
    write_label(pred_dir / "b.png", truths["b"][:, :30])
    with pytest.raises(UserError, match="b.png: size 30x48 differs"):
        evaluate_folders(pred_dir, true_dir, workers=1)
    assert_user_error(run_cli("evaluate", pred_dir, true_dir, "--out", tmp_path / "m.csv"), "b.png", "differs")
    assert not (tmp_path / "m.csv").exists()


def test_blank_prediction_scores_but_blank_truth_is_an_error(label_folders, tmp_path):
    pred_dir, true_dir, truths = label_folders
    write_png(pred_dir / "b.png", np.zeros((48, 40), dtype=np.uint8))  # the segmenter found no boundary
    rows = evaluate_folders(pred_dir, true_dir, workers=1)
    assert rows[1]["n_pred"] == 1 and rows[1]["map"] == 0.0 and rows[1]["boundary_precision"] == 0.0
    write_png(true_dir / "b.png", np.zeros((48, 40), dtype=np.uint8))
    assert_user_error(run_cli("evaluate", pred_dir, true_dir, "--out", tmp_path / "m.csv"),
                      str(true_dir / "b.png"), "no boundary pixels")


def test_cli_bad_inputs_exit_2(label_folders, tmp_path):
    pred_dir, true_dir, _ = label_folders
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli("evaluate", tmp_path / "empty", true_dir), "empty", "no images")
    assert_user_error(run_cli("evaluate", tmp_path / "nowhere", true_dir), "nowhere")
    assert_user_error(run_cli("evaluate", pred_dir, true_dir, "--boundary-value", "128"), "--boundary-value")
    assert_user_error(run_cli("evaluate", pred_dir, true_dir, "--ari", "pixels"), "ari_mode: unknown mode 'pixels'")
    assert_user_error(run_cli("evaluate", pred_dir, true_dir, "--truth-lines", "thick"), "truth_lines: unknown value 'thick'")


# ------------------------------------------------------------------ truth line width (§4.6)


def test_thick_truth_is_scored_at_its_centre_line():
    from grainforge.data.pairs import thin_lines
    from grainforge.labelwidth import draw_at_width

    one_px = voronoi_boundary((96, 96), 12, np.random.default_rng(3))
    thick = draw_at_width(one_px, 4.0)
    centre = thin_lines(thick)  # skeleton whose line ends stay on the image edge
    # scored as traced, the truth's own centre line is far from perfect (grains 2-3 px smaller each side) ...
    as_traced = evaluate_boundaries(thick, centre, truth_lines="as-is")
    assert as_traced["map"] < 0.7 and as_traced["ari"] < 0.8
    # ... at one line width it is perfect, and "auto" sees the 4-px truth as thick
    assert evaluate_boundaries(thick, centre)["map"] == 1.0
    assert evaluate_boundaries(thick, centre)["ari"] == pytest.approx(1.0)
    # a 1-px truth is never touched: both conventions give the same row
    pred = voronoi_boundary((96, 96), 12, np.random.default_rng(3), jitter=2.0)
    assert evaluate_boundaries(one_px, pred) == evaluate_boundaries(one_px, pred, truth_lines="as-is")
    with pytest.raises(ValueError, match="truth_lines"):
        evaluate_boundaries(one_px, pred, truth_lines="thin")
