"""`grainforge slice`: 2D sections of a simulated volume -> boundary labels, id maps, manifest."""

from __future__ import annotations

from pathlib import Path

import typer


def slice_volume(
    run_dir: Path = typer.Argument(..., help="Simulation run folder (volume.zarr, or volume.npz of older runs); read slab by slab."),
    out: Path = typer.Option(..., "--out", help="Output folder: labels/*.png (255 = boundary), ids/*.tif, manifest.csv."),
    axes: str = typer.Option("xyz", "--axes", help="Section normals: any of x, y, z."),
    stride: int = typer.Option(1, "--stride", help="Take every K-th plane along each axis."),
    zoom: float | None = typer.Option(None, "--zoom", help="Resample the sections by this factor (smooth boundaries)."),
    match_mean_area: str | None = typer.Option(
        None, "--match-mean-area",
        help="Choose the zoom so the mean interior grain area equals this, e.g. 'grainforge stats' of real labels: "
             "pixels (1500, 1500px) or, with --um-per-px, a physical area (76um2, 76µm²)."),
    um_per_px: float | None = typer.Option(None, "--um-per-px", help="Pixel size of the sections in micrometres "
                                                                     "(converts a --match-mean-area in um^2 to pixels)."),
    crop: int | None = typer.Option(None, "--crop", help="Cut each section into non-overlapping PX x PX tiles."),
    boundary_width: float | None = typer.Option(
        None, "--boundary-width",
        help="Draw label lines this wide (px), e.g. the width 'grainforge stats' measures on your hand-traced labels."),
) -> None:
    """Cut a 3D grain volume into 2D sections and write their 1-pixel boundary labels."""
    from rich.console import Console

    from grainforge.data.io import area_in_px, check_pixel_size
    from grainforge.sections import slice_run

    um_per_px = check_pixel_size(um_per_px)
    area_px = None if match_mean_area is None else area_in_px(match_mean_area, um_per_px, "--match-mean-area")
    rows = slice_run(run_dir, out, axes=axes, stride=stride, zoom=zoom, match_mean_area=area_px, crop=crop,
                     boundary_width=boundary_width)
    areas = [row["mean_area_px"] for row in rows if row["mean_area_px"] == row["mean_area_px"]]
    mean_area = sum(areas) / len(areas) if areas else float("nan")
    console = Console()
    physical = f" = {mean_area * um_per_px**2:.4g} um^2" if um_per_px else ""
    console.print(f"[bold]slice[/bold]: {len(rows)} images of {rows[0]['height']}x{rows[0]['width']} px, "
                  f"mean interior grain area {mean_area:.1f} px^2{physical} (mean of images)")
    console.print(f"wrote {out / 'labels'}, {out / 'ids'}, {out / 'manifest.csv'}")
