"""grainforge.tiling.sliding_window with an identity 'network': every layout x window x pad mode
must blend the tiles back to the image exactly, at sizes below, at and above one tile."""

from __future__ import annotations

import numpy as np
import pytest

from grainforge.tiling import sliding_window


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
