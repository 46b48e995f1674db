import numpy as np

from grainforge.grains import boundary_from_ids, label_grains, touches_border


def test_boundary_from_ids_separates_every_pair_of_ids():
    rng = np.random.default_rng(0)
    ids = np.kron(rng.integers(0, 5, size=(8, 8)), np.ones((4, 4), dtype=int))
    labels = label_grains(boundary_from_ids(ids))
    for lab in range(1, labels.max() + 1):
        assert len(np.unique(ids[labels == lab])) == 1


def test_diagonal_gap_does_not_leak():
    boundary = np.zeros((5, 5), dtype=bool)
    boundary[np.arange(5), np.arange(5)] = True  # a diagonal 1-pixel line
    assert label_grains(boundary).max() == 2


def test_touches_border_flags():
    labels = np.zeros((5, 5), dtype=np.int32)
    labels[2, 2] = 1
    labels[0, 0] = 2
    assert touches_border(labels).tolist() == [False, False, True]
