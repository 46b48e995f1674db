"""`grainforge style train` / `grainforge style apply`: pix2pix label -> micrograph."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("train")
def train(
    pairs: Path = typer.Option(..., "--pairs", help="Real pairs: folder with images/ + labels/ (same stems), or an .h5 file."),
    config: str = typer.Option("cpu-small", "--config", help="Preset cpu-small | paper, or a YAML file (may start with 'base: PRESET')."),
    out: Path = typer.Option(..., "--out", help="Model folder: generator.pt, checkpoint.pt, losses.csv, samples/, run.json."),
    iters: int | None = typer.Option(None, "--iters", help="Training iterations (overrides the config)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the init, the crops and the dropout."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue from MODEL_DIR/checkpoint.pt (same config)."),
    val: Path | None = typer.Option(None, "--val", help="Held-out pairs for the sample grids (default: training pairs)."),
) -> None:
    """Train pix2pix on real (label, image) pairs."""
    from rich.console import Console

    from grainforge.config import load_config
    from grainforge.style import STYLE_PRESETS, StyleConfig, train_style

    style_config = load_config(StyleConfig, config, STYLE_PRESETS)
    model_dir = train_style(pairs, style_config, out, iters=iters, seed=seed, device=device, resume=resume, val=val)
    Console().print(f"pix2pix generator: [bold]{model_dir / 'generator.pt'}[/] "
                    f"(losses: {model_dir / 'losses.csv'}, samples: {model_dir / 'samples'})")


@app.command("apply")
def apply(
    model_dir: Path = typer.Argument(..., help="Folder written by `grainforge style train`."),
    labels_dir: Path = typer.Argument(..., help="Folder of boundary label images (any size), e.g. `grainforge slice` output labels/."),
    out: Path = typer.Option(..., "--out", help="Writes OUT/images/<stem>.png and OUT/labels/<stem>.png."),
    seed: int = typer.Option(0, "--seed", help="Seed of the dropout noise (per image: seed + file stem)."),
    dropout: bool | None = typer.Option(None, "--dropout/--no-dropout",
                                        help="Dropout at inference; default on, as in pix2pix (its noise source)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda."),
    boundary_value: str = typer.Option("auto", "--boundary-value", help="Boundary pixel value in the labels: auto | 0 | 255."),
    match_width: bool = typer.Option(True, "--match-width/--keep-width",
                                     help="Redraw labels whose line width differs from the model's training labels "
                                          "at that width (default), or keep them and only warn."),
) -> None:
    """Paint real-micrograph style onto boundary labels: synthetic (image, label) pairs."""
    from rich.console import Console

    from grainforge.errors import UserError
    from grainforge.style import apply_style

    if boundary_value not in ("auto", "0", "255"):
        raise UserError(f"--boundary-value {boundary_value!r}: use auto, 0 or 255")
    written = apply_style(model_dir, labels_dir, out, device=device, seed=seed, dropout=dropout,
                          boundary_value=boundary_value if boundary_value == "auto" else int(boundary_value),
                          match_width=match_width)
    Console().print(f"{len(written)} synthetic image(s) in [bold]{Path(out) / 'images'}[/], labels in {Path(out) / 'labels'}")
