"""`grainforge experiment CONFIG --out RUN_DIR [--jobs N | --cluster ADDRESS|slurm]`: the paper's tables,
resumable, with a report."""

from __future__ import annotations

from pathlib import Path

import typer


def experiment(
    config: str = typer.Argument(..., help="A shipped config (demo, laptop, paper, tbm) or a CONFIG.yaml "
                                           "(may start with 'base: NAME')."),
    out: Path = typer.Option(..., "--out", help="Run folder: results.csv, report.md, figures/, cached artefacts. "
                                                "Rerun with the same --out to resume."),
    jobs: int = typer.Option(1, "--jobs", help="Artefacts and rows as tasks on a local dask cluster of N worker processes "
                                               "(threads per task = cores // N, or cluster.cores); 1 = all in this process."),
    cluster: str | None = typer.Option(None, "--cluster", help="Run the tasks on a dask scheduler (tcp://HOST:8786, workers "
                                                       "started with --nthreads 1) or 'slurm' (a SLURMCluster from the "
                                                       "config's cluster: section)."),
    report_only: bool = typer.Option(False, "--report-only", help="Only re-render report.md from RUN_DIR/results.csv."),
) -> None:
    """Reproduce the paper's Tables 1, 3, 4 and the supplement on the configured data; write a report."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from grainforge.errors import UserError
    from grainforge.experiment import load_experiment_config, read_results, render_report, run_experiment
    from grainforge.experiment.report import aggregate

    experiment_config = load_experiment_config(config)
    if report_only:
        if not (out / "results.csv").is_file():
            raise UserError(f"{out / 'results.csv'}: no results to report; run without --report-only first")
        report = render_report(out, experiment_config)
    else:
        try:
            report = run_experiment(experiment_config, out, jobs=jobs, cluster=cluster, progress=sys.stderr.isatty())
        except KeyboardInterrupt:
            print(f"grainforge: interrupted; rerun the same command (same --out) to resume from {out / 'results.csv'}",
                  file=sys.stderr)
            raise typer.Exit(130) from None

    table = Table(title=f"results (mean over seeds) — {out / 'results.csv'}")
    for column in ("table", "setting", "real %", "MAP", "ARI", "seeds"):
        table.add_column(column, justify="left" if column in ("table", "setting") else "right")
    for (name, setting, fraction), stats in aggregate(read_results(out / "results.csv")).items():
        table.add_row(name, setting, f"{fraction * 100:g}", f"{stats['map'][0]:.4f}", f"{stats['ari'][0]:.4f}",
                      str(stats["map"][2]))
    console = Console()
    console.print(table)
    console.print(f"report written to [bold]{report}[/bold]")
