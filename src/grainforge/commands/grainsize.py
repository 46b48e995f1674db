"""`grainforge grainsize PRED_DIR --out DIR`: ASTM E112 intercept and planimetric grain size per image and pooled."""

from __future__ import annotations

from pathlib import Path

import typer


def grainsize(
    pred_dir: Path = typer.Argument(..., help="Folder of boundary maps (255 = boundary), or a `segment predict` output folder."),
    out: Path = typer.Option(..., "--out", help="Output folder: fields.csv, sample.csv, overlays/*.png, run.json."),
    um_per_px: float | None = typer.Option(None, "--um-per-px", help="Pixel size in micrometres (default: TIFF metadata "
                                                                     "or the prediction's run.json; else lengths in px, no G)."),
    angles: str = typer.Option("0,45,90,135", "--angles", help="Test-line directions in degrees, comma-separated."),
    line_spacing: float | None = typer.Option(None, "--line-spacing", help="Distance between test lines in pixels "
                                                                            "(default: the image's shorter side / 10)."),
    boundary_value: str = typer.Option("auto", "--boundary-value", help="Pixel value of boundaries: 0, 255 or auto."),
    lines: str = typer.Option("auto", "--lines", help="auto: thin boundaries drawn wider than 1 px (hand-traced labels) "
                                                      "to their centre line, as evaluate does; as-is: measure them as drawn."),
) -> None:
    """Mean lineal intercept (line grids and E112 three circles), G, grains per mm² and anisotropy, with 95 % CI."""
    from grainforge.errors import UserError

    if boundary_value not in ("auto", "0", "255"):
        raise UserError(f"--boundary-value: '{boundary_value}' is not 0, 255 or auto; pass the label value of boundaries")
    try:
        angles_deg = [float(a) for a in angles.split(",") if a.strip()]
    except ValueError as err:
        raise UserError(f"--angles: '{angles}' is not a comma-separated list of degrees, e.g. 0,45,90,135") from err
    from rich.console import Console

    from grainforge.grainsize import grainsize_run

    result = grainsize_run(pred_dir, out, um_per_px=um_per_px, angles_deg=angles_deg, line_spacing_px=line_spacing,
                           boundary_value=boundary_value if boundary_value == "auto" else int(boundary_value), lines=lines)
    console = Console()
    for row in result["sample"]:
        g = f", G {row['G_of_mean']:.2f}" if row["G_of_mean"] != "" else ""
        console.print(f"[bold]{row['quantity']}[/bold]: {row['mean']:.4g} ± {row['ci95']:.3g} {row['unit']} (95 % CI, "
                      f"%RA {row['relative_accuracy_pct']:.1f}, {row['n_fields']} fields){g}")
    console.print(f"wrote {out / 'fields.csv'}, {out / 'sample.csv'}, {out / 'overlays'}")
