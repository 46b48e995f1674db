"""`grainforge segment train` / `grainforge segment predict`: U-Net micrograph -> grain boundaries."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("train")
def train(
    real: Path | None = typer.Option(None, "--real", help="Real pairs: folder with images/ + labels/ (same stems), or an .h5 file."),
    real_fraction: float = typer.Option(1.0, "--real-fraction", help="Nested seeded fraction of the real training images, in [0, 1]."),
    extra: list[Path] = typer.Option([], "--extra",
                                     help="Extra pairs (synthetic, simulated), repeatable; half of each batch, split evenly."),
    config: str = typer.Option("cpu-small", "--config", help="Preset cpu-small | paper, or a YAML file (may start with 'base: PRESET')."),
    out: Path = typer.Option(..., "--out", help="Model folder: best.pt, checkpoint.pt, config.yaml, log.csv, run.json."),
    iters: int | None = typer.Option(None, "--iters", help="Training iterations (overrides the config)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the init, the split, the fraction and the crops."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt (same config and --iters)."),
    val: Path | None = typer.Option(None, "--val", help="Validation pairs (default: hold out part of --real when it has enough images)."),
) -> None:
    """Train the U-Net on real (+ extra) image/label pairs; keeps the best checkpoint by validation MAP."""
    from rich.console import Console

    from grainforge.config import load_config
    from grainforge.data.io import read_csv
    from grainforge.segment.config import SEGMENT_PRESETS, SegmentConfig

    segment_config = load_config(SegmentConfig, config, SEGMENT_PRESETS)  # before importing torch: fast errors
    from grainforge.segment.train import train_segmenter

    model_dir = train_segmenter(real, out, segment_config, real_fraction=real_fraction, extras=extra, iters=iters,
                                seed=seed, device=device, resume=resume, val=val)
    last = read_csv(model_dir / "log.csv")[-1]
    Console().print(f"U-Net model: [bold]{model_dir / 'best.pt'}[/]  (iteration {last['iteration']}, "
                    f"loss {float(last['loss']):.4f}, val MAP {float(last['val_map']):.3f}, val ARI {float(last['val_ari']):.3f}; "
                    f"log: {model_dir / 'log.csv'})")


@app.command("predict")
def predict(
    model_dir: Path = typer.Argument(..., help="Model folder written by `grainforge segment train` (or a .pt file)."),
    inputs: list[Path] = typer.Argument(..., help="Micrograph files and/or folders of them (any size)."),
    out: Path = typer.Option(..., "--out", help="Writes boundaries/, labels/, probabilities/, overlays/, grains/, summary.csv."),
    um_per_px: float | None = typer.Option(None, "--um-per-px", help="Pixel size in micrometres: adds areas in um^2 and ASTM E112 G."),
    threshold_only: bool = typer.Option(False, "--threshold-only",
                                        help="Plain thresholded boundaries, no watershed closing (for comparison)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda."),
) -> None:
    """Segment micrographs: closed 1-pixel boundaries, grain label maps, grain tables and a summary."""
    from rich.console import Console

    from grainforge.segment.predict import predict as predict_images

    rows = predict_images(model_dir, inputs, out, um_per_px=um_per_px, device=device, threshold_only=threshold_only)
    n_grains = sum(row["n_grains"] for row in rows)
    extra = ""
    if um_per_px is not None:
        extra = f", mean ASTM G {sum(row['astm_g'] for row in rows) / len(rows):.2f}"
    Console().print(f"{len(rows)} image(s), {n_grains} grains{extra}: boundaries in [bold]{Path(out) / 'boundaries'}[/], "
                    f"summary {Path(out) / 'summary.csv'}")
