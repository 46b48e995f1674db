"""pix2pix style fidelity on held-out labels (issue 4, "must show" 2).

Two measures, on held-out (label, real image) pairs that neither network saw:
1. grey-level histogram distance: Wasserstein-1 between the pixel values (in [0, 1]) of the
   generated image and of the real image, against the same distance for the raw label drawn as
   an image. The label is scored both ways round (as stored, 255 = boundary, and inverted,
   grains white) and the smaller (harder to beat) distance is the reference. Target: >= 3x smaller.
2. segmentability (``grainforge.style.fidelity.unet_f1_ratio``): a small U-Net (grainforge.segment,
   cpu-small) trained on the real training pairs segments the real held-out images and the generated
   images of the same held-out labels; boundary F1 (2 px tolerance, grainforge.metrics) against the
   held-out labels. Target: F1(generated) >= 0.7 x F1(real) (``MIN_F1_RATIO``).

Data sets:
  --demo DIR   built-in demo data (``grainforge demo-data --out DIR``): train on DIR/train, judge on DIR/test.
  --nist DIR   ../shared/data/nist-steel (one 800x600 etched-steel micrograph, NIST): train on
               crops of the left 70 % of the columns, judge on the right 30 %. Reads shared data;
               everything it writes stays in --work (never commit images made from it).

    .venv/bin/python benchmarks/style_fidelity.py --demo /tmp/demo --work /tmp/fid_demo [--style-model DIR]
    .venv/bin/python benchmarks/style_fidelity.py --nist ../shared/data/nist-steel --work /tmp/fid_nist

Prints one figure per line and writes WORK/fidelity.json. ``--grid PATH`` (demo only) writes a
sample grid label | real | generated of held-out labels.
"""

from __future__ import annotations

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP)

import argparse
import time
from pathlib import Path

import numpy as np

from grainforge.data.io import read_grey, write_json, write_png
from grainforge.data.pairs import Pair, load_pairs, read_boundary
from grainforge.style import STYLE_PRESETS, load_generator, paint, train_style
from grainforge.style.apply import stem_seed
from grainforge.style.fidelity import MIN_F1_RATIO, grey_histogram, histogram_distance, unet_f1_ratio
from grainforge.style.train import sample_crops, sample_grid
from grainforge.torchutil import resolve_device

NIST_TRAIN_FRACTION = 0.7


def nist_pairs(folder: Path) -> tuple[list[Pair], list[Pair]]:
    """The NIST micrograph split by columns: left 70 % for training, right 30 % held out."""
    image = read_grey(folder / "images" / "grain_structures_steel.tif")
    boundary = read_boundary(folder / "labels" / "grain_structures_steel_mask.png", boundary_value=255)
    split = int(round(image.shape[1] * NIST_TRAIN_FRACTION))
    return ([Pair("nist_left", image[:, :split], boundary[:, :split])],
            [Pair("nist_right", image[:, split:], boundary[:, split:])])


