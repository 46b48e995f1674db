"""grainforge.tiling: both tile layouts and both windows, and sliding_window with an identity
'network' (every layout x window x pad mode must blend the tiles back to the image exactly, at
sizes below, at and above one tile)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grainforge.tiling import aligned_layout, aligned_origins, hann_window, ramp_window, sliding_window, spread_starts


@pytest.mark.parametrize("layout", ["spread", "aligned"])
@pytest.mark.parametrize("window", ["ramp", "hann"])
@pytest.mark.parametrize("pad_mode", ["reflect", "symmetric"])
@pytest.mark.parametrize("shape", [(7, 50), (32, 32), (45, 101)])
def test_identity_predict_blends_back_to_the_image(layout, window, pad_mode, shape):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    calls = []

    def identity(tiles):
        calls.append(tuple(tiles.shape))
        return tiles[:, 0]

    got = sliding_window(identity, image, 32, 0.25, multiple=8, batch=3, window=window, pad_mode=pad_mode,
                         layout=layout)
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_allclose(got, image, atol=1e-6)
    assert all(n <= 3 and h % 8 == w % 8 == 0 for n, _, h, w in calls)
    if shape == (45, 101) and layout == "spread":
        assert sum(n for n, *_ in calls) == 2 * 4  # starts 0, 13 down and 0, 23, 46, 69 across


def test_unknown_window_or_layout_is_refused():
    image = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="window 'box'"):
        sliding_window(lambda t: t[:, 0], image, 8, 0.25, window="box")
    with pytest.raises(ValueError, match="layout 'grid'"):
        sliding_window(lambda t: t[:, 0], image, 8, 0.25, layout="grid")


def test_aligned_layout_keeps_the_pooling_grid():
    for length in (1, 100, 256, 1600, 2800):
        tile, stride, margin, padded = aligned_layout(length, 256, 0.25, 16)
        assert tile % 16 == stride % 16 == margin % 16 == 0
        assert padded >= length + 2 * margin or tile < 256
        origins = aligned_origins(padded, tile, stride)
        assert origins[-1] + tile == padded


def test_hann_window_is_positive_symmetric_and_peaks_in_the_middle():
    w = hann_window(8, 6)
    assert (w > 0).all()
    assert torch.allclose(w, w.flip(0)) and torch.allclose(w, w.flip(1))
    assert w[3:5, 2:4].min() == w.max()


def test_spread_starts_overlap_and_ramp_window_rises_over_the_overlap():
    for length in (32, 33, 100, 400):
        starts = spread_starts(length, 32, 0.25)
        assert starts[0] == 0 and starts[-1] == length - 32
        assert all(b - a <= 24 for a, b in zip(starts, starts[1:]))  # overlap >= 8 px
    window = ramp_window(32, 32, 0.25)
    assert window.min() > 0 and window.max() == 1.0 and window[16, 16] == 1.0
    # the ramp spans the 8-px overlap: 1/9, 2/9, ... at the edge, 1 from the 9th pixel in
    assert window[16, :9].tolist() == pytest.approx([k / 9 for k in range(1, 10)])
