import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from conftest import assert_user_error, run_cli
from grainforge.data.io import read_image
from grainforge.grains import boundary_from_ids, label_grains, touches_border
from grainforge.microscope import (
    PARAM_RANGES,
    MicroscopeParams,
    contact_sheet,
    make_demo_data,
    random_params,
    render,
    voronoi_grains,
)

# Every optional effect switched off: the image is then grains + boundary lines only.
QUIET = dict(grain_contrast=0.0, grain_mottle=0.0, missing_fraction=0.0, junction_blob_fraction=0.0,
             pit_density=0.0, scratch_rate=0.0, illumination=0.0, noise=0.0, boundary_depth_variation=0.0)


def _single_grain(size=96):
    return np.ones((size, size), dtype=np.int32)


def test_voronoi_grains_deterministic_connected_and_sized():
    a = voronoi_grains(256, 400, seed=3)
    assert np.array_equal(a, voronoi_grains(256, 400, seed=3))
    assert not np.array_equal(a, voronoi_grains(256, 400, seed=4))
    assert a.dtype == np.int32 and a.min() == 1
    assert np.array_equal(np.unique(a), np.arange(1, a.max() + 1))  # ids are 1..n
    # every id is one 4-connected region
    for grain in range(1, a.max() + 1):
        assert ndimage.label(a == grain)[1] == 1
    # interior grains have about the requested mean area, with a broad (log-normal-like) spread
    areas = np.bincount(a.ravel())[1:]
    inner = ~touches_border(a)[1:]
    assert 0.6 * 400 < areas[inner].mean() < 1.3 * 400
    assert 0.3 < areas[inner].std() / areas[inner].mean() < 1.2


def test_voronoi_grains_rectangular_and_curved():
    ids = voronoi_grains((80, 130), 300, seed=0)
    assert ids.shape == (80, 130)
    straight = voronoi_grains(200, 900, seed=1, curvature=0.0, lloyd_steps=0)
    curved = voronoi_grains(200, 900, seed=1, curvature=0.3, lloyd_steps=0)
    # warping bends edges: more boundary pixels than the straight-edged tessellation of the same seeds
    assert boundary_from_ids(curved).sum() > boundary_from_ids(straight).sum()


def test_render_deterministic_and_in_range():
    ids = voronoi_grains(128, 400, seed=0)
    image = render(ids, seed=5)
    assert image.dtype == np.float32 and image.shape == (128, 128)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert np.array_equal(image, render(ids, seed=5))
    assert not np.array_equal(image, render(ids, seed=6))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_render_looks_like_etched_ferrite(seed):
    """Documented default statistics: bright grains (median 0.8..0.98), boundary pixels darker by >= 0.25."""
    ids = voronoi_grains(192, 900, seed=seed)
    boundary = boundary_from_ids(ids)
    image = render(ids, seed=seed)
    far = ndimage.distance_transform_edt(~boundary) >= 4
    grain_median = np.median(image[far])
    assert 0.8 <= grain_median <= 0.98
    assert grain_median - np.median(image[boundary]) >= 0.25
    assert image[boundary].mean() < image[~boundary].mean() - 0.15


def test_random_params_cover_ranges_and_keep_boundaries_dark():
    rng = np.random.default_rng(0)
    draws = [random_params(rng) for _ in range(30)]
    for name, (lo, hi) in PARAM_RANGES.items():
        values = [getattr(p, name) for p in draws]
        assert lo <= min(values) and max(values) <= hi
        assert max(values) - min(values) > 0.3 * (hi - lo)  # actually spread over the range
    assert random_params(np.random.default_rng(1)) == random_params(np.random.default_rng(1))
    ids = voronoi_grains(128, 400, seed=0)
    boundary = boundary_from_ids(ids)
    for params in draws[:5]:
        image = render(ids, params, seed=0)
        assert image[boundary].mean() < image[~boundary].mean()


def test_every_parameter_documented_and_range_checked():
    for f in dataclasses.fields(MicroscopeParams):
        lo, hi = f.metadata["range"]
        assert lo <= f.default <= hi and f.metadata["doc"]
    with pytest.raises(ValueError, match="boundary_depth"):
        MicroscopeParams(boundary_depth=2.0)


def test_effects_switched_on_alone():
    quiet = MicroscopeParams(**QUIET)
    flat = render(_single_grain(), quiet, seed=0)
    assert flat.std() < 1e-5 and abs(flat.mean() - quiet.grain_level) < 1e-5  # one grain, no effects: uniform

    pits = render(_single_grain(), dataclasses.replace(quiet, pit_density=3.0), seed=0)
    assert (pits < quiet.grain_level - 0.2).sum() > 5  # dark dots

    lit = render(_single_grain(), dataclasses.replace(quiet, illumination=0.2), seed=0)
    assert 0.1 < (lit.max() - lit.min()) / quiet.grain_level <= 0.41  # +-20 % at most

    noisy = render(_single_grain(), dataclasses.replace(quiet, noise=0.03, grain_level=0.6), seed=0)
    assert abs(noisy.std() - 0.03) < 0.003

    scratched = render(_single_grain(256), dataclasses.replace(quiet, scratch_rate=6.0, scratch_depth=0.5), seed=1)
    dark = scratched < quiet.grain_level - 0.1
    assert dark.sum() > 100 and ndimage.label(dark)[1] >= 1  # long dark lines


