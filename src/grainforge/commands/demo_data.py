"""`grainforge demo-data`: write the built-in labelled demo data set (virtual optical microscope),
or render the user's own boundary labels (e.g. simulated sections) as micrographs."""

from __future__ import annotations

from pathlib import Path

import typer

from grainforge.errors import UserError


def demo_data(
    out: Path = typer.Option(Path("data/demo"), "--out", help="Output folder: OUT/{train,test}/{images,labels}/."),
    n: int = typer.Option(40, "--n", help="Number of images."),
    size: int = typer.Option(512, "--size", help="Image side, px."),
    seed: int = typer.Option(0, "--seed", help="Random seed (images and split)."),
    test_fraction: float = typer.Option(0.25, "--test-fraction", help="Fraction of images in test/."),
    mean_grain_area: float = typer.Option(1600.0, "--mean-grain-area", help="Mean grain (cell) area, px."),
    preset: str = typer.Option(
        "hard", "--preset", help="Style: hard (each image its own contrast, illumination, etch, scratches, twins), "
        "easy (one fixed style, the look of the demo data before presets existed), random (every parameter over its whole range)."),
    contact_sheet: Path | None = typer.Option(None, "--contact-sheet", help="Also write a PNG of the first 8 images + labels."),
    from_labels: Path | None = typer.Option(
        None, "--from-labels", help="Render this folder of boundary labels instead (writes OUT/images, OUT/labels)."),
    boundary_value: str = typer.Option("auto", "--boundary-value", help="With --from-labels: boundary is 255, 0 or auto (minority)."),
    threshold: float = typer.Option(127, "--threshold", help="With --from-labels: binarise labels at this 8-bit value."),
    thin: bool = typer.Option(False, "--thin", help="With --from-labels: thin thick labels to 1 px."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Render labelled demo micrographs (etched-ferrite look) from random Laguerre grain maps."""
    from rich import print as rprint

    from grainforge.data.io import ensure_writable_dir
    from grainforge.microscope import STYLE_PRESETS

    if preset not in STYLE_PRESETS:
        raise UserError(f"--preset {preset}: choose one of {', '.join(STYLE_PRESETS)}")
    if from_labels is not None:
        from grainforge.microscope import render_label_folder

        ensure_writable_dir(out)
        rows = render_label_folder(from_labels, out, seed, preset=preset, boundary_value=boundary_value,
                                   threshold=threshold, thin=thin, progress=progress)
        rprint(f"[bold]demo-data[/bold]: rendered {len(rows)} labels from {from_labels} into {out}/images")
        return
    if n < 1:
        raise UserError(f"--n {n}: need at least 1 image")
    if size < 32:
        raise UserError(f"--size {size}: images must be at least 32 px")
    if not 16 <= mean_grain_area <= size * size / 4:
        raise UserError(f"--mean-grain-area {mean_grain_area}: must be between 16 and {size * size // 4} px "
                        f"(a quarter of the {size} px image)")
    from grainforge.microscope import make_demo_data

    ensure_writable_dir(out)
    rows = make_demo_data(out, n, size, seed, test_fraction, mean_area_px=mean_grain_area,
                          preset=preset, contact_sheet_path=contact_sheet, progress=progress)
    n_test = sum(row["split"] == "test" for row in rows)
    mean_grains = sum(row["n_grains"] for row in rows) / len(rows)
    rprint(f"[bold]demo-data[/bold]: {len(rows) - n_test} train + {n_test} test images of {size} px "
           f"(~{mean_grains:.0f} grains each, preset {preset}) in {out}")
