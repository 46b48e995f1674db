import itertools

import numpy as np
import pytest
import torch

from grainforge.data.pairs import Pair
from grainforge.data.torchdata import MixedBatches, PairCropDataset, photometric_jitter
from grainforge.errors import UserError


def _asymmetric_pair(size=16, name="p"):
    """A boundary pattern with no symmetry, and an image that is a fixed function of it."""
    rng = np.random.default_rng(0)
    boundary = rng.random((size, size)) < 0.3
    return Pair(name, (0.2 + 0.6 * boundary).astype(np.float32), boundary)


def test_items_shapes_ranges_and_determinism():
    dataset = PairCropDataset([_asymmetric_pair(40)], crop=16, length=10, seed=3)
    image, boundary = dataset[4]
    assert image.shape == boundary.shape == (1, 16, 16)
    assert image.dtype == boundary.dtype == torch.float32
    assert set(boundary.unique().tolist()) <= {0.0, 1.0} and 0 <= image.min() and image.max() <= 1
    again = PairCropDataset([_asymmetric_pair(40)], crop=16, length=10, seed=3)[4]
    assert torch.equal(image, again[0]) and torch.equal(boundary, again[1])
    other = PairCropDataset([_asymmetric_pair(40)], crop=16, length=10, seed=4)
    assert any(not torch.equal(dataset[i][1], other[i][1]) for i in range(10))
    with pytest.raises(IndexError):
        dataset[10]


def test_augmentation_keeps_alignment_and_covers_the_8_symmetries():
    pair = _asymmetric_pair(16)
    dataset = PairCropDataset([pair], crop=16, length=200, augment=True, seed=0)
    symmetries = [np.rot90(pair.boundary, k) for k in range(4)]
    symmetries += [s[:, ::-1] for s in symmetries]
    seen = set()
    for i in range(len(dataset)):
        image, boundary = (t[0].numpy() for t in dataset[i])
        assert np.allclose(image, 0.2 + 0.6 * boundary)  # image and label moved together
        matches = [k for k, s in enumerate(symmetries) if np.array_equal(boundary, s)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))
    plain = PairCropDataset([pair], crop=16, length=5, augment=False)
    assert all(np.array_equal(plain[i][1][0].numpy(), pair.boundary) for i in range(5))


def test_photometric_jitter_relights_the_image_only():
    """Same crops and labels as without it; images re-lit (not copied), still in [0, 1], deterministic per
    item; a ramp of grey levels keeps its order under contrast and gamma alone (strength small enough that
    the noise cannot reorder neighbours 0.1 apart)."""
    pair = _asymmetric_pair(40)
    plain = PairCropDataset([pair], crop=16, length=20, seed=5)
    relit = PairCropDataset([pair], crop=16, length=20, seed=5, photometric=1.0)
    changed = 0
    for i in range(20):
        (image, boundary), (image_relit, boundary_relit) = plain[i], relit[i]
        assert torch.equal(boundary, boundary_relit)
        assert 0 <= image_relit.min() and image_relit.max() <= 1
        assert torch.equal(image_relit, PairCropDataset([pair], crop=16, length=20, seed=5, photometric=1.0)[i][0])
        changed += float((image_relit - image).abs().mean()) > 0.01
        # boundary pixels (0.8) stay brighter than grain pixels (0.2) on average, blur of this 1-px pattern included
        assert image_relit[boundary > 0].mean() > image_relit[boundary == 0].mean() + 0.05
    assert changed >= 18
    ramp = np.tile(np.linspace(0.05, 0.95, 10, dtype=np.float32), (4, 1))
    jittered = photometric_jitter(ramp, 0.05, np.random.default_rng(0))
    assert np.all(np.diff(jittered, axis=1) > 0)


def test_crop_larger_than_image_is_a_user_error():
    with pytest.raises(UserError, match="p: image 16x16 px is smaller than the 32 px training crop"):
        PairCropDataset([_asymmetric_pair(16)], crop=32, length=4)


def _constant(value, n=6):
    pairs = [Pair(f"c{i}", np.full((8, 8), value, np.float32), np.zeros((8, 8), bool)) for i in range(n)]
    return PairCropDataset(pairs, crop=8, length=n, augment=False)


class _IndexDataset(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((1, 2, 2), float(i)), torch.zeros((1, 2, 2))


def test_mixed_batches_exact_counts_in_order():
    batches = MixedBatches({"real": _constant(0.0), "synthetic": _constant(1.0)}, {"real": 4, "synthetic": 4}, seed=0)
    for images, boundaries in itertools.islice(batches, 5):
        assert images.shape == boundaries.shape == (8, 1, 8, 8)
        assert images[:4].eq(0).all() and images[4:].eq(1).all()
    uneven = MixedBatches({"real": _constant(0.0), "synthetic": _constant(1.0)}, {"real": 1, "synthetic": 7})
    images, _ = next(iter(uneven))
    assert images.flatten(1).mean(1).tolist() == [0.0] + [1.0] * 7
    real_only = MixedBatches({"real": _constant(0.0), "synthetic": _constant(1.0)}, {"real": 8, "synthetic": 0})
    assert next(iter(real_only))[0].eq(0).all()


def test_mixed_batches_deterministic_epochs():
    sources = {"a": _IndexDataset(10), "b": _IndexDataset(3)}
    batches = MixedBatches(sources, {"a": 5, "b": 3}, seed=1)
    first = [b[0][:, 0, 0, 0].tolist() for b in itertools.islice(batches, 4)]
    second = [b[0][:, 0, 0, 0].tolist() for b in itertools.islice(batches, 4)]
    assert first == second  # iterating again restarts the same sequence
    a_items = [v for batch in first for v in batch[:5]]
    assert sorted(a_items[:10]) == list(range(10)) and sorted(a_items[10:20]) == list(range(10))  # epochs
    b_items = [v for batch in first for v in batch[5:]]
    assert all(sorted(b_items[k : k + 3]) == [0, 1, 2] for k in range(0, 12, 3))
    other = [b[0][:, 0, 0, 0].tolist() for b in itertools.islice(MixedBatches(sources, {"a": 5, "b": 3}, seed=2), 4)]
    assert other != first


def test_mixed_batches_bad_counts():
    with pytest.raises(UserError, match="unknown source"):
        MixedBatches({"real": _constant(0.0)}, {"sim": 4})
    with pytest.raises(UserError, match="positive total"):
        MixedBatches({"real": _constant(0.0)}, {"real": 0})
