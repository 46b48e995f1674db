"""Style-fidelity gate: boundary profile, periodic artefacts, grey histograms on synthetic images with known
answers; reference_stats.json / fidelity.json written by style train and style apply, the verdict on stderr."""

from __future__ import annotations

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP)

import json
import shutil

import numpy as np
import pytest
from scipy import ndimage

from conftest import run_cli
from grainforge.data.io import read_image, write_png
from grainforge.data.pairs import Pair, load_pairs
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids
from grainforge.style import apply_style, train_style
from grainforge.style.fidelity import (MIN_PEAK, REFERENCE_FILE, REPORT_FILE, compare, grey_histogram,
                                       histogram_distance, read_reference, style_statistics, unet_f1_ratio)
from test_style import TINY, grain_ids, write_pairs

PLATEAU, FWHM_PER_SIGMA = 0.8, 2 * np.sqrt(2 * np.log(2))


def line_grid(size: int = 240, spacing: int = 60, thickness: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(boundary bool (size, size) of straight lines every ``spacing`` px, ``thickness`` px wide; distance
    (size, size) of every pixel from the nearest line centre, px)."""
    centres = np.arange(spacing // 2, size, spacing)
    axis = np.abs(np.arange(size)[:, None] - centres[None, :]).min(axis=1)
    distance = np.minimum(axis[:, None], axis[None, :]).astype(np.float64)
    return distance <= (thickness - 1) / 2, distance


def dip_image(distance: np.ndarray, depth: float, sigma: float) -> np.ndarray:
    """Grain level PLATEAU minus a Gaussian dip of ``depth`` (grey levels) and ``sigma`` (px) at the boundaries."""
    return PLATEAU - depth * np.exp(-distance**2 / (2 * sigma**2))


def grain_image(seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(image float (size, size), boundary bool): Voronoi grains of random grey with dark dips, plus noise."""
    rng = np.random.default_rng(seed)
    ids = grain_ids((size, size), 30, seed)
    boundary = boundary_from_ids(ids)
    grey = rng.uniform(0.6, 0.9, ids.max() + 1)[ids]
    image = grey - 0.4 * np.exp(-ndimage.distance_transform_edt(~boundary) ** 2 / 4.5)
    return np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1), boundary


@pytest.mark.parametrize("sigma", [1.5, 2.5])
@pytest.mark.parametrize("thickness", [1, 3])
def test_profile_gives_dip_depth_and_width(sigma, thickness):
    boundary, distance = line_grid(thickness=thickness)
    stats = style_statistics([(dip_image(distance, 0.3, sigma), boundary)])
    assert stats.profile[0] == pytest.approx(PLATEAU - 0.3, abs=1e-3)  # the centre line, whatever the label width
    assert stats.contrast == pytest.approx(0.3, rel=0.03)
    assert stats.width == pytest.approx(FWHM_PER_SIGMA * sigma, rel=0.05)
    assert stats.label_width == pytest.approx(thickness, rel=0.03)


def test_faint_boundaries_are_flagged():
    boundary, distance = line_grid()
    real = style_statistics([(dip_image(distance, 0.3, 2.0), boundary)])
    faint = style_statistics([(dip_image(distance, 0.03, 0.5), boundary)])
    assert compare(real, real)["verdict"] == "OK"
    report = compare(faint, real)
    assert report["verdict"] == "WARN"
    assert report["problems"][:2] == ["boundary contrast 0.03 vs real 0.30", "boundary width 1.2 px vs real 4.7 px"]


@pytest.mark.parametrize("period", [6, 8, 11])
def test_dot_grid_is_flagged_with_its_period(period):
    image, boundary = grain_image(0)
    dotted = image.copy()
    dotted[::period, ::period] -= 0.2
    reference = style_statistics([grain_image(1)])
    clean = style_statistics([(image, boundary)])
    assert clean.peak < MIN_PEAK and clean.periodic_fraction == 0.0
    assert compare(clean, reference)["verdict"] == "OK"
    stats = style_statistics([(dotted, boundary)])
    assert stats.peak_period == pytest.approx(period, rel=0.06)
    report = compare(stats, reference)
    assert report["verdict"] == "WARN"
    assert report["problems"][0].startswith(f"periodic artifact at {stats.peak_period:.1f} px")
    # single-pixel dots of depth 0.2 every P px carry 0.04 (1/P^2)(1 - 1/P^2) of variance, against the
    # image's own: most of it shows in the peaks
    dots = 0.04 / period**2 * (1 - 1 / period**2)
    assert 0.3 * dots < stats.periodic_fraction * dotted.var() < 1.05 * dots


def test_too_few_spectrum_tiles_are_not_judged():
    image, boundary = grain_image(0, size=192)  # 4 tiles of 128 px: their noise alone makes 5x peaks
    image[::8, ::8] -= 0.2
    stats = style_statistics([(image, boundary)])
    assert stats.peak is None and stats.periodic_fraction is None
    assert compare(stats, style_statistics([grain_image(1)]))["verdict"] == "OK"


def test_stripes_give_their_period():
    image, boundary = grain_image(0)
    stripes = image + 0.05 * np.cos(2 * np.pi * np.arange(256) / 10.0)[None, :]
    stats = style_statistics([(stripes, boundary)])
    assert stats.peak_period == pytest.approx(10.0, rel=0.03)  # a lone peak at 1/10: the step from DC


