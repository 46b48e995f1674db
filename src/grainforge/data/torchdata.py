"""Torch datasets for (image, boundary) pairs and the mixed mini-batch sampler (paper: 4 real + 4 synthetic).

No torchvision: crops and the 8 flips/rotations are done in numpy, then converted to tensors.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from grainforge.data.pairs import Pair
from grainforge.errors import UserError

UNTRACED = -1.0
"""Target value of the untraced pixels of sparse labels (``Pair.ignore``): the loss skips them."""


class PairCropDataset(Dataset):
    """``length`` random ``crop`` x ``crop`` patches of ``pairs``; item i is deterministic per (seed, i).

    Item i -> (image FloatTensor (1, crop, crop) in [0, 1], boundary FloatTensor (1, crop, crop) in {0, 1},
    and :data:`UNTRACED` where a sparse pair's ``ignore`` is set).
    The pair is drawn uniformly, the position uniformly; with ``augment`` one of the 8 symmetries of
    the square (rot90 k times, then an optional left-right flip) is applied to image and boundary alike.
    With ``photometric`` > 0 the image alone is also re-lit (:func:`photometric_jitter`): the etch
    contrast, illumination and noise of another micrograph of the same material.
    """

    def __init__(self, pairs: Sequence[Pair], crop: int, length: int, augment: bool = True, seed: int = 0,
                 photometric: float = 0.0):
        if not pairs:
            raise UserError("training data: no image pairs; check the data folder")
        for pair in pairs:
            if pair.image.shape[0] < crop or pair.image.shape[1] < crop:
                raise UserError(f"{pair.name}: image {pair.image.shape[1]}x{pair.image.shape[0]} px is smaller than the "
                                f"{crop} px training crop; use a smaller crop size")
        self.pairs = list(pairs)
        self.crop = int(crop)
        self.length = int(length)
        self.augment = augment
        self.photometric = float(photometric)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} crops")
        rng = np.random.default_rng([self.seed, int(index)])
        pair = self.pairs[int(rng.integers(len(self.pairs)))]
        y = int(rng.integers(pair.image.shape[0] - self.crop + 1))
        x = int(rng.integers(pair.image.shape[1] - self.crop + 1))
        image = pair.image[y : y + self.crop, x : x + self.crop]
        boundary = pair.boundary[y : y + self.crop, x : x + self.crop]
        if pair.ignore is not None:
            boundary = np.where(pair.ignore[y : y + self.crop, x : x + self.crop], UNTRACED, boundary)
        if self.augment:
            turns, flip = int(rng.integers(4)), bool(rng.integers(2))
            image, boundary = np.rot90(image, turns), np.rot90(boundary, turns)
            if flip:
                image, boundary = image[:, ::-1], boundary[:, ::-1]
        if self.photometric > 0:
            image = photometric_jitter(image, self.photometric, rng)
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]  # noqa: E731
        return as_tensor(image), as_tensor(boundary)


def photometric_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H, W) in [0, 1] re-lit at random, float32 (H, W) in [0, 1]; the boundaries stay where they are.

    At ``strength`` 1: contrast about the mean x exp(U(-0.5, 0.5)), gamma exp(U(-0.4, 0.4)), brightness
    + U(-0.1, 0.1), a linear illumination ramp of up to ±0.1 across the patch, Gaussian blur of sigma
    U(0, 1) px on half the patches and Gaussian noise of sigma U(0, 0.03); every range scales with
    ``strength``. Draws a fixed number of values from ``rng`` (deterministic per item).
    """
    from scipy.ndimage import gaussian_filter

    contrast, gamma = np.exp(rng.uniform(-0.5, 0.5) * strength), np.exp(rng.uniform(-0.4, 0.4) * strength)
    brightness, ramp_y, ramp_x = rng.uniform(-0.1, 0.1, size=3) * strength
    blur_sigma = rng.uniform(0.0, 1.0) * strength if rng.random() < 0.5 else 0.0
    noise_sigma = rng.uniform(0.0, 0.03) * strength
    out = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) ** gamma
    out = out.mean() + (out - out.mean()) * contrast + brightness
    rows, cols = np.linspace(-1.0, 1.0, out.shape[0])[:, None], np.linspace(-1.0, 1.0, out.shape[1])[None, :]
    out = out + ramp_y * rows + ramp_x * cols
    if blur_sigma > 0:
        out = gaussian_filter(out, blur_sigma)
    out = out + rng.normal(0.0, 1.0, size=out.shape) * noise_sigma
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def patch_counts(all_names: Sequence[str], patches: int) -> dict[str, int]:
    """Patches per image of a fixed set of ``patches`` spread evenly over ``all_names``: in sorted order,
    image j gets ``floor((j+1)P/n) - floor(jP/n)`` (the counts differ by at most one and sum to P)."""
    if patches < 1 or not all_names:
        raise UserError(f"patch set: {patches} patches over {len(all_names)} images; need >= 1 of each")
    n = len(all_names)
    return {name: (j + 1) * patches // n - j * patches // n for j, name in enumerate(sorted(all_names))}


def fixed_patch_set(pairs: Sequence[Pair], all_names: Sequence[str], patch: int, patches: int,
                    seed: int = 0) -> list[Pair]:
    """The paper's fixed training patch set (2800 patches of 400 x 400 px), restricted to ``pairs``.

    ``patches`` patches of ``patch`` x ``patch`` px are spread as evenly as possible over the images
    ``all_names`` (:func:`patch_counts`); patch k of an
    image sits at a position seeded by (``seed``, image name, k). ``pairs`` (a subset of those
    images, e.g. a real fraction) get exactly their own patches, so a fraction of the images is
    (to rounding) the same fraction of one fixed set, and a smaller fraction's patches are a subset
    of a larger one's. Returns one Pair per patch, named ``<image>_p<k>``, whose arrays are views.
    """
    if patch < 1:
        raise UserError(f"patch {patch}: must be >= 1 px")
    counts = patch_counts(all_names, patches)
    found = []
    for pair in pairs:
        if pair.name not in counts:
            raise UserError(f"{pair.name}: not among the images the patch set is spread over")
        height, width = pair.image.shape[:2]
        if height < patch or width < patch:
            raise UserError(f"{pair.name}: image {width}x{height} px is smaller than the {patch} px patch; "
                            "use a smaller patch or larger images")
        for k in range(counts[pair.name]):
            rng = np.random.default_rng([seed, zlib.crc32(pair.name.encode()), k])
            y, x = int(rng.integers(height - patch + 1)), int(rng.integers(width - patch + 1))
            found.append(Pair(f"{pair.name}_p{k:04d}", pair.image[y:y + patch, x:x + patch],
                              pair.boundary[y:y + patch, x:x + patch]))
    return found


class MixedBatches:
    """Infinite mini-batches with exactly ``counts[name]`` items from each named source, concatenated in
    the order of ``sources``: (images (B, 1, c, c), boundaries (B, 1, c, c)), B = sum of counts.

    Each source is read in epochs of a seeded permutation of its indices (every item once per epoch).
    Iterating again restarts the same sequence. Use ``itertools.islice(batches, n)``.
    """

    def __init__(self, sources: dict[str, Dataset], counts: dict[str, int], seed: int = 0):
        unknown = sorted(set(counts) - set(sources))
        if unknown:
            raise UserError(f"batch counts name unknown source(s) {', '.join(unknown)}; sources are {', '.join(sources)}")
        if any(int(c) < 0 for c in counts.values()) or sum(counts.values()) <= 0:
            raise UserError(f"batch counts {counts}: need non-negative counts with a positive total")
        self.sources = {name: ds for name, ds in sources.items() if counts.get(name, 0) > 0}
        for name, dataset in self.sources.items():
            if len(dataset) == 0:
                raise UserError(f"batch source {name!r} is empty but {counts[name]} items per batch were asked for")
        self.counts = {name: int(counts[name]) for name in self.sources}
        self.seed = int(seed)

    def _indices(self, source_number: int, size: int) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, source_number])
        while True:
            yield from rng.permutation(size).tolist()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        streams = {name: self._indices(k, len(ds)) for k, (name, ds) in enumerate(self.sources.items())}
        while True:
            items = [self.sources[name][next(streams[name])] for name in self.sources for _ in range(self.counts[name])]
            yield torch.stack([im for im, _ in items]), torch.stack([b for _, b in items])
