"""Golden outputs of both tiled-inference stages: ``style.apply.paint`` (ramp window, spread tiles,
symmetric pad) and ``segment.inference.tiled_probability`` (Hann window, aligned tiles, reflect
margin) must give bit-identical arrays to those in ``golden/tiling.npz``, written by the code as it
was before both were moved onto ``grainforge.tiling.sliding_window`` (commit 9677ead). Small seeded
networks, image sizes below one tile, equal to it, and non-multiples of it. Bit-identity is
checked on one CPU thread; another CPU family may round a convolution differently (then
regenerate the file from commit 9677ead with ``paint_outputs`` and ``segment_outputs``)."""

from __future__ import annotations

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP)

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from grainforge.segment.inference import tiled_probability
from grainforge.segment.network import UNet
from grainforge.style import StyleConfig, paint
from grainforge.style.networks import UnetGenerator

GOLDEN = Path(__file__).parent / "golden" / "tiling.npz"
STYLE = StyleConfig(crop=64, ngf=4, ndf=4, apply_overlap=0.25, apply_batch=3)
STYLE_SHAPES = [(10, 12), (20, 90), (64, 64), (77, 100), (150, 70)]
SEGMENT_SHAPES = [(5, 9), (37, 150), (64, 64), (90, 70), (150, 230)]
SEGMENT_TILE, SEGMENT_OVERLAP, SEGMENT_BATCH = 64, 0.25, 3


def _amplified(network: torch.nn.Module, gain: float) -> torch.nn.Module:
    """The network (eval mode) with every conv weight x ``gain``: a freshly initialised net's output is
    nearly flat, which would hide a wrong blend; amplified weights make every pixel count."""
    with torch.no_grad():
        for parameter in network.parameters():
            if parameter.dim() == 4:
                parameter.mul_(gain)
    return network.eval()


def _generator() -> UnetGenerator:
    torch.manual_seed(0)
    return _amplified(UnetGenerator(6, ngf=4, dropout=0.5), 2.0)


def _boundary(shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(shape[0] * 1000 + shape[1]).random(shape) > 0.8


def _image(shape: tuple[int, int]) -> np.ndarray:
    noise = np.random.default_rng(shape[0] * 1000 + shape[1]).random(shape)
    return ndimage.gaussian_filter(noise, 0.7).astype(np.float32)


def paint_outputs() -> dict[str, np.ndarray]:
    """paint() of each style shape, dropout off and on (seeded)."""
    generator, cpu, out = _generator(), torch.device("cpu"), {}
    for shape in STYLE_SHAPES:
        for dropout in (False, True):
            key = f"paint_{shape[0]}x{shape[1]}_{'on' if dropout else 'off'}"
            out[key] = paint(generator, _boundary(shape), STYLE, device=cpu, dropout=dropout, seed=7)
    return out


def segment_outputs() -> dict[str, np.ndarray]:
    """tiled_probability() of each segment shape with a seeded UNet(width=4, depth=2)."""
    torch.manual_seed(0)
    network = _amplified(UNet(width=4, depth=2), 3.0)
    return {f"segment_{h}x{w}": tiled_probability(network, _image((h, w)), SEGMENT_TILE, SEGMENT_OVERLAP,
                                                   tile_batch=SEGMENT_BATCH)
            for h, w in SEGMENT_SHAPES}


@pytest.fixture(scope="module")
def golden() -> Iterator[dict[str, np.ndarray]]:
    """The golden arrays, with torch on one thread while the module runs (a convolution's float
    rounding depends on how many threads split it; the file was written with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with np.load(GOLDEN) as data:
        yield dict(data)
    torch.set_num_threads(threads)


def _assert_bit_identical(got: dict[str, np.ndarray], golden: dict[str, np.ndarray], prefix: str) -> None:
    """Every golden case of ``prefix`` was computed, each equal to the last bit, and none is flat."""
    assert sorted(got) == sorted(k for k in golden if k.startswith(prefix))
    for key, array in got.items():
        assert array.dtype == np.float32 and array.shape == golden[key].shape, key
        np.testing.assert_array_equal(array, golden[key], err_msg=key)
        assert golden[key].std() > 0.05, key


def test_paint_is_bit_identical_to_golden(golden):
    _assert_bit_identical(paint_outputs(), golden, "paint_")
    # dropout changes the pixels
    assert all(np.abs(golden[f"paint_{h}x{w}_on"] - golden[f"paint_{h}x{w}_off"]).max() > 0.01 for h, w in STYLE_SHAPES)


def test_segment_is_bit_identical_to_golden(golden):
    _assert_bit_identical(segment_outputs(), golden, "segment_")