def test_histogram_distance_is_the_shift():
    levels = np.random.default_rng(0).integers(50, 150, (64, 64)) / 255
    assert histogram_distance(grey_histogram(levels), grey_histogram(levels)) == 0.0
    shifted = histogram_distance(grey_histogram(levels), grey_histogram(levels + 20 / 255))
    assert shifted == pytest.approx(20 / 255, abs=1e-12)
    assert grey_histogram(levels).sum() == 64 * 64


def test_statistics_round_trip_through_json(tmp_path):
    stats = style_statistics([grain_image(2)])
    again = type(stats).from_dict(json.loads(json.dumps(stats.to_dict())))
    np.testing.assert_allclose(again.histogram, stats.histogram, atol=1e-7)
    np.testing.assert_allclose(again.profile, stats.profile, atol=1e-6)
    assert (again.peak, again.peak_period, again.n_images) == (stats.peak, stats.peak_period, 1)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    pairs = write_pairs(tmp_path_factory.mktemp("pairs"), 2)
    return train_style(pairs, TINY, tmp_path_factory.mktemp("model"), seed=1, device="cpu", progress=False), pairs


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labels")
    for stem, shape in {"a": (256, 260), "b": (40, 50)}.items():
        write_png(folder / f"{stem}.png", boundary_from_ids(grain_ids(shape, 8, 1)).astype(np.uint8) * 255)
    return folder


def test_training_writes_reference_and_verdict(model):
    model_dir, pairs_dir = model
    real = load_pairs(pairs_dir)
    reference = read_reference(model_dir)
    expected = sum(grey_histogram(pair.image) for pair in real)
    np.testing.assert_allclose(reference.histogram, expected / expected.sum(), atol=1e-7)
    assert reference.n_images == 2 and reference.peak is None  # 70 x 76 pairs: no 128-px spectrum tile
    report = json.loads((model_dir / REPORT_FILE).read_text())
    assert report["verdict"] in ("OK", "WARN") and report["generated"]["n_images"] == TINY.n_samples
    assert report["reference"] == json.loads((model_dir / REFERENCE_FILE).read_text())
    run = json.loads((model_dir / "run.json").read_text())
    assert run["fidelity"]["line"] == report["line"] and run["fidelity"]["verdict"] == report["verdict"]


def test_apply_writes_fidelity_json(model, labels, tmp_path, capsys):
    model_dir, _ = model
    written = apply_style(model_dir, labels, tmp_path / "out", device="cpu", progress=False)
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert capsys.readouterr().err.strip().splitlines()[-1] == report["line"]
    assert report["line"].startswith(f"fidelity: {report['verdict']} ")
    counts = sum(grey_histogram(read_image(path) / 255) for path in written)  # the images as written
    np.testing.assert_allclose(report["generated"]["histogram"], counts / counts.sum(), atol=1e-7)
    assert report["figures"]["histogram_w1"] == pytest.approx(
        histogram_distance(counts, read_reference(model_dir).histogram), abs=1e-6)
    assert report["generated"]["peak"] is not None  # "a" (256 x 260) holds 9 spectrum tiles
    assert set(report["thresholds"]) >= {"max_histogram_w1", "contrast_ratio_range", "max_periodic_fraction"}
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["fidelity"]["verdict"] == report["verdict"]


def test_cli_prints_the_verdict(model, labels, tmp_path):
    result = run_cli("style", "apply", model[0], labels, "--out", tmp_path / "out", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert report["line"] in result.stderr.splitlines()


def test_missing_or_bad_reference(model, labels, tmp_path, capsys):
    old = tmp_path / "old_model"
    shutil.copytree(model[0], old)
    (old / REFERENCE_FILE).unlink()  # a model trained before the gate existed: painted, but not judged
    apply_style(old, labels, tmp_path / "old_out", device="cpu", progress=False)
    assert "fidelity: UNCHECKED" in capsys.readouterr().err
    assert json.loads((tmp_path / "old_out" / REPORT_FILE).read_text())["verdict"] == "UNCHECKED"
    (old / REFERENCE_FILE).write_text("{not json")
    with pytest.raises(UserError, match=f"{REFERENCE_FILE}: unreadable .*retrain"):
        apply_style(old, labels, tmp_path / "bad", device="cpu", progress=False)
    assert not (tmp_path / "bad").exists()  # refused before anything is painted


def test_unet_f1_ratio_scores_real_and_generated_alike(tmp_path):
    """Plumbing of the slow check with a 2-iteration U-Net: identical images score identically, the
    segmenter is trained once per work folder."""
    pairs = [Pair(f"g{seed}", *grain_image(seed, size=128)) for seed in range(2)]
    held_out = [Pair("h", *grain_image(5, size=128))]
    scores = unet_f1_ratio(pairs, held_out, {"h": held_out[0].image}, tmp_path, iters=2, tolerances=(2, 0))
    assert set(scores) == {2, 0}
    for tolerance in (2, 0):
        assert scores[tolerance]["generated_per_image"] == scores[tolerance]["real_per_image"]
        assert len(scores[tolerance]["real_per_image"]) == 1
    run_json = tmp_path / "segmenter" / "run.json"
    stamp = run_json.stat().st_mtime_ns
    unet_f1_ratio(pairs, held_out, {"h": held_out[0].image * 0.5}, tmp_path, iters=2)
    assert run_json.stat().st_mtime_ns == stamp
