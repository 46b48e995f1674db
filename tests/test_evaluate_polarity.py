"""Polarity of `evaluate` (docs/design.md §4.5, issue 9): the true labels' boundary value comes from
the truth or the flag, the predictions' from their own flag (default 255), never guessed per
prediction file. A weak model's map that is more than half boundary (here: the truth dilated by a
disk of radius 11) must be scored as drawn, not inverted, and warned about."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import disk
from sklearn.metrics import adjusted_rand_score

from conftest import run_cli
from grainforge.data.io import write_png
from grainforge.data.pairs import label_to_boundary
from grainforge.errors import GrainforgeWarning
from grainforge.metrics import evaluate_folders
from test_metrics import reference_ap, voronoi_boundary


def write_map(path, boundary, boundary_value):
    write_png(path, np.where(boundary, boundary_value, 255 - boundary_value).astype(np.uint8))


@pytest.fixture(scope="module")
def dilated_case(tmp_path_factory):
    """A 192 x 192 Voronoi truth (0 and 255 polarity) and its dilation by radius 11 as the prediction."""
    root = tmp_path_factory.mktemp("polarity")
    truth = voronoi_boundary((192, 192), 24, np.random.default_rng(3))
    pred = ndimage.binary_dilation(truth, structure=disk(11))
    assert pred.mean() > 0.5  # the case: more boundary than grain
    for value in (0, 255):
        write_map(root / f"true{value}" / "a.png", truth, value)
        write_map(root / f"pred{value}" / "a.png", pred, value)
    return root, truth, pred


def test_dilated_prediction_scores_as_drawn_for_every_polarity_spelling(dilated_case):
    root, truth, pred = dilated_case
    true_labels, _ = ndimage.label(~truth)  # 4-connected grains, 0 = boundary
    pred_labels, n_pred = ndimage.label(~pred)
    expected_map = reference_ap(true_labels, pred_labels)
    expected_ari = adjusted_rand_score(true_labels.ravel(), pred_labels.ravel())
    # what the old "rarer value" rule did to this prediction: grains taken for boundary -> one grain, MAP 0
    inverted = label_to_boundary(np.where(pred, 255, 0).astype(np.uint8), "pred", "auto")
    assert ndimage.label(~inverted)[1] == 1
    assert 5 <= n_pred < 24 and expected_map > 0.0  # eroded cores: few match at IoU > 0.5, but not none

    runs = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs["255/255"] = evaluate_folders(root / "pred255", root / "true255", boundary_value=255, workers=1)
        runs["auto/255"] = evaluate_folders(root / "pred255", root / "true255", boundary_value="auto", workers=1)
        runs["0/255"] = evaluate_folders(root / "pred255", root / "true0", boundary_value=0, workers=1)
        runs["auto0/255"] = evaluate_folders(root / "pred255", root / "true0", boundary_value="auto", workers=1)
        runs["0/0"] = evaluate_folders(root / "pred0", root / "true0", boundary_value=0, pred_boundary_value=0,
                                       workers=1)
    first = runs["255/255"][0]
    assert first["n_pred"] == n_pred and first["n_true"] == true_labels.max()
    assert first["map"] == pytest.approx(expected_map, abs=1e-12)
    assert first["ari"] == pytest.approx(expected_ari, abs=1e-12)
    for name, rows in runs.items():
        assert rows == runs["255/255"], name
    over_half = [w for w in caught if issubclass(w.category, GrainforgeWarning) and "boundary" in str(w.message)]
    assert len(over_half) == len(runs) and "a.png" in str(over_half[0].message)


def test_cli_warns_on_stderr_and_takes_the_prediction_flag(dilated_case, tmp_path):
    root, truth, pred = dilated_case
    result = run_cli("evaluate", root / "pred255", root / "true0", "--out", tmp_path / "m.csv")
    assert result.returncode == 0, result.stderr
    warning_lines = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warning_lines) == 1 and "a.png" in warning_lines[0] and "Traceback" not in result.stderr
    auto = (tmp_path / "m.csv").read_text()
    result = run_cli("evaluate", root / "pred0", root / "true255", "--boundary-value", "255",
                     "--pred-boundary-value", "0", "--out", tmp_path / "m0.csv")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m0.csv").read_text() == auto
    assert run_cli("evaluate", root / "pred0", root / "true255", "--pred-boundary-value", "7").returncode == 2
