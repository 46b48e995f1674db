"""Virtual microscope: speed of `grainforge demo-data`, and its grey-level statistics beside a real
etched-ferrite micrograph (reads ../shared/data/nist-steel when present; the test suite never does).

Run: .venv/bin/python benchmarks/demo_data.py [--n 40] [--size 512] [--preset hard|easy|random]
Prints one figure per line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from grainforge.data.io import read_grey
from grainforge.data.pairs import read_boundary
from grainforge.grains import boundary_from_ids
from grainforge.microscope import make_demo_data, render, voronoi_grains

NIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "nist-steel"


def grey_stats(image: np.ndarray, boundary: np.ndarray) -> tuple[float, float]:
    """(median of pixels >= 4 px from any boundary, median of the darkest pixel in each 3 x 3 boundary window)."""
    far = ndimage.distance_transform_edt(~boundary) >= 4
    line_core = ndimage.minimum_filter(image, size=3)[boundary]
    return float(np.median(image[far])), float(np.median(line_core))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--preset", default="hard", help="style preset of the timed data set (the grey statistics use the defaults)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0, cpu0 = time.perf_counter(), time.process_time()
        make_demo_data(tmp, args.n, args.size, seed=0, preset=args.preset, progress=False)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    print(f"demo_data_{args.preset}_{args.n}x{args.size}px_wall_s {seconds:.2f}")
    print(f"demo_data_{args.preset}_{args.n}x{args.size}px_cpu_s {cpu_seconds:.2f}")
    print(f"demo_data_wall_s_per_image {seconds / args.n:.3f}")

    t0 = time.perf_counter()
    ids = voronoi_grains(args.size, seed=1)
    t1 = time.perf_counter()
    render(ids, seed=1)
    t2 = time.perf_counter()
    print(f"voronoi_grains_{args.size}px_s {t1 - t0:.3f}")
    print(f"render_{args.size}px_s {t2 - t1:.3f}")

    stats = [grey_stats(render(ids, seed=s), boundary_from_ids(ids)) for s in range(5)]
    demo_grain, demo_line = np.mean(stats, axis=0)
    print(f"demo_grain_median {demo_grain:.3f}")
    print(f"demo_boundary_core_median {demo_line:.3f}")
    image_path = NIST / "images" / "grain_structures_steel.tif"
    if image_path.is_file():
        real = read_grey(image_path)
        label = read_boundary(NIST / "labels" / "grain_structures_steel_mask.png", boundary_value=255, thin=True)
        real_grain, real_line = grey_stats(real, label)
        print(f"nist_grain_median {real_grain:.3f}")
        print(f"nist_boundary_core_median {real_line:.3f}")
        print(f"grain_contrast_ratio_demo_vs_nist {(demo_grain - demo_line) / (real_grain - real_line):.2f}")


if __name__ == "__main__":
    main()