def histogram_distances(pair: Pair, generated: np.ndarray) -> dict[str, float]:
    """Wasserstein-1 of grey levels in [0, 1]: generated vs real, label (both polarities) vs real."""
    real = grey_histogram(pair.image)
    label = pair.boundary.astype(np.float32)
    return {
        "w1_generated": histogram_distance(grey_histogram(generated), real),
        "w1_label_stored": histogram_distance(grey_histogram(label), real),
        "w1_label_inverted": histogram_distance(grey_histogram(1.0 - label), real),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo", type=Path, help="demo-data folder with train/ and test/")
    source.add_argument("--nist", type=Path, help="../shared/data/nist-steel")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for models and images")
    parser.add_argument("--style-model", type=Path, help="use this trained pix2pix instead of training one")
    parser.add_argument("--style-iters", type=int, help="pix2pix iterations (default: cpu-small's)")
    parser.add_argument("--seg-iters", type=int, help="U-Net iterations (default: cpu-small's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=Path, help="demo only: write a held-out sample grid PNG here")
    args = parser.parse_args()

    if args.demo:
        train, held_out = load_pairs(args.demo / "train"), load_pairs(args.demo / "test")
    else:
        train, held_out = nist_pairs(args.nist)
    timings = {}
    style_dir = args.style_model
    if style_dir is None:
        t0 = time.perf_counter()
        style_dir = train_style(None, STYLE_PRESETS["cpu-small"], args.work / "pix2pix", iters=args.style_iters,
                                seed=args.seed, device="auto", pairs=train, val=held_out)
        timings["pix2pix_train_s"] = time.perf_counter() - t0
    device = resolve_device("auto")
    generator, config = load_generator(style_dir, device)

    t0 = time.perf_counter()
    generated = {pair.name: paint(generator, pair.boundary, config, device=device,
                                  dropout=config.inference_dropout, seed=stem_seed(args.seed, pair.name))
                 for pair in held_out}
    timings["paint_s"] = time.perf_counter() - t0
    if args.grid:
        if not args.demo:
            parser.error("--grid is for the demo data only (never commit images made from shared data)")
        write_png(args.grid, sample_grid(generator, config, sample_crops(held_out, config.crop, 4), device, args.seed))

    distances = [histogram_distances(pair, generated[pair.name]) for pair in held_out]
    w1_gen = float(np.mean([d["w1_generated"] for d in distances]))
    w1_stored = float(np.mean([d["w1_label_stored"] for d in distances]))
    w1_inverted = float(np.mean([d["w1_label_inverted"] for d in distances]))
    w1_label = min(w1_stored, w1_inverted)
    per_image_ratio = [min(d["w1_label_stored"], d["w1_label_inverted"]) / d["w1_generated"] for d in distances]
    print(f"held-out images: {len(held_out)} ({'demo' if args.demo else 'nist-steel right 30 %'})")
    print(f"W1 grey histogram, generated vs real: {w1_gen:.4f}")
    print(f"W1 grey histogram, label vs real: {w1_stored:.4f} (255 = boundary), {w1_inverted:.4f} (inverted)")
    print(f"W1 ratio label / generated: {w1_label / w1_gen:.2f} (target >= 3; worst image {min(per_image_ratio):.2f})")

    t0 = time.perf_counter()
    f1 = unet_f1_ratio(train, held_out, generated, args.work, seed=args.seed, iters=args.seg_iters)
    timings["segment_s"] = time.perf_counter() - t0
    for tolerance in (2, 0):
        scores = f1[tolerance]
        print(f"U-Net boundary F1 ({tolerance} px), real held-out images: {scores['real']:.4f}")
        print(f"U-Net boundary F1 ({tolerance} px), generated images of the same labels: {scores['generated']:.4f}")
        print(f"F1 ({tolerance} px) ratio generated / real: {scores['ratio']:.3f}"
              + (f" (target >= {MIN_F1_RATIO})" if tolerance == 2 else " (stricter, no tolerance)"))
    write_json(args.work / "fidelity.json", {
        "dataset": "demo" if args.demo else "nist-steel", "n_held_out": len(held_out), "style_model": str(style_dir),
        "w1_generated": w1_gen, "w1_label_stored": w1_stored, "w1_label_inverted": w1_inverted,
        "w1_ratio": w1_label / w1_gen, "w1_ratio_worst_image": min(per_image_ratio),
        "f1_real": f1[2]["real"], "f1_generated": f1[2]["generated"], "f1_ratio": f1[2]["ratio"],
        "f1_tol0_real": f1[0]["real"], "f1_tol0_generated": f1[0]["generated"],
        "f1_real_per_image": f1[2]["real_per_image"], "f1_generated_per_image": f1[2]["generated_per_image"],
        "timings_s": timings,
    })


if __name__ == "__main__":
    main()
