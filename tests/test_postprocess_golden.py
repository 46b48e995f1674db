"""Golden outputs of the post-processing (docs/design.md §8.5): ``watershed_regions`` and
``closed_boundaries`` must give exactly the regions and boundaries in ``golden/postprocess.npz``,
written by the code of commit b4a9c5f (two ``skimage.segmentation.watershed`` floods of the whole
image), for three probability maps stored in the same file and four settings each.

The maps (float32, 128 x 192): ``strong`` and ``weak`` are crops of what two cpu-small U-Nets of
the hard demo (``runs/hard-demo/rows/real_f1_s0`` and ``real_f0.05_s0``: all and 5 % of the real
training images) predicted on a 2800 x 1600 micrograph rendered with the hard preset from a
Voronoi map of mean grain area 1600 px (``strong`` at the top-left corner, ``weak``, which has gaps,
at rows 700, columns 1300); ``synthetic`` is a Voronoi map's boundaries with 3-px gaps, a ridge
0.95 / (1 + (d / 1.2 px)^2) of the distance d to them, uniform noise of 0.08 and dark specks of
0.7 (small regions to merge; with the clipped ridge tops at 1.0 they also tie many pixels outside
the markers, where the order of entry decides). Marker-rim pixels of equal probability, the one
case where ``flood`` and scikit-image may take pixels in another order (§8.5.1), occur in the
U-Net maps (up to about a thousand per case) but decide no pixel there. To
regenerate, run ``watershed_regions`` and ``closed_boundaries`` of commit b4a9c5f on the stored maps
and settings (regions as uint16, boundaries through ``np.packbits``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
from scipy import ndimage
from skimage.segmentation import watershed

from grainforge.segment.postprocess import closed_boundaries, flood, watershed_regions

GOLDEN = Path(__file__).parent / "golden" / "postprocess.npz"
MAPS = ("strong", "weak", "synthetic")
SETTINGS = {  # (marker_threshold, marker_erosion, min_grain_area, min_border_probability)
    "default": (0.3, 2, 30, 0.3),
    "raw": (0.3, 0, 0, 0.0),  # no erosion, no merging
    "coarse": (0.45, 3, 80, 0.5),
    "fine": (0.2, 1, 10, 0.2),
}


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return dict(data)


@pytest.mark.parametrize("name", MAPS)
@pytest.mark.parametrize("setting", SETTINGS)
def test_postprocess_equals_golden(golden, name, setting):
    probability = golden[f"map_{name}"]
    regions = watershed_regions(probability, *SETTINGS[setting])
    boundary = closed_boundaries(probability, *SETTINGS[setting])
    expected_regions = golden[f"regions_{name}_{setting}"].astype(np.int32)
    expected_boundary = np.unpackbits(golden[f"boundary_{name}_{setting}"], count=probability.size).reshape(
        probability.shape).astype(bool)
    assert regions.dtype == np.int32 and boundary.dtype == bool
    np.testing.assert_array_equal(regions, expected_regions)
    np.testing.assert_array_equal(boundary, expected_boundary)


def test_golden_cases_are_not_trivial(golden):
    """Every case has many regions and a boundary; merging joined regions in some settings and not in others."""
    counts = {(name, setting): int(golden[f"regions_{name}_{setting}"].max()) for name in MAPS for setting in SETTINGS}
    assert min(counts.values()) >= 12
    assert all(np.unpackbits(golden[f"boundary_{name}_{setting}"]).sum() > 600 for name in MAPS for setting in SETTINGS)
    assert counts["synthetic", "coarse"] < counts["synthetic", "default"] < counts["synthetic", "raw"]


def _distinct_map(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """float32 map with a smooth structure (Gaussian-filtered noise) and no two equal values (its ranks / size)."""
    field = ndimage.gaussian_filter(rng.random(shape), sigma)
    ranks = np.empty(field.size)
    ranks[np.argsort(field, axis=None)] = np.arange(field.size)
    return (ranks / field.size).reshape(shape).astype(np.float32)


def _random_markers(rng: np.random.Generator, probability: np.ndarray, kind: str) -> np.ndarray:
    if kind == "scattered":  # single pixels, often 4-adjacent with another label
        markers = np.where(rng.random(probability.shape) < 0.08, rng.integers(1, 6, probability.shape), 0)
    else:  # components of the low areas, as grain_markers makes them, some sharing a label
        markers, n = ndimage.label(probability < 0.35)
        markers = np.where(markers > 0, rng.integers(1, max(n, 1) + 1, n + 1)[markers], 0)
    return markers.astype(np.int32)


@pytest.mark.skipif(not skimage.__version__.startswith("0.26."),
                    reason="flood keeps the flooding rule of scikit-image 0.26; other versions may flood differently")
@pytest.mark.parametrize("watershed_line", [False, True])
def test_flood_equals_skimage_watershed_when_no_two_pixels_tie(watershed_line):
    """flood (numba, rims only) against skimage.segmentation.watershed on maps without equal values: 1-pixel
    strips, scattered and blob markers, markers touching the image edge and each other."""
    rng = np.random.default_rng(11)
    shapes = [(1, 30), (30, 1), (2, 2), (17, 23), (40, 40), (64, 96)]
    checked = 0
    for shape in shapes * 4:
        probability = _distinct_map(rng, shape, sigma=rng.choice([0.5, 2.0]))
        for kind in ("scattered", "blobs"):
            markers = _random_markers(rng, probability, kind)
            got = flood(probability, markers, watershed_line=watershed_line)
            expected = watershed(probability, markers, connectivity=1, watershed_line=watershed_line)
            np.testing.assert_array_equal(got, expected, err_msg=f"{shape} {kind}")
            checked += int(markers.any() and (expected == 0).any()) if watershed_line else int(markers.any())
    assert checked >= 30


def test_flood_refuses_mismatched_shapes_and_nan():
    with pytest.raises(ValueError, match="same 2-D shape"):
        flood(np.zeros((4, 5), np.float32), np.zeros((5, 4), np.int32))
    with pytest.raises(ValueError, match="NaN"):
        flood(np.full((4, 5), np.nan, np.float32), np.ones((4, 5), np.int32))


@pytest.mark.parametrize("setting", SETTINGS)
def test_line_replay_equals_a_second_flooding(golden, setting):
    """closed_boundaries draws the watershed line by replaying the first flooding's order (_line_in_order); it must
    equal a second queued flooding from the merged markers, also on maps where many pixels tie (clipped ridges,
    plateaus of equal values)."""
    from grainforge.segment.postprocess import _regions_markers_order

    rng = np.random.default_rng(5)
    maps = [golden[f"map_{name}"] for name in MAPS]
    for _ in range(6):
        smooth = ndimage.gaussian_filter(rng.random((70, 90)), 2.0)
        maps.append(np.round(np.clip((smooth - smooth.min()) / np.ptp(smooth) * 1.6 - 0.3, 0, 1) * 8) / 8)  # 9 levels
    for probability in maps:
        probability = probability.astype(np.float32)
        regions, markers, _ = _regions_markers_order(probability, *SETTINGS[setting])
        expected = flood(probability, np.where(markers > 0, regions, 0), watershed_line=True) == 0
        np.testing.assert_array_equal(closed_boundaries(probability, *SETTINGS[setting]), expected)
        assert markers.max() == 0 or expected.any()


def test_merge_components_are_numbered_as_scipy_numbers_them():
    """merge_regions' union-find gives each node its component's smallest node: ranked, scipy's component labels."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    from grainforge.segment.postprocess import _smallest_in_component

    rng = np.random.default_rng(2)
    for _ in range(200):
        n = int(rng.integers(1, 200))
        rows, cols = rng.integers(0, n, (2, int(rng.integers(0, 2 * n))))
        _, expected = connected_components(sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n)),
                                           directed=False)
        smallest = _smallest_in_component(n, rows, cols)
        np.testing.assert_array_equal(np.unique(smallest, return_inverse=True)[1], expected)
        assert np.all(smallest <= np.arange(n))
