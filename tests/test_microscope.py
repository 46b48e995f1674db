import dataclasses
import hashlib
import json

import numpy as np
import pytest
from scipy import ndimage

from conftest import assert_user_error, run_cli
from grainforge.data.io import read_csv, read_image
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids, label_grains, touches_border
from grainforge.microscope import (
    HARD_RANGES,
    PARAM_RANGES,
    STYLE_PRESETS,
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
    with pytest.raises(UserError, match="boundary_depth"):
        MicroscopeParams(boundary_depth=2.0)


NEW_FIELDS = ["missing_length_px", "illumination_gradient", "vignetting", "contrast", "twin_fraction",
              "twin_contrast", "twin_line_depth"]


@pytest.mark.parametrize("name", NEW_FIELDS)
def test_new_parameters_range_checked(name):
    lo, hi = PARAM_RANGES[name]
    for bad in (lo - 0.01 * (hi - lo) - 1e-3, hi + 0.01 * (hi - lo) + 1e-3):
        with pytest.raises(UserError, match=f"MicroscopeParams.{name}="):
            MicroscopeParams(**{name: bad})


def test_presets_stay_inside_the_documented_ranges():
    assert set(STYLE_PRESETS) == {"hard", "easy", "random"}
    for name, (lo, hi, *_) in HARD_RANGES.items():
        assert PARAM_RANGES[name][0] <= lo < hi <= PARAM_RANGES[name][1], name
    # (lo, hi, power): most draws near lo, a few near hi (median lo + (hi - lo) / 2**power)
    rng = np.random.default_rng(0)
    draws = np.array([random_params(rng, {"vignetting": (0.0, 0.4, 3)}).vignetting for _ in range(400)])
    assert 0.02 < np.median(draws) < 0.1 and draws.max() > 0.3 and draws.min() >= 0.0  # uniform: median 0.2
    assert set(NEW_FIELDS) <= set(HARD_RANGES)  # the hard preset varies every new effect


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


def test_illumination_ramp_and_vignette():
    quiet = MicroscopeParams(**QUIET, grain_level=0.6)  # dim enough that nothing saturates
    ramp = render(_single_grain(128), dataclasses.replace(quiet, illumination_gradient=0.5), seed=0)
    assert abs((ramp.max() - ramp.min()) / quiet.grain_level - 0.5) < 0.01  # 50 % peak to peak, corner to corner
    vignette = render(_single_grain(128), dataclasses.replace(quiet, vignetting=0.5), seed=0)
    centre = vignette[56:72, 56:72].mean() / quiet.grain_level
    corners = np.mean([vignette[y, x] for y in (0, -1) for x in (0, -1)]) / quiet.grain_level
    assert centre > 0.95 and 0.35 < corners < 0.7  # corners darkened by ~vignetting


def test_contrast_scales_every_grey_difference():
    ids = voronoi_grains(96, 400, seed=0)
    quiet = MicroscopeParams(**QUIET)
    full = render(ids, quiet, seed=0)
    washed = render(ids, dataclasses.replace(quiet, contrast=0.4), seed=0)
    assert np.allclose(washed - quiet.grain_level, 0.4 * (full - quiet.grain_level), atol=1e-5)


def test_twin_bands_are_dark_straight_lines_inside_grains():
    ids = voronoi_grains(192, 900, seed=0)
    boundary = boundary_from_ids(ids)
    far = ndimage.distance_transform_edt(~boundary) >= 3
    quiet = MicroscopeParams(**QUIET)
    plain = render(ids, quiet, seed=0)
    twinned = render(ids, dataclasses.replace(quiet, twin_fraction=0.6, twin_contrast=0.1, twin_line_depth=0.5), seed=0)
    dark = twinned < quiet.grain_level - 0.1
    assert (plain[far] < quiet.grain_level - 0.1).sum() == 0
    assert (dark & far).sum() > 300  # line pixels away from every labelled boundary
    # bands: a share of the grains hold two grey levels (offset +-0.1), not one
    grains_with_band = sum(np.ptp(np.round(twinned[far & (ids == g)], 2)) > 0.15 for g in range(1, ids.max() + 1)
                           if (far & (ids == g)).sum() > 50)
    assert 0.3 * ids.max() < grains_with_band < 0.8 * ids.max()


def test_missing_segments_fade_boundaries():
    ids = voronoi_grains(192, 900, seed=0)
    boundary = boundary_from_ids(ids)
    base = MicroscopeParams(**QUIET)
    full = render(ids, base, seed=0)
    faint = render(ids, dataclasses.replace(base, missing_fraction=0.3, missing_residual=0.0), seed=0)
    level = base.grain_level
    assert (full[boundary] > level - 0.1).mean() < 0.02
    assert 0.15 < (faint[boundary] > level - 0.1).mean() < 0.45
    # a longer correlation length gives fewer, longer under-etched stretches of the same total share
    long = render(ids, dataclasses.replace(base, missing_fraction=0.3, missing_residual=0.0, missing_length_px=120.0), seed=0)
    stretches = [ndimage.label(boundary & (image > level - 0.1), np.ones((3, 3)))[1] for image in (faint, long)]
    assert stretches[1] < 0.5 * stretches[0]


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


def _pixels(folder, rows, kind):
    return [read_image(folder / row["split"] / kind / f"{row['image']}.png") for row in rows]


def test_easy_preset_is_the_pre_preset_default_render(tmp_path):
    """Bit for bit the images of ``make_demo_data`` before presets and the harder effects existed
    (hash taken from that code, same seed and sizes), so old demo results reproduce with --preset easy."""
    rows = make_demo_data(tmp_path / "easy", 3, 96, seed=3, mean_area_px=300, preset="easy", progress=False)
    digest = hashlib.sha256(b"".join(a.tobytes() for a in _pixels(tmp_path / "easy", rows, "images"))).hexdigest()
    assert digest == "bdf2a8cc53e3682f71e9ff1b9666380f998185eecb96ad932d90d8d2cc0acaeb"
    fixed = make_demo_data(tmp_path / "fixed", 3, 96, seed=3, mean_area_px=300, preset=MicroscopeParams(), progress=False)
    for a, b in zip(_pixels(tmp_path / "easy", rows, "images"), _pixels(tmp_path / "fixed", fixed, "images")):
        assert np.array_equal(a, b)


def _line_contrast_and_unevenness(image, label):
    """(grain median - boundary median, relative std of the 4 x 4 block medians of grain pixels)."""
    boundary = label == 255
    far = ndimage.distance_transform_edt(~boundary) >= 3
    image = image / 255.0
    blocks = [np.median(image[y:y + 32, x:x + 32][far[y:y + 32, x:x + 32]]) for y in range(0, 128, 32) for x in range(0, 128, 32)]
    return np.median(image[far]) - np.median(image[boundary]), np.std(blocks) / np.median(image[far])


def test_hard_preset_varies_per_image_and_keeps_the_labels(tmp_path):
    stats = {}
    for preset in ("easy", "hard"):
        rows = make_demo_data(tmp_path / preset, 10, 128, seed=5, mean_area_px=400, preset=preset, progress=False)
        images, labels = _pixels(tmp_path / preset, rows, "images"), _pixels(tmp_path / preset, rows, "labels")
        stats[preset] = np.array([_line_contrast_and_unevenness(im, lab) for im, lab in zip(images, labels)])
        stats[preset + "_labels"] = labels
        stats[preset + "_images"] = images
        stats[preset + "_rows"] = rows
    # the style never touches the grain maps: same labels, different images
    assert all(np.array_equal(a, b) for a, b in zip(stats["easy_labels"], stats["hard_labels"]))
    assert not any(np.array_equal(a, b) for a, b in zip(stats["easy_images"], stats["hard_images"]))
    # spread across images of line contrast and of uneven illumination: several times wider for hard
    easy_spread, hard_spread = stats["easy"].std(0), stats["hard"].std(0)
    assert hard_spread[0] > 2 * easy_spread[0] and hard_spread[1] > 4 * easy_spread[1]  # measured 2.2x, 5.0x
    assert stats["hard"][:, 0].min() < 0.6 * stats["easy"][:, 0].min()  # some hard images are low-contrast
    # the preset is recorded: run.json names it, the manifest lists each image's drawn parameters
    record = json.loads((tmp_path / "hard" / "run.json").read_text())["config"]
    assert record["preset"] == "hard" and record["ranges"]["contrast"] == list(HARD_RANGES["contrast"])
    manifest = read_csv(tmp_path / "hard" / "manifest.csv")
    contrasts = [float(row["contrast"]) for row in manifest]
    assert len(set(contrasts)) == 10 and all(HARD_RANGES["contrast"][0] <= c <= 1.0 for c in contrasts)
    assert {float(row["contrast"]) for row in read_csv(tmp_path / "easy" / "manifest.csv")} == {1.0}


def test_hard_preset_deterministic_by_seed(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        make_demo_data(tmp_path / name, 2, 64, seed=seed, test_fraction=0.0, mean_area_px=200, preset="hard", progress=False)
    image = [(tmp_path / name / "train" / "images" / "demo_0001.png").read_bytes() for name in "abc"]
    assert image[0] == image[1] and image[0] != image[2]


def test_scratches_darken_images_not_labels():
    ids = voronoi_grains(256, 1600, seed=4)
    boundary = boundary_from_ids(ids)
    far = ndimage.distance_transform_edt(~boundary) >= 3
    quiet = MicroscopeParams(**QUIET)
    scratched = render(ids, dataclasses.replace(quiet, scratch_rate=6.0, scratch_depth=0.5), seed=1)
    dark_far = (scratched < quiet.grain_level - 0.15) & far
    # long dark lines crossing grains where the label has no boundary
    assert dark_far.sum() > 200 and ndimage.label(dark_far, np.ones((3, 3)))[0].max() >= 1
    assert np.bincount(ndimage.label(dark_far, np.ones((3, 3)))[0].ravel())[1:].max() > 30


def test_unknown_preset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="preset 'medium'"):
        make_demo_data(tmp_path / "x", 2, 64, seed=0, preset="medium", progress=False)
    assert not (tmp_path / "x").exists()


def test_contact_sheet_tiles_pairs():
    images = [np.full((10, 12), 0.5, np.float32)] * 3
    labels = [np.ones((10, 12), bool)] * 3
    sheet = contact_sheet(images, labels, columns=2, gap=2)
    assert sheet.dtype == np.uint8
    assert sheet.shape == (2 * (10 + 2) + 2, 2 * (12 + 2 + 12 + 2) + 2)
    assert sheet[2, 2] == 128 and sheet[2, 2 + 12 + 2] == 255


def test_cli_demo_data(tmp_path):
    result = run_cli("demo-data", "--n", "4", "--size", "64", "--seed", "1", "--mean-grain-area", "200",
                     "--preset", "easy", "--out", tmp_path / "demo", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "demo" / "run.json").read_text())["config"]["preset"] == "easy"
    for split, count in (("train", 3), ("test", 1)):
        for kind in ("images", "labels"):
            assert len(list((tmp_path / "demo" / split / kind).glob("*.png"))) == count


@pytest.mark.parametrize("args, fragment", [
    (["--n", "0"], "--n 0"),
    (["--size", "8"], "--size 8"),
    (["--mean-grain-area", "2"], "--mean-grain-area"),
    (["--test-fraction", "1.5"], "test_fraction 1.5: must be in [0, 1)"),
    (["--preset", "medium"], "--preset medium"),
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
