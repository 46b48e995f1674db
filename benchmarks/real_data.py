"""Does synthetic data help on real micrographs? One data set, every training recipe, one table.

Reads ../shared/data (not part of the test suite). For a real train/test split it trains, on the same
real images and with the same budget:

- ``real``: U-Net on the real training pairs only;
- ``forest``: the random-forest baseline (when ``grainforge.segment.forest`` is present);
- ``mix-1px``: U-Net on real + pix2pix-synthetic images painted on 1-px Potts sections (the old recipe);
- ``mix``: the same with the sections drawn at the real labels' line width;
- ``pretrain``: synthetic-only pre-training for the first half, real-only fine-tuning after.
- ``render``: U-Net on real + the same width-matched sections rendered by the virtual microscope
  (``grainforge.microscope``, the hard preset's random look per image; no GAN), half of each batch.
- ``mix-render``: real + both (pix2pix images and renders of the width-matched sections), a quarter each.

and prints one CSV row per recipe (MAP, ARI, boundary F1 on the real test images, training seconds),
also written to ``OUT/results.csv``. Artefacts are cached in OUT, so a rerun only does what is missing.

    python benchmarks/real_data.py --data nist-split --out runs/real-nist
    python benchmarks/real_data.py --data tbm --out runs/real-tbm --unet-iters 1500
"""

from __future__ import annotations

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP)

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from grainforge.data.io import list_images, write_csv
from grainforge.data.pairs import load_pairs
from grainforge.grainstats import mean_grain_area
from grainforge.labelwidth import ONE_PIXEL_WIDTH_PX, mean_line_width, same_width

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RECIPES = ("real", "forest", "mix-1px", "mix", "pretrain", "render", "mix-render")


def load_split(name: str, shared: Path) -> tuple[list, list]:
    """(train pairs, test pairs) of a shared data set, labels as traced (not thinned)."""
    if name == "nist-split":
        return load_pairs(shared / "nist-steel-split" / "train"), load_pairs(shared / "nist-steel-split" / "test")
    if name == "tbm":
        pairs = load_pairs(shared / "tbm", boundary_value=255)
        return [p for p in pairs if p.name.startswith("train_")], [p for p in pairs if p.name.startswith("test_")]
    raise SystemExit(f"--data {name}: use nist-split or tbm")


def write_pairs(folder: Path, pairs: list) -> Path:
    """``folder`` as a pair folder of ``pairs`` (written once; a rerun reuses it)."""
    from grainforge.data.io import write_pair

    if not (folder / "labels").is_dir():
        for pair in pairs:
            write_pair(folder, pair.name, pair.image, pair.boundary)
    return folder


def score(pred: Path, real_test: Path) -> dict:
    """Mean MAP, ARI, boundary F1 over the test images, true lines thinned (the default, docs/design.md §4.6),
    and MAP, ARI with the true lines as traced."""
    from grainforge.metrics import evaluate_folders

    metrics = {}
    for truth_lines, suffix in (("auto", ""), ("as-is", "_as_traced")):
        per_image = evaluate_folders(pred, real_test / "labels", workers=1, truth_lines=truth_lines)
        keys = ("map", "ari", "boundary_f1") if not suffix else ("map", "ari")
        metrics.update({k + suffix: float(np.mean([r[k] for r in per_image])) for k in keys})
    return metrics


def run_recipe(out: Path, recipe: str, recipes: dict, seed: int, real_train: Path, real_test: Path, tag: str = "") -> dict:
    """Train and predict one recipe with one seed (cached in OUT/rows/RECIPE_sSEED), then score it."""
    from grainforge.segment import predict, train_segmenter

    config, extras = recipes[recipe]
    folder = out / "rows" / (f"{recipe}_s{seed}" if config is None or not tag else f"{recipe}-{tag}_s{seed}")
    trained = folder / "metrics.json"  # written once predictions exist; holds the training seconds
    if config is not None and (folder / "model" / "config.yaml").is_file():
        check_cached_config(folder, config)
    if not trained.is_file():
        t0 = time.perf_counter()
        if recipe == "forest":
            from grainforge.segment import FOREST_PRESETS
            from grainforge.segment.forest import train_forest

            model = train_forest(real_train, folder / "model", FOREST_PRESETS["default"], seed=seed, progress=False)
        else:
            model = train_segmenter(real_train, folder / "model", config, extras=extras, seed=seed, device="cpu",
                                    progress=False)
        seconds = time.perf_counter() - t0
        predict(model, list_images(real_test / "images"), folder / "pred", device="cpu", progress=False)
        folder.mkdir(parents=True, exist_ok=True)
        trained.write_text(json.dumps({"train_s": round(seconds, 1)}))
    train_s = json.loads(trained.read_text())["train_s"]
    return {"recipe": folder.name.rsplit("_s", 1)[0], "seed": seed, **score(folder / "pred" / "boundaries", real_test),
            "train_s": train_s}


def check_cached_config(folder: Path, config) -> None:
    """Exit when the U-Net cached in ``folder`` was trained with another config than ``config``: rows are
    cached by name only, so a changed default (or a changed ``--unet-set`` under the same ``--tag``) would
    otherwise re-score a model the command no longer trains."""
    import yaml

    from grainforge.config import changed_fields

    saved_path = folder / "model" / "config.yaml"
    changed = [f"{key} {before} -> {now}" for key, (before, now) in
               changed_fields(type(config), yaml.safe_load(saved_path.read_text()) or {}, config, str(saved_path)).items()]
    if changed:
        raise SystemExit(f"{folder}: cached model was trained with other settings ({'; '.join(changed)}); "
                         "give this run its own --tag (with --unet-set) or move the folder away")


