"""Seeded splits and patch sampling: train/test split by image, nested real-data fractions,
random training crops and non-overlapping test tiles (paper: 2800 crops of 400 x 400 from 100
images; 1008 tiles from 36 images of 2800 x 1600).

Every function sorts the names first, so results depend on the seed and the set of names only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from grainforge.data.pairs import Pair
from grainforge.errors import UserError


def _shuffled(names: Sequence[str], seed: int) -> list[str]:
    ordered = sorted(names)
    return [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]


def train_test_split(names: Sequence[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split image names into (train, test), each sorted; ``round(test_fraction * n)`` test names.

    With 0 < test_fraction and at least two names, both sides keep at least one name.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise UserError(f"test_fraction {test_fraction}: must be in [0, 1); e.g. 0.25")
    shuffled = _shuffled(names, seed)
    n_test = int(round(test_fraction * len(shuffled)))
    if test_fraction > 0 and len(shuffled) >= 2:
        n_test = min(max(n_test, 1), len(shuffled) - 1)
    return sorted(shuffled[n_test:]), sorted(shuffled[:n_test])


def nested_fraction(names: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The first ``max(1, round(fraction * n))`` names of one seeded shuffle, sorted.

    Fractions are nested for a fixed seed: a < b gives a subset (5 % of the data inside 10 % ...).
    """
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"real fraction {fraction}: must be in (0, 1]; e.g. 0.05 for 5 %")
    if not names:
        raise UserError("real fraction: no images to take a fraction of; check the real data folder")
    shuffled = _shuffled(names, seed)
    return sorted(shuffled[: max(1, int(round(fraction * len(shuffled))))])


def grid_tiles(array: np.ndarray, size: int) -> list[np.ndarray]:
    """Non-overlapping ``size`` x ``size`` tiles of a 2D array, row-major; the remainder at the right
    and bottom edges is dropped (2800 x 1600 at 400 -> 28 tiles)."""
    height, width = array.shape[:2]
    return [array[y : y + size, x : x + size] for y in range(0, height - size + 1, size) for x in range(0, width - size + 1, size)]


def tile_pairs(pairs: Sequence[Pair], size: int) -> list[Pair]:
    """Every pair cut into non-overlapping ``size`` tiles, named ``<name>_r<row>_c<col>`` (tile indices)."""
    tiles = []
    for pair in pairs:
        _check_fits(pair, size)
        n_cols = pair.image.shape[1] // size
        for k, (image, boundary) in enumerate(zip(grid_tiles(pair.image, size), grid_tiles(pair.boundary, size))):
            tiles.append(Pair(f"{pair.name}_r{k // n_cols}_c{k % n_cols}", image, boundary))
    return tiles


def random_crop_pairs(pairs: Sequence[Pair], size: int, n: int, seed: int) -> list[Pair]:
    """``n`` random ``size`` x ``size`` crops, images drawn uniformly, positions uniform; named
    ``<name>_y<y>_x<x>``. Deterministic by seed."""
    for pair in pairs:
        _check_fits(pair, size)
    if not pairs:
        raise UserError("random crops: no image pairs given; check the real data folder")
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        pair = pairs[int(rng.integers(len(pairs)))]
        y = int(rng.integers(pair.image.shape[0] - size + 1))
        x = int(rng.integers(pair.image.shape[1] - size + 1))
        crops.append(Pair(f"{pair.name}_y{y}_x{x}", pair.image[y : y + size, x : x + size], pair.boundary[y : y + size, x : x + size]))
    return crops


def _check_fits(pair: Pair, size: int) -> None:
    if size < 1 or pair.image.shape[0] < size or pair.image.shape[1] < size:
        raise UserError(f"{pair.name}: image {pair.image.shape[1]}x{pair.image.shape[0]} px is smaller than the "
                        f"{size} px patch size; use a smaller patch/crop size")
