"""`grainforge segment train` / `grainforge segment predict`: micrograph -> grain boundaries with a U-Net
or the random-forest baseline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("train")
def train(
    real: Path | None = typer.Option(None, "--real", help="Real pairs: folder with images/ + labels/ (same stems), or an .h5 file."),
    real_fraction: float = typer.Option(1.0, "--real-fraction", help="Nested seeded fraction of the real training images, in [0, 1]."),
    extra: list[Path] = typer.Option([], "--extra", help="Extra pairs (synthetic, simulated), repeatable; U-Net: half of each "
                                                         "batch, split evenly; forest: sampled like the real images."),
    method: str = typer.Option("unet", "--method", help="unet | forest (random-forest pixel classifier, a baseline trained in seconds)."),
    config: str | None = typer.Option(None, "--config", help="Preset (unet: cpu-small | paper, default cpu-small; forest: default), "
                                                             "or a YAML file (may start with 'base: PRESET')."),
    out: Path = typer.Option(..., "--out", help="Model folder: config.yaml, run.json and best.pt, checkpoint.pt, log.csv (unet) "
                                                 "or forest.skops (forest)."),
    iters: int | None = typer.Option(None, "--iters", help="U-Net training iterations (overrides the config)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the init, the split, the fraction and the crops (forest: pixel sample and trees)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda (U-Net only)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt (same config and --iters; U-Net only)."),
    val: Path | None = typer.Option(None, "--val", help="Validation pairs (default: hold out part of --real when it has "
                                                        "enough images; U-Net only)."),
    ignore_value: str | None = typer.Option(None, "--ignore-value", help="Grey level (1..254) of untraced pixels in sparse "
                                                                       "labels: they add nothing to training (default 128; "
                                                                       "U-Net: the config's ignore_value); none: fully traced."),
) -> None:
    """Train a U-Net (keeps the best checkpoint by validation MAP) or a random forest on real (+ extra) image/label pairs."""
    from rich.console import Console

    from grainforge.config import load_config
    from grainforge.data.pairs import DEFAULT_IGNORE_VALUE, parse_ignore_value
    from grainforge.errors import UserError
    from grainforge.segment.config import FOREST_PRESETS, SEGMENT_PRESETS, ForestConfig, SegmentConfig

    if method == "forest":
        unet_only = [flag for flag, given in (("--iters", iters is not None), ("--resume", resume), ("--val", val is not None))
                     if given]
        if unet_only:
            raise UserError(f"{unet_only[0]}: only for --method unet; the forest trains in one pass on all given images")
        forest_config = load_config(ForestConfig, config or "default", FOREST_PRESETS)
        from grainforge.segment.forest import FOREST_FILE, train_forest

        model_dir = train_forest(real, out, forest_config, real_fraction=real_fraction, seed=seed, extras=extra,
                                 ignore_value=DEFAULT_IGNORE_VALUE if ignore_value is None else parse_ignore_value(ignore_value))
        Console().print(f"forest model: [bold]{model_dir / FOREST_FILE}[/]  (run record: {model_dir / 'run.json'})")
        return
    if method != "unet":
        raise UserError(f"--method {method!r}: must be unet or forest")
    segment_config = load_config(SegmentConfig, config or "cpu-small", SEGMENT_PRESETS)  # before importing torch: fast errors
    if ignore_value is not None:
        segment_config = dataclasses.replace(segment_config, ignore_value=parse_ignore_value(ignore_value))
    from grainforge.data.io import read_csv
    from grainforge.segment.train import train_segmenter

    model_dir = train_segmenter(real, out, segment_config, real_fraction=real_fraction, extras=extra, iters=iters,
                                seed=seed, device=device, resume=resume, val=val)
    last = read_csv(model_dir / "log.csv")[-1]
    Console().print(f"U-Net model: [bold]{model_dir / 'best.pt'}[/]  (iteration {last['iteration']}, "
                    f"loss {float(last['loss']):.4f}, val MAP {float(last['val_map']):.3f}, val ARI {float(last['val_ari']):.3f}; "
                    f"log: {model_dir / 'log.csv'})")


@app.command("predict")
def predict(
    model_dir: Path = typer.Argument(..., help="Model folder written by `grainforge segment train` "
                                               "(U-Net or forest; or a .pt / .skops file)."),
    inputs: list[Path] = typer.Argument(..., help="Micrograph files and/or folders of them (any size)."),
    out: Path = typer.Option(..., "--out", help="Writes boundaries/, labels/, probabilities/, overlays/, grains/, summary.csv."),
    um_per_px: float | None = typer.Option(None, "--um-per-px", help="Pixel size in micrometres (default: each TIFF's resolution, "
                                                                     "ImageJ or OME metadata): adds areas in um^2 and ASTM E112 G."),
    threshold_only: bool = typer.Option(False, "--threshold-only",
                                        help="Plain thresholded boundaries, no watershed closing (for comparison)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda."),
) -> None:
    """Segment micrographs: closed 1-pixel boundaries, grain label maps, grain tables and a summary."""
    from rich.console import Console

    from grainforge.segment.predict import predict as predict_images

    from grainforge.data.io import check_pixel_size
    from grainforge.grainsize import astm_g_from_grains_per_mm2

    um_per_px = check_pixel_size(um_per_px)  # names --um-per-px in the error
    rows = predict_images(model_dir, inputs, out, um_per_px=um_per_px, device=device, threshold_only=threshold_only)
    n_grains = sum(row["n_grains"] for row in rows)
    extra = ""
    densities = [row["grains_per_mm2"] for row in rows if "grains_per_mm2" in row]
    if densities:  # E112: G of the mean grains per mm², not the mean of the fields' G
        mean_density = sum(densities) / len(densities)
        extra = f", {mean_density:.4g} grains/mm² (planimetric ASTM G {astm_g_from_grains_per_mm2(mean_density):.2f})"
    Console().print(f"{len(rows)} image(s), {n_grains} grains{extra}: boundaries in [bold]{Path(out) / 'boundaries'}[/], "
                    f"summary {Path(out) / 'summary.csv'}")