def centre_line_ceiling(out: Path, test: list, real_test: Path) -> dict:
    """Scores of the truth's own 1-px centre line (the line the default scoring thins it to): 1 with the
    default scoring, the ceiling of 1-px predictions when the truth is scored as traced."""
    from grainforge.data.io import write_boundary_png
    from grainforge.metrics import scoring_truth

    folder = out / "rows" / "centre-line" / "boundaries"
    for pair in test:
        write_boundary_png(folder / f"{pair.name}.png", scoring_truth(pair.boundary))
    return {"recipe": "centre-line", "seed": 0, **score(folder, real_test), "train_s": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="nist-split | tbm")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (default: %(default)s)")
    parser.add_argument("--unet-iters", type=int, default=1500)
    parser.add_argument("--style-iters", type=int, default=1500)
    parser.add_argument("--sim-size", type=int, default=64)
    parser.add_argument("--sim-mcs", type=int, default=150)
    parser.add_argument("--crop", type=int, default=256, help="section tile side, px")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation and pix2pix")
    parser.add_argument("--unet-seeds", default="0", help="comma-separated seeds of the segmenters")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--unet-set", default="", help="U-Net config overrides, e.g. crop=256,batch_size=2 (needs --tag)")
    parser.add_argument("--tag", default="", help="suffix of the U-Net rows' folders and names when --unet-set is used")
    parser.add_argument("--style-upsample", default="transpose", help="pix2pix decoder up-sampling: transpose | resize")
    args = parser.parse_args()

    from grainforge.microscope import render_label_folder
    from grainforge.potts import simulate
    from grainforge.sections import slice_run
    from grainforge.segment import SEGMENT_PRESETS
    from grainforge.style import STYLE_PRESETS, apply_style, train_style

    out = args.out
    train, test = load_split(args.data, args.shared)
    real_train, real_test = write_pairs(out / "real" / "train", train), write_pairs(out / "real" / "test", test)
    width = mean_line_width(p.boundary for p in train)
    area = mean_grain_area(real_train / "labels")
    print(f"{args.data}: {len(train)} train / {len(test)} test images; label width {width:.2f} px, "
          f"mean interior grain area {area:.0f} px")

    sim = out / "simulation"
    if not ((sim / "volume.zarr").is_dir() or (sim / "volume.npz").is_file()):  # a legacy run keeps its volume
        simulate(args.sim_size, args.sim_mcs, seed=args.seed, out=sim, progress=False)
    sections = {}
    for key, draw_width in (("1px", None), ("matched", None if same_width(width, ONE_PIXEL_WIDTH_PX) else width)):
        folder = out / f"sections-{key}"
        if not (folder / "manifest.csv").is_file():
            slice_run(sim, folder, stride=4, match_mean_area=area, crop=args.crop, boundary_width=draw_width,
                      progress=False)
        sections[key] = folder / "labels"

    style_dir = out / "style"
    if not (style_dir / "generator.pt").is_file():
        style_config = dataclasses.replace(STYLE_PRESETS["cpu-small"], upsample=args.style_upsample)
        train_style(real_train, style_config, style_dir, iters=args.style_iters, seed=args.seed,
                    device="cpu", progress=False)
    synthetic = {}
    for key, labels in sections.items():
        folder = out / f"synthetic-{key}"
        if not (folder / "manifest.csv").is_file():
            apply_style(style_dir, labels, folder, device="cpu", seed=args.seed, progress=False,
                        match_width=key == "matched")
        synthetic[key] = folder
    renders = out / "renders-matched"
    if not (renders / "run.json").is_file():
        render_label_folder(sections["matched"], renders, seed=args.seed, preset="hard", progress=False)

    unet = dataclasses.replace(SEGMENT_PRESETS["cpu-small"], iters=args.unet_iters, val_fraction=0.0)
    if args.unet_set:
        if not args.tag:
            raise SystemExit("--unet-set needs --tag (the rows are cached by name)")
        overrides = dict(item.split("=", 1) for item in args.unet_set.split(","))
        unknown = set(overrides) - {f.name for f in dataclasses.fields(unet)}
        if unknown:
            raise SystemExit(f"--unet-set: no U-Net config field {sorted(unknown)}")
        unet = dataclasses.replace(unet, **{k: type(getattr(unet, k))(v) for k, v in overrides.items()})
    recipes = {
        "forest": (None, []),
        "real": (unet, []),
        "mix-1px": (unet, [synthetic["1px"]]),
        "mix": (unet, [synthetic["matched"]]),
        "pretrain": (dataclasses.replace(unet, real_share=0.0, extra_until=0.5), [synthetic["matched"]]),
        "render": (unet, [renders]),
        "mix-render": (unet, [synthetic["matched"], renders]),
    }
    rows = [centre_line_ceiling(out, test, real_test)]
    print(f"{args.data},centre-line of the truth,as traced MAP {rows[0]['map_as_traced']:.3f} ARI {rows[0]['ari_as_traced']:.3f}")
    for seed in [int(v) for v in args.unet_seeds.split(",")]:
        for recipe in args.recipes.split(","):
            rows.append(run_recipe(out, recipe, recipes, seed, real_train, real_test, args.tag))
            row = rows[-1]
            print(f"{args.data},{row['recipe']},seed {seed},MAP {row['map']:.3f},ARI {row['ari']:.3f},"
                  f"F1 {row['boundary_f1']:.3f},as traced MAP {row['map_as_traced']:.3f} ARI {row['ari_as_traced']:.3f},"
                  f"{row['train_s']} s", flush=True)
    for row in rows:
        row["data"] = args.data
    write_csv(out / "results.csv", rows)


if __name__ == "__main__":
    main()
