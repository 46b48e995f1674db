"""`grainforge simulate`: 3D Monte Carlo Potts grain growth into a run directory."""

from __future__ import annotations

from pathlib import Path

import typer


def simulate(
    out: Path = typer.Option(..., "--out", help="Run directory: volume.zarr (uint32 grain ids x,y,z, chunked), log.csv, run.json."),
    size: str = typer.Option("64", "--size", help="Lattice side L (cubic), or 'Lx,Ly,Lz'; every side even, >= 4."),
    mcs: int | None = typer.Option(None, "--mcs", help="Monte Carlo steps to run (1 MCS = one attempt per site)."),
    kT: float = typer.Option(0.5, "--kT", help="Temperature kT/J of the Metropolis rule (paper: 0.5)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the volume is the same for any --threads."),
    proposal: str = typer.Option("neighbour", "--proposal",
                                 help="neighbour: a random one of the 18 first+second neighbours' ids (paper); "
                                      "distinct: a random distinct id among the 26 neighbours (SPPARKS potts/neigh)."),
    backend: str = typer.Option("numba", "--backend",
                                help="numba: the CPU kernel; torch: the same rule in torch (same volume bit for bit), "
                                     "for a GPU."),
    device: str = typer.Option("auto", "--device", help="torch device: auto (CUDA when present), cpu or cuda."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all)."),
    checkpoint_every: int = typer.Option(0, "--checkpoint-every", help="Write RUN_DIR/checkpoint.npz every N MCS (0: never)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN_DIR/checkpoint.npz (same size, kT, seed, proposal)."),
    target_grain_size: float | None = typer.Option(
        None, "--target-grain-size",
        help="Stop once the mean grain size reaches this (--mcs then caps the steps; default cap 1,000,000)."),
    target_kind: str = typer.Option("diameter", "--target-kind",
                                    help="diameter: equivalent-sphere diameter of the mean grain volume (voxels); "
                                         "area: mean 2D section grain area (pixels)."),
    log_every: int = typer.Option(1, "--log-every", help="Log (and check the target) every N MCS."),
) -> None:
    """Grow grains in a periodic 3D lattice from one grain per site (26-neighbour Potts model, Metropolis at kT).

    A lattice whose working set exceeds the free memory is refused before anything is allocated,
    with the largest cubic size that fits.
    """
    from rich.console import Console

    from grainforge.potts import simulate as run_simulation

    result = run_simulation(
        size, mcs, kT, seed, proposal=proposal, backend=backend, device=device, threads=threads, out=out, checkpoint_every=checkpoint_every,
        resume=resume, target_grain_size=target_grain_size, target_kind=target_kind, log_every=log_every,
    )
    last = result.log[-1]
    console = Console()
    console.print(
        f"[bold]simulate[/bold]: {'x'.join(map(str, result.ids.shape))} lattice, {result.mcs_done} MCS, "
        f"{last['n_grains']:,} grains, mean volume {last['mean_grain_volume']:.1f} voxels, {last['wall_time_s']:.1f} s"
    )
    if result.target_reached is False:
        console.print(f"[yellow]target grain size {target_grain_size} not reached within {result.mcs_done} MCS[/yellow]")
    console.print(f"wrote {out / 'volume.zarr'}, {out / 'log.csv'}, {out / 'run.json'}")
