"""`grainforge export`: a simulated volume as a VTK ImageData (.vti) or XDMF + DREAM.3D HDF5 file for ParaView."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    run_dir: Path = typer.Argument(..., help="Simulation run folder (volume.zarr, or volume.npz of older runs)."),
    fmt: str = typer.Option(..., "--format", help="vti: VTK ImageData; xdmf: XDMF + .dream3d HDF5 as DREAM.3D writes."),
    out: Path | None = typer.Option(None, "--out", help="File to write (.vti or .xdmf); default RUN_DIR/volume.vti|xdmf."),
    voxel_size_um: float | None = typer.Option(
        None, "--voxel-size-um", help="Voxel pitch in micrometres for the grid spacing (default: the volume's, else 1 voxel)."),
) -> None:
    """Write the grain ids (numbered 1..n) of a volume with its voxel spacing, for ParaView or DREAM.3D."""
    from rich.console import Console

    from grainforge.export import export_volume

    paths = export_volume(run_dir, fmt, out=out, voxel_size_um=voxel_size_um)
    Console().print(f"[bold]export[/bold]: wrote {', '.join(map(str, paths))}")
