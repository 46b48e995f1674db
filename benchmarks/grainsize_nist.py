"""Mean lineal intercept on NIST's etched-steel micrograph: grainforge.grainsize against NIST's method.

Reads ../shared/data/nist-steel (not part of the test suite): the hand-traced boundary mask of the
800 x 600 micrograph at 0.2252 um/px. NIST's grain-size-analysis-tools (usnistgov/grain-size-analysis-tools,
``ex_grain_intercept/optical_etched/count_intersects_line_grid.py``) measures it by rotating the
boundary image to 0, 45, 90, 135 and 180 degrees (bilinear, re-thresholded at 128), taking every
60th row, and averaging the lengths of the grain-pixel runs that lie between two boundary pixels
(runs of 2 px or less dropped, runs cut by the image edge not counted). That method is written here
again from its description (nothing copied) as ``nist_line_grid``. grainforge counts intersections
P on a line grid and reports ℓ̄ = L / P (docs/design.md §3.6).

Both run on the mask as traced (2-3 px lines) and on its 1-pixel skeleton. The script prints one
row per (method, mask) and the ratio of each mean intercept to grainforge's on the skeleton, then
the seconds grainforge takes per field.

    python benchmarks/grainsize_nist.py
"""

from __future__ import annotations

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE)

import argparse
import time
from pathlib import Path

import numpy as np

from grainforge.data.pairs import read_boundary
from grainforge.grainsize import astm_g_from_grains_per_mm2, astm_g_from_mean_intercept, field_grain_size
from grainforge.grainstats import label_grains_min_area

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
UM_PER_PX = 0.2252  # 222 px = 50 um (the NIST repository's readme)
NIST_ANGLES = (0.0, 45.0, 90.0, 135.0, 180.0)
NIST_ROW_STEP = 60


def grain_runs(row: np.ndarray) -> np.ndarray:
    """Lengths of the runs of grain pixels (False) that have a boundary pixel (True) on both sides."""
    edges = np.flatnonzero(np.diff(row.astype(np.int8)))  # index before each change
    starts = edges[row[edges]] + 1  # boundary -> grain
    ends = edges[~row[edges]] + 1  # grain -> boundary
    if starts.size == 0 or ends.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = ends[ends > starts[0]]
    n = min(starts.size, ends.size)
    return ends[:n] - starts[:n]


def nist_line_grid(boundary: np.ndarray) -> tuple[float, int]:
    """NIST's rotated-row method: (mean run length in px, number of runs)."""
    from skimage.transform import rotate

    diagonal = int(np.ceil(np.hypot(*boundary.shape)))
    pad = int(np.ceil(1.1 * (diagonal - min(boundary.shape)) * 0.5))
    padded = np.pad(boundary.astype(np.float64), pad)
    runs = []
    for angle in NIST_ANGLES:
        turned = padded if angle == 0 else rotate(padded, angle, order=1, resize=False)
        turned = turned >= 0.5
        for r in range(0, turned.shape[0], NIST_ROW_STEP):
            lengths = grain_runs(turned[r])
            runs.append(lengths[lengths > 2])
    runs = np.concatenate(runs)
    return float(runs.mean()), int(runs.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "nist-steel" / "labels" / "grain_structures_steel_mask.png")
    args = parser.parse_args()
    masks = {"traced (2-3 px)": read_boundary(args.data, 255), "skeleton (1 px)": read_boundary(args.data, 255, thin=True)}
    print("method,mask,mean_intercept_px,mean_intercept_um,G_intercept,count,ratio_to_grainforge_skeleton")
    rows = []
    for name, boundary in masks.items():
        start = time.perf_counter()
        labels = label_grains_min_area(boundary)
        ours = field_grain_size(labels, UM_PER_PX, angles_deg=(0, 45, 90, 135), line_spacing_px=NIST_ROW_STEP)
        seconds = time.perf_counter() - start
        rows.append(("grainforge lines", name, ours.mean_intercept / UM_PER_PX, ours.n_intersections))
        rows.append(("grainforge circles", name, ours.circle_mean_intercept / UM_PER_PX, ours.circles.count))
        rows.append(("NIST rotated rows", name, *nist_line_grid(boundary)))
        print(f"# {name}: grainforge {seconds:.2f} s per field; planimetric {ours.planimetric['n_weighted']:g} grains, "
              f"{ours.grains_per_mm2:.0f} /mm2, G {astm_g_from_grains_per_mm2(ours.grains_per_mm2):.2f}; "
              f"anisotropy {ours.anisotropy:.3f}; ℓ(θ) um: "
              + ", ".join(f"{a:g}°={ours.intercept_at(a):.2f}" for a in ours.directions))
    reference = next(r[2] for r in rows if r[0] == "grainforge lines" and r[1].startswith("skeleton"))
    for method, mask, px, count in rows:
        um = px * UM_PER_PX
        print(f"{method},{mask},{px:.2f},{um:.3f},{astm_g_from_mean_intercept(um * 1e-3):.2f},{count:g},{px / reference:.3f}")


if __name__ == "__main__":
    main()
