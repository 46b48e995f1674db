"""How far is a thick hand-traced truth from its own 1-px centre line, scored as traced? (docs/design.md §4.6)

Reads ../shared/data (not part of the test suite): the tbm test labels and nist-steel-split's test label.
For each, the centre line of the truth (``data.pairs.thin_lines``; and plain ``skimage.morphology.thin``,
which pulls line ends off the image edge) is scored against the truth with ``truth_lines="as-is"``.
Prints one row per (data set, thinning): mean MAP and ARI, where a perfect score is 1.

    python benchmarks/truth_centre_line.py
"""

from __future__ import annotations

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE)

import argparse
from pathlib import Path

import numpy as np
from skimage.morphology import thin

from grainforge.data.pairs import read_boundary, thin_lines
from grainforge.metrics import evaluate_boundaries

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    sets = {"tbm": sorted((args.shared / "tbm" / "labels").glob("test_*")),
            "nist-steel-split": sorted((args.shared / "nist-steel-split" / "test" / "labels").iterdir())}
    print("data,thinning,n_images,map,ari")
    for name, files in sets.items():
        truths = [read_boundary(path, 255) for path in files]
        for label, thinning in (("thin_lines", thin_lines), ("plain thin", thin)):
            rows = [evaluate_boundaries(truth, thinning(truth), truth_lines="as-is") for truth in truths]
            print(f"{name},{label},{len(rows)},{np.mean([r['map'] for r in rows]):.3f},{np.mean([r['ari'] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
