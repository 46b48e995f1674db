import numpy as np
import pytest

from grainforge.data.pairs import Pair
from grainforge.data.split import grid_tiles, nested_fraction, random_crop_pairs, tile_pairs, train_test_split
from grainforge.errors import UserError

NAMES = [f"img{i:03d}" for i in range(136)]


def test_train_test_split_seeded_disjoint_and_sized():
    train, test = train_test_split(NAMES, 36 / 136, seed=0)
    assert len(train) == 100 and len(test) == 36  # the paper's split
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(NAMES)
    assert train == sorted(train) and test == sorted(test)
    assert (train, test) == train_test_split(NAMES[::-1], 36 / 136, seed=0)  # input order does not matter
    assert test != train_test_split(NAMES, 36 / 136, seed=1)[1]


def test_train_test_split_edge_cases():
    assert train_test_split(["a", "b"], 0.01, seed=0)[1] != []  # a positive fraction keeps one test image
    assert len(train_test_split(["a", "b"], 0.99, seed=0)[0]) == 1  # ... and one training image
    assert train_test_split(["a", "b", "c"], 0.0, seed=0) == (["a", "b", "c"], [])
    with pytest.raises(UserError, match="test_fraction 1.0"):
        train_test_split(NAMES, 1.0, seed=0)


def test_nested_fractions():
    fractions = [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 1.0]
    subsets = [nested_fraction(NAMES[:100], f, seed=3) for f in fractions]
    assert [len(s) for s in subsets] == [5, 10, 15, 20, 25, 30, 35, 100]
    for small, large in zip(subsets, subsets[1:]):
        assert set(small) < set(large)
    assert nested_fraction(["only"], 0.05, seed=0) == ["only"]  # at least one image
    assert nested_fraction(NAMES, 0.1, seed=0) != nested_fraction(NAMES, 0.1, seed=1)
    for bad in (0.0, 1.5):
        with pytest.raises(UserError, match=f"real fraction {bad}"):
            nested_fraction(NAMES, bad, seed=0)


def test_grid_tiles_paper_geometry():
    array = np.arange(160 * 280).reshape(160, 280)  # the paper's 1600 x 2800 images and 400 px tiles, / 10
    tiles = grid_tiles(array, 40)
    assert len(tiles) == 28  # 36 images -> 1008 tiles
    assert all(t.shape == (40, 40) for t in tiles)
    seen = np.concatenate([t.ravel() for t in tiles])
    assert len(np.unique(seen)) == seen.size == 160 * 280  # non-overlapping and covering
    assert np.array_equal(tiles[8], array[40:80, 40:80])  # row-major
    assert len(grid_tiles(np.zeros((45, 83)), 40)) == 2  # remainders dropped


def _pair(name, h=50, w=70):
    image = np.arange(h * w, dtype=np.float32).reshape(h, w) / (h * w)
    return Pair(name, image, (np.arange(h * w).reshape(h, w) % 7) == 0)


def test_tile_pairs_names_and_content():
    pair = _pair("p")
    tiles = tile_pairs([pair], 20)
    assert [t.name for t in tiles] == ["p_r0_c0", "p_r0_c1", "p_r0_c2", "p_r1_c0", "p_r1_c1", "p_r1_c2"]
    assert np.array_equal(tiles[4].image, pair.image[20:40, 20:40])
    assert np.array_equal(tiles[4].boundary, pair.boundary[20:40, 20:40])


def test_random_crop_pairs_deterministic_and_aligned():
    pairs = [_pair("a"), _pair("b", 30, 30)]
    crops = random_crop_pairs(pairs, 24, 50, seed=7)
    assert [c.name for c in crops] == [c.name for c in random_crop_pairs(pairs, 24, 50, seed=7)]
    assert {c.name.split("_")[0] for c in crops} == {"a", "b"}
    for crop in crops:
        source = pairs[0] if crop.name.startswith("a_") else pairs[1]
        y, x = (int(part[1:]) for part in crop.name.split("_")[1:])
        assert np.array_equal(crop.image, source.image[y : y + 24, x : x + 24])
        assert np.array_equal(crop.boundary, source.boundary[y : y + 24, x : x + 24])
    with pytest.raises(UserError, match="b: image 30x30 px is smaller than the 40 px patch size"):
        random_crop_pairs(pairs, 40, 5, seed=0)
