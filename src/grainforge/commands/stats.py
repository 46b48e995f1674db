"""`grainforge stats`: grain statistics of label folders (paper Fig. 5) or of a simulation log."""

from __future__ import annotations

from pathlib import Path

import typer


def stats(
    labels_dir: Path | None = typer.Argument(None, help="Folder of boundary label images (or a slice output with labels/)."),
    out: Path = typer.Option(..., "--out", help="Output folder: grains.csv, summary.csv/.json, distributions, PNG plots."),
    compare: Path | None = typer.Option(None, "--compare", help="A second label folder plotted beside the first."),
    boundary_value: str = typer.Option("auto", "--boundary-value", help="Label value of boundary pixels: 0, 255 or auto."),
    threshold: float = typer.Option(127, "--threshold", help="Grey level that splits boundary from grain (0..255)."),
    thin: bool = typer.Option(False, "--thin", help="Thin thick boundaries to 1 pixel before measuring."),
    min_area: int = typer.Option(3, "--min-area", help="Grains smaller than this (pixels) count as boundary fragments."),
    log: Path | None = typer.Option(None, "--log", help="A simulation log.csv (or its run folder): growth plot and exponent."),
    um_per_px: float | None = typer.Option(None, "--um-per-px", help="Pixel size in micrometres (for every label folder): "
                                                                     "adds areas in um^2 and diameters in um."),
    volume: Path | None = typer.Option(
        None, "--volume",
        help="A simulation run folder (volume.zarr or volume.npz): per-grain volume, equivalent sphere diameter and "
             "face-sharing (6-connectivity) neighbours -> volume_grains.csv, volume_summary.json, volume_distributions.png."),
) -> None:
    """Grain areas, diameters and edge counts of label folders; growth exponent of a simulation log; 3D grains of a volume."""
    from rich.console import Console

    from grainforge.data.io import check_pixel_size
    from grainforge.errors import UserError
    from grainforge.grainstats import stats_run

    if volume is not None:
        if labels_dir is not None or log is not None:
            raise UserError("--volume: give it alone (not with LABELS_DIR or --log); run 'grainforge stats' once per input")
        _volume_stats(volume, out)
        return
    um_per_px = check_pixel_size(um_per_px)  # names --um-per-px in the error
    if labels_dir is None and log is None:
        raise UserError("stats: give a LABELS_DIR, or --log RUN_DIR/log.csv; see grainforge stats --help")
    if compare is not None and labels_dir is None:
        raise UserError("--compare: needs a LABELS_DIR to compare with")
    folders = [folder for folder in (labels_dir, compare) if folder is not None]
    result = stats_run(out, folders, log=log, boundary_value=boundary_value, threshold=threshold, thin=thin,
                       min_area_px=min_area, um_per_px=um_per_px)
    console = Console()
    for name, summary in result["datasets"].items():
        console.print(f"[bold]{name}[/bold]: {summary['n_images']} images, {summary['n_interior_grains']} interior grains, "
                      f"mean area {summary.get('mean_area_px', float('nan')):.1f} px"
                      + (f" = {summary['mean_area_um2']:.4g} um^2, " if "mean_area_um2" in summary else ", ") +
                      f"mean edges {summary.get('mean_edges', float('nan')):.2f}")
    if result["datasets"]:
        console.print(f"wrote {out / 'grains.csv'}, {out / 'summary.csv'}, {out / 'grain_distributions.png'}")
    if result["growth_exponent"] is not None:
        console.print(f"[bold]growth[/bold]: exponent n = {result['growth_exponent']:.3f} "
                      f"(mean volume ∝ t^(3n), late half); wrote {out / 'growth.png'}")


def _volume_stats(volume: Path, out: Path) -> None:
    """``stats --volume``: the 3D grain table and distributions of a simulation volume."""
    from rich.console import Console

    from grainforge.volumestats import stats_volume

    summary = stats_volume(volume, out)
    Console().print(
        f"[bold]volume[/bold]: {summary['n_grains']} grains ({summary['n_interior_grains']} interior), "
        f"mean volume {summary.get('mean_volume_voxels', float('nan')):.1f} voxels, mean equivalent diameter "
        f"{summary.get('mean_equivalent_diameter_voxels', float('nan')):.2f} voxels, mean neighbours "
        f"{summary.get('mean_neighbours', float('nan')):.2f} (face-sharing)")
    Console().print(f"wrote {out / 'volume_grains.csv'}, {out / 'volume_summary.json'}, {out / 'volume_distributions.png'}")