def test_missing_segments_fade_boundaries():
    ids = voronoi_grains(192, 900, seed=0)
    boundary = boundary_from_ids(ids)
    base = MicroscopeParams(**QUIET)
    full = render(ids, base, seed=0)
    faint = render(ids, dataclasses.replace(base, missing_fraction=0.3, missing_residual=0.0), seed=0)
    level = base.grain_level
    assert (full[boundary] > level - 0.1).mean() < 0.02
    assert 0.15 < (faint[boundary] > level - 0.1).mean() < 0.45


def test_render_accepts_boundary_maps():
    ids = voronoi_grains(128, 400, seed=2)
    boundary = boundary_from_ids(ids)
    image = render(boundary, seed=0)
    assert image[boundary].mean() < image[~boundary].mean() - 0.15
    # with every random effect off, a boundary map renders exactly like the id map it came from
    quiet = MicroscopeParams(**QUIET, boundary_width_variation=0.0)
    assert np.allclose(render(boundary, quiet, 0), render(ids, quiet, 0), atol=1e-6)


def test_make_demo_data_layout_split_and_determinism(tmp_path):
    rows = make_demo_data(tmp_path / "a", 5, 64, seed=3, mean_area_px=200, progress=False,
                          contact_sheet_path=tmp_path / "sheet.png")
    assert sum(r["split"] == "test" for r in rows) == 1
    for row in rows:
        folder = tmp_path / "a" / row["split"]
        image = read_image(folder / "images" / f"{row['image']}.png")
        label = read_image(folder / "labels" / f"{row['image']}.png")
        assert image.dtype == np.uint8 and image.shape == (64, 64)
        assert set(np.unique(label)) == {0, 255}
        assert abs(label_grains(label == 255).max() - row["n_grains"]) <= 0.2 * row["n_grains"]
    assert (tmp_path / "a" / "manifest.csv").is_file() and (tmp_path / "a" / "run.json").is_file()
    assert read_image(tmp_path / "sheet.png").ndim == 2
    # image i depends on (seed, i) only: a shorter run reproduces the first images byte for byte
    make_demo_data(tmp_path / "b", 3, 64, seed=3, test_fraction=0.0, mean_area_px=200, progress=False)
    for row in rows[:3]:
        first = (tmp_path / "a" / row["split"] / "images" / f"{row['image']}.png").read_bytes()
        assert first == (tmp_path / "b" / "train" / "images" / f"{row['image']}.png").read_bytes()


def test_contact_sheet_tiles_pairs():
    images = [np.full((10, 12), 0.5, np.float32)] * 3
    labels = [np.ones((10, 12), bool)] * 3
    sheet = contact_sheet(images, labels, columns=2, gap=2)
    assert sheet.dtype == np.uint8
    assert sheet.shape == (2 * (10 + 2) + 2, 2 * (12 + 2 + 12 + 2) + 2)
    assert sheet[2, 2] == 128 and sheet[2, 2 + 12 + 2] == 255


def test_cli_demo_data(tmp_path):
    result = run_cli("demo-data", "--n", "4", "--size", "64", "--seed", "1", "--mean-grain-area", "200",
                     "--out", tmp_path / "demo", "--no-progress")
    assert result.returncode == 0, result.stderr
    for split, count in (("train", 3), ("test", 1)):
        for kind in ("images", "labels"):
            assert len(list((tmp_path / "demo" / split / kind).glob("*.png"))) == count


@pytest.mark.parametrize("args, fragment", [
    (["--n", "0"], "--n 0"),
    (["--size", "8"], "--size 8"),
    (["--mean-grain-area", "2"], "--mean-grain-area"),
    (["--test-fraction", "1.5"], "test_fraction 1.5: must be in [0, 1)"),
])
def test_cli_demo_data_bad_options(tmp_path, args, fragment):
    assert_user_error(run_cli("demo-data", "--out", tmp_path / "x", "--no-progress", *args), fragment)


def test_cli_render_label_folder(tmp_path):
    from grainforge.data.io import write_png

    labels = tmp_path / "labels"
    write_png(labels / "a.png", boundary_from_ids(voronoi_grains(64, 200, seed=0)).astype(np.uint8) * 255)
    result = run_cli("demo-data", "--from-labels", labels, "--out", tmp_path / "r", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert read_image(tmp_path / "r" / "images" / "a.png").shape == (64, 64)
    assert np.array_equal(read_image(tmp_path / "r" / "labels" / "a.png"), read_image(labels / "a.png"))
