"""`grainforge experiment CONFIG --out RUN_DIR [--jobs N | --cluster ADDRESS|slurm] [--dry-run]`: the paper's
tables, resumable, with a report."""

from __future__ import annotations

from pathlib import Path

import typer


def experiment(
    config: str = typer.Argument(..., help="A shipped config (demo, laptop, paper, tbm) or a CONFIG.yaml "
                                           "(may start with 'base: NAME')."),
    out: Path = typer.Option(None, "--out", help="Run folder: results.csv, report.md, figures/, cached artefacts. "
                                                 "Rerun with the same --out to resume. Not needed with --dry-run."),
    jobs: int = typer.Option(1, "--jobs", help="Artefacts and rows as tasks on a local dask cluster of N worker processes "
                                               "(threads per task = cores // N, or cluster.cores); 1 = all in this process."),
    cluster: str | None = typer.Option(None, "--cluster", help="Run the tasks on a dask scheduler (tcp://HOST:8786, workers "
                                                       "started with --nthreads 1) or 'slurm' (a SLURMCluster from the "
                                                       "config's cluster: section)."),
    report_only: bool = typer.Option(False, "--report-only", help="Only re-render report.md from RUN_DIR/results.csv."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every table, row, count and hyper-parameter the run "
                                                          "would use, beside the paper's values; run nothing."),
) -> None:
    """Reproduce the paper's Tables 1, 3, 4 and the supplement on the configured data; write a report."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from grainforge.errors import UserError
    from grainforge.experiment import load_experiment_config, read_results, render_report, run_experiment
    from grainforge.experiment.report import aggregate

    experiment_config = load_experiment_config(config)
    if dry_run:
        print_dry_run(experiment_config, Console() if sys.stdout.isatty() else Console(width=160))  # piped: no wrapping
        return
    if out is None:
        raise UserError("--out: missing; pass the run folder (or --dry-run to only print the plan)")
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
    for column in ("table", "setting", "real %", "MAP", "ARI", "MAP raw", "ARI raw", "seeds"):
        table.add_column(column, justify="left" if column in ("table", "setting") else "right")
    for (name, setting, fraction), stats in aggregate(read_results(out / "results.csv")).items():
        table.add_row(name, setting, f"{fraction * 100:g}",
                      *(f"{stats[metric][0]:.4f}" for metric in ("map", "ari", "map_raw", "ari_raw")),
                      str(stats["map"][2]))
    console = Console()
    console.print(table)
    console.print(f"report written to [bold]{report}[/bold]")


def print_dry_run(config, console) -> None:
    """The plan of an experiment: the paper's protocol item by item (this config vs the paper), the counts
    per real fraction, the rows of every table, and every hyper-parameter of the pix2pix and U-Net."""
    from rich.table import Table

    from grainforge.config import config_to_dict
    from grainforge.experiment import plan_rows
    from grainforge.experiment.config import segment_config, style_config
    from grainforge.experiment.paper import PAPER_PROTOCOL, fraction_plan, protocol
    from grainforge.experiment.report import sampling_line

    def show(value) -> str:
        return "read at run time" if value is None else f"{value:,}" if isinstance(value, int) and not isinstance(
            value, bool) else str(value)

    ours = protocol(config)
    table = Table(title="the paper's protocol: this config vs the paper")
    for column in ("item", "this config", "paper", ""):
        table.add_column(column)
    for item, paper in PAPER_PROTOCOL.items():
        table.add_row(item, show(ours[item]), show(paper), "" if ours[item] == paper else "differs")
    console.print(table)
    console.print(sampling_line(config), soft_wrap=True)
    if ours["simulated images"] and config.simulation.crop:
        gib = ours["simulated images"] * config.simulation.crop ** 2 * 5 / 2**30  # float32 image + bool label
        console.print(f"Memory: a row that trains on simulated, synthetic or microscope images holds all "
                      f"{ours['simulated images']:,} of them (float32 image + bool label): about {gib:.0f} GiB per "
                      "source per row process (real + synthetic + microscope rows hold two).", soft_wrap=True)

    table = Table(title="per real fraction (nested: a smaller fraction's images and patches are in a larger one's)")
    for column in ("real %", "training images", "training patches", "pix2pix iterations"):
        table.add_column(column, justify="right")
    for row in fraction_plan(config):
        table.add_row(f"{row['fraction'] * 100:g}", show(row["images"]), show(row["patches"]), show(row["pix2pix_iterations"]))
    console.print(table)

    rows = plan_rows(config)
    table = Table(title=f"result rows: {len(rows)} in results.csv, {len({r.model_key for r in rows})} models trained")
    for column in ("table", "setting", "real %", "seeds", "rows"):
        table.add_column(column)
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row.table, row.setting), []).append(row)
    for (name, setting), members in groups.items():
        fractions = sorted({m.real_fraction for m in members})
        table.add_row(name, setting, ", ".join(f"{f * 100:g}" for f in fractions),
                      ", ".join(str(s) for s in sorted({m.seed for m in members})), str(len(members)))
    console.print(table)

    for title, values in (("simulation", config_to_dict(config.simulation)), ("real data", config_to_dict(config.real)),
                          (f"pix2pix (preset {config.style.preset})", config_to_dict(style_config(config))),
                          (f"U-Net (preset {config.segment.preset})", config_to_dict(segment_config(config)))):
        table = Table(title=title)
        table.add_column("parameter")
        table.add_column("value")
        for key, value in values.items():
            table.add_row(key, str(value))
        console.print(table)
