"""Sections, relabelling, smooth zoom, scale matching, the slice output folder and CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy.spatial import cKDTree

from conftest import assert_user_error, run_cli
from grainforge import sections
from grainforge.data.io import read_csv, read_image, write_npz
from grainforge.grains import boundary_from_ids, label_grains
from grainforge.grainstats import interior_areas, label_grains_min_area


def voronoi_volume(size: int, n_grains: int, seed: int = 0) -> np.ndarray:
    """uint32 (size,)*3 Voronoi grain-id volume (ids start at 0, like a Potts run's)."""
    points = np.random.default_rng(seed).uniform(0, size, (n_grains, 3))
    grid = np.stack(np.meshgrid(*[np.arange(size) + 0.5] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    return cKDTree(points).query(grid)[1].reshape(size, size, size).astype(np.uint32)


def test_iter_sections_names_planes_and_stride():
    volume = np.arange(4 * 6 * 8, dtype=np.uint32).reshape(4, 6, 8)
    found = dict(sections.iter_sections(volume, axes="xz", stride=3))
    assert list(found) == ["x0000", "x0003", "z0000", "z0003", "z0006"]
    assert np.array_equal(found["x0003"], volume[3]) and np.array_equal(found["z0006"], volume[:, :, 6])
    assert found["z0003"].shape == (4, 6)


def test_relabel_splits_pieces_of_one_id_and_handles_id_zero():
    ids = np.zeros((5, 5), dtype=np.uint32)
    ids[:, 2] = 7  # a wall of id 7 cuts id 0 into two pieces
    ids[2, 0] = 7  # diagonal contact only: a separate 4-connected piece
    ids[1, 1] = 0
    labels = sections.relabel(ids)
    assert labels.min() == 1 and labels.max() == 4
    assert len(np.unique(labels[:, 3:])) == 1 and labels[0, 0] != labels[0, 4]


def disk_ids(size: int, radius: float) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size] + 0.5 - size / 2
    return (rows**2 + cols**2 < radius**2).astype(np.int32)


def test_zoomed_disk_is_round_not_staircased():
    zoom, radius = 8, 5.0
    ids = disk_ids(16, radius)
    smooth = sections.zoom_ids(ids, zoom)
    blocky = np.kron(ids, np.ones((zoom, zoom), dtype=ids.dtype))
    assert smooth.shape == blocky.shape == (128, 128)
    big = radius * zoom
    assert smooth.sum() == pytest.approx(math.pi * big**2, rel=0.04)

    def radial_error(zoomed):  # distance of the boundary pixels from the true circle, output pixels
        rows, cols = np.nonzero(boundary_from_ids(zoomed))
        error = np.abs(np.hypot(rows + 0.5 - 64, cols + 0.5 - 64) - big)
        return error.max(), error.mean()

    assert radial_error(smooth)[0] < 2.0 and radial_error(smooth)[1] < 0.8  # a digital circle: 1.0, 0.4
    assert radial_error(blocky)[0] > 4.0 and radial_error(blocky)[1] > 1.5  # staircase of 8-pixel steps
    ideal_length = boundary_from_ids(disk_ids(128, big)).sum()
    assert boundary_from_ids(smooth).sum() == pytest.approx(ideal_length, rel=0.03)
    assert boundary_from_ids(blocky).sum() > 1.1 * ideal_length


def test_zoom_keeps_grains_and_scales_area_by_zoom_squared():
    section = sections.relabel(voronoi_volume(40, 250)[:, :, 17])
    zoom = 5.0
    zoomed = sections.relabel(sections.zoom_ids(section, zoom))
    assert zoomed.shape == (200, 200)
    blocky = sections.relabel(np.kron(section, np.ones((5, 5), dtype=section.dtype)))
    assert zoomed.max() >= 0.85 * blocky.max() and zoomed.max() <= blocky.max()  # only slivers vanish
    assert interior_areas(zoomed).mean() == pytest.approx(zoom**2 * interior_areas(section).mean(), rel=0.12)
    assert len(np.unique(sections.zoom_ids(section, 1.0))) >= 0.9 * len(np.unique(section))


def test_match_mean_area_hits_the_target():
    volume = voronoi_volume(40, 250, seed=3)
    planes = [ids for _, ids in sections.iter_sections(volume, "xyz", 8)]
    for target in (150.0, 600.0):
        zoom = sections.zoom_for_mean_area(planes, target)
        got = np.concatenate([interior_areas(label_grains_min_area(sections.section_labels(sections.zoom_ids(
            sections.relabel(p), zoom))[1])) for p in planes]).mean()
        assert got == pytest.approx(target, rel=0.06)


def write_run(folder: Path, volume: np.ndarray) -> Path:
    write_npz(folder / "volume.npz", ids=volume)
    return folder


def test_slice_run_writes_labels_ids_and_manifest(tmp_path: Path):
    run = write_run(tmp_path / "run", voronoi_volume(24, 60))
    rows = sections.slice_run(run, tmp_path / "out", axes="yz", stride=6, zoom=2.0, crop=20, progress=False)
    assert len(rows) == 2 * 4 * 4  # 2 axes x 4 planes x (48 // 20)^2 tiles
    manifest = read_csv(tmp_path / "out" / "manifest.csv")
    assert list(manifest[0]) == list(sections.MANIFEST_COLUMNS)
    assert manifest[5]["stem"] == "y0006_r00_c01" and manifest[5]["tile_col"] == "1"
    for row in rows:
        label = read_image(tmp_path / "out" / "labels" / f"{row['stem']}.png")
        ids = tifffile.imread(tmp_path / "out" / "ids" / f"{row['stem']}.tif")
        assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 255} and label.shape == (20, 20)
        assert ids.dtype == np.uint16 and ids.min() == 1
        assert np.array_equal(label == 255, boundary_from_ids(ids))  # closed 1-pixel boundary of the ids
        grains = label_grains(label == 255)
        assert all(len(np.unique(ids[grains == g])) == 1 for g in range(1, grains.max() + 1))
        assert row["n_grains"] == len(np.unique(label_grains_min_area(label == 255))) - 1
    assert (tmp_path / "out" / "run.json").is_file()


def test_slice_cli_and_bad_inputs(tmp_path: Path):
    run = write_run(tmp_path / "run", voronoi_volume(16, 20))
    result = run_cli("slice", run, "--out", tmp_path / "out", "--axes", "x", "--stride", "8",
                     "--match-mean-area", "200")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["x0000.png", "x0008.png"]
    assert_user_error(run_cli("slice", run, "--out", tmp_path / "o", "--zoom", "2", "--match-mean-area", "100"),
                      "zoom and match_mean_area both given")
    assert_user_error(run_cli("slice", tmp_path / "nowhere", "--out", tmp_path / "o"), "nowhere")
    assert_user_error(run_cli("slice", run, "--out", tmp_path / "o", "--crop", "40"), "crop 40: larger than the sections")
    assert_user_error(run_cli("slice", run, "--out", tmp_path / "o", "--axes", "xq"), "axes 'xq'")
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / "volume.npz", other=np.zeros(3))
    assert_user_error(run_cli("slice", tmp_path / "bad", "--out", tmp_path / "o"), "ids")
    assert not (tmp_path / "o" / "manifest.csv").exists()
