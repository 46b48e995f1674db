"""pix2pix speed: generated 400x400 images per second (tiled apply) and training iterations per second,
for the cpu-small and paper configs, on this machine.

    .venv/bin/python benchmarks/style_speed.py [--device cpu|cuda|auto] [--seconds 20]

Prints one figure per line. Weights are random (speed does not depend on them); dropout on, as
``grainforge style apply`` runs by default. The paper (docs/design.md §9.2, Table 1) quotes 0.1 s per
400x400 synthetic image on a 2019 GPU, i.e. 10 images/s: each images/s line gives the ratio to that.
Reads no data.
"""

from __future__ import annotations

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP)

import argparse
import time

import numpy as np
import torch

from grainforge.grains import boundary_from_ids
from grainforge.style import STYLE_PRESETS, paint
from grainforge.style.networks import to_signed
from grainforge.style.train import Pix2Pix
from grainforge.torchutil import resolve_device

PAPER_IMAGES_PER_S = 10.0  # 0.1 s per 400x400 image (paper, GPU)


def voronoi_boundary(size: int, n_grains: int, seed: int) -> np.ndarray:
    """1-px boundary map (size x size) of a Voronoi tessellation with ``n_grains`` cells."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    points = rng.uniform(0, size, (n_grains, 2))
    yy, xx = np.mgrid[:size, :size]
    ids = cKDTree(points).query(np.stack([yy.ravel(), xx.ravel()], 1))[1].reshape(size, size)
    return boundary_from_ids(ids)


def timed(run, budget_s: float, min_repeats: int = 2) -> float:
    """Calls per second of ``run()`` after one warm-up call, over at least ``min_repeats`` calls and ``budget_s``."""
    run()
    count, start = 0, time.perf_counter()
    while count < min_repeats or time.perf_counter() - start < budget_s:
        run()
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget per figure")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    boundary = voronoi_boundary(400, 190, seed=0)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}")
    for name in ("cpu-small", "paper"):
        config = STYLE_PRESETS[name]
        model = Pix2Pix(config, device)

        def paint_one() -> None:
            paint(model.generator, boundary, config, device=device, dropout=True, seed=0)
            if device.type == "cuda":
                torch.cuda.synchronize()

        rate = timed(paint_one, args.seconds)
        print(f"{name}: generated 400x400 images/s = {rate:.3f} ({1 / rate:.3f} s/image; "
              f"ratio to the paper's GPU 10 images/s = {rate / PAPER_IMAGES_PER_S:.3f})")

        label = to_signed((torch.rand(config.batch_size, 1, config.crop, config.crop) > 0.9).float()).to(device)
        image = to_signed(torch.rand(config.batch_size, 1, config.crop, config.crop)).to(device)

        def train_step() -> None:
            model.step(label, image)
            if device.type == "cuda":
                torch.cuda.synchronize()

        rate = timed(train_step, args.seconds)
        print(f"{name}: training iterations/s = {rate:.3f} (batch {config.batch_size} x {config.crop} px crops; "
              f"{rate * config.batch_size:.2f} crops/s)")


if __name__ == "__main__":
    main()
