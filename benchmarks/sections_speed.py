"""Sections and grain statistics speed on 400 x 400 images (docs/design.md §6, §3.4).

Synthetic input, no data files needed: a Voronoi grain volume (--size^3 voxels, ~30 px grains in
section) cut into sections and zoomed to 400 x 400.

Figures (one per line):
- zoom:      smooth zoom (Gaussian-weighted id vote, numba) of a section to 400 x 400, images/s;
             reference in the same run: nearest-neighbour upsampling + skimage's rank majority
             filter over a disk of radius zoom/2 (the textbook mode filter), with the ratio.
- grains:    grain_table (areas, diameters, edge counts) of a 400 x 400 boundary map, images/s.
- slice:     slice_run end to end (zoom, relabel, boundary, PNG + TIFF writes, manifest), images/s.

    .venv/bin/python benchmarks/sections_speed.py [--size 48] [--images 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from skimage.filters.rank import majority
from skimage.morphology import disk

from grainforge import grainstats, sections
from grainforge.data.io import write_npz


def voronoi_volume(size: int, seed: int = 0) -> np.ndarray:
    points = np.random.default_rng(seed).uniform(0, size, (size**3 // 150, 3))
    grid = np.stack(np.meshgrid(*[np.arange(size) + 0.5] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    return cKDTree(points).query(grid)[1].reshape(size, size, size).astype(np.uint32)


def rate(function, items) -> float:
    start = time.perf_counter()
    for item in items:
        function(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    volume = voronoi_volume(args.size)
    zoom = 400 / args.size
    planes = [sections.relabel(ids) for _, ids in sections.iter_sections(volume, "z")][: args.images]
    sections.zoom_ids(planes[0], zoom)  # compile
    fast = rate(lambda ids: sections.zoom_ids(ids, zoom), planes)
    footprint = disk(max(1, round(zoom / 2)))
    reference = rate(lambda ids: majority(np.kron(ids, np.ones((round(zoom),) * 2)).astype(np.uint16), footprint),
                     planes)
    print(f"zoom 400x400 (from {args.size}^2, zoom {zoom:.2f}): {fast:.1f} images/s; "
          f"reference nearest+majority(disk r={max(1, round(zoom / 2))}): {reference:.2f} images/s; ratio {fast / reference:.1f}x")
    boundaries = [sections.section_labels(sections.zoom_ids(ids, zoom))[1] for ids in planes]
    print(f"grain_table 400x400: {rate(grainstats.grain_table, boundaries):.1f} images/s "
          f"({np.mean([len(grainstats.grain_table(b)) for b in boundaries[:3]]):.0f} grains per image)")
    with tempfile.TemporaryDirectory() as tmp:
        write_npz(Path(tmp) / "run" / "volume.npz", ids=volume)
        start = time.perf_counter()
        rows = sections.slice_run(Path(tmp) / "run", Path(tmp) / "out", axes="z", stride=max(1, args.size // args.images),
                                  zoom=zoom, progress=False)
        print(f"slice_run end to end, 400x400 with writes: {len(rows) / (time.perf_counter() - start):.1f} images/s")


if __name__ == "__main__":
    main()
