"""The paper's experiments as one command (docs/design.md §9): Tables 1, 3, 4, the supplement and the
beyond-the-paper microscope baseline, run from one config into one run folder with a report.

``run_experiment`` = build the shared artefacts (real split, simulation, sections, plain and
microscope images, one pix2pix per real fraction) -> train/score one U-Net per result row
(resumable; in parallel as dask tasks, ``runner`` and ``taskgraph``) -> render report.md.

Modules, each importing only those before it: ``config`` (the experiment config) -> ``layout``
(run folder paths, done markers) -> ``paper`` (the paper's numbers), ``runner`` (row plan, resumable
results.csv, dask clients) -> ``artefacts`` (shared inputs), ``rows`` (one U-Net per row) -> ``taskgraph``
(artefacts and rows as dask tasks) -> ``figures`` -> ``report``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from grainforge.config import changed_fields, config_to_dict, save_config
from grainforge.data.io import atomic_path, ensure_writable_dir
from grainforge.errors import UserError
from grainforge.experiment.artefacts import prepare_artefacts
from grainforge.experiment.config import (BUILTIN_DEMO, TABLES, ExperimentConfig, load_experiment_config,
                                          segment_config, shipped_configs, style_config)
from grainforge.experiment.layout import RunLayout
from grainforge.experiment.report import render_report
from grainforge.experiment.rows import compute_row
from grainforge.experiment.runner import (RESULT_COLUMNS, RowFunction, RowSpec, check_cluster_options, plan_rows,
                                          read_results, run_here, run_rows, threads_here)

__all__ = ["BUILTIN_DEMO", "RESULT_COLUMNS", "TABLES", "ExperimentConfig", "RowSpec", "compute_row",
           "load_experiment_config", "plan_rows", "read_results", "render_report", "run_experiment", "run_rows",
           "shipped_configs"]

#: Config keys that may change between a run and its resumption (they only select rows or figures).
RESUMABLE_CHANGES = ("seeds", "fractions", "tables", "no_data_images", "device", "cluster")


def check_same_config(run_dir: Path, config: ExperimentConfig) -> None:
    """UserError if RUN_DIR was started with a config that differs beyond :data:`RESUMABLE_CHANGES`."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    changed = sorted(set(changed_fields(ExperimentConfig, saved, config, str(saved_path))) - set(RESUMABLE_CHANGES))
    if changed:
        raise UserError(f"{saved_path}: this run folder was started with different {', '.join(changed)}; "
                        "rerun with the same config or choose a new run folder")
    check_same_stages(run_dir, config)


STAGES_FILE = "stages.yaml"
"""The pix2pix and U-Net configs a run's rows train with, every field resolved from its preset."""


def resolved_stages(config: ExperimentConfig) -> dict:
    """{"style": ..., "segment": ...}: the stage configs as plain dicts, presets and overrides resolved."""
    return {"style": config_to_dict(style_config(config)), "segment": config_to_dict(segment_config(config))}


def check_same_stages(run_dir: Path, config: ExperimentConfig) -> None:
    """UserError if a preset changed under RUN_DIR since it started (a new grainforge with other defaults):
    the experiment config names presets, so it can be equal while the rows would train differently.
    Fields are compared as :func:`grainforge.config.changed_fields` does."""
    saved_path = run_dir / STAGES_FILE
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    changed = [f"{stage}.{key} {before} -> {now}"
               for stage, current in (("style", style_config(config)), ("segment", segment_config(config)))
               for key, (before, now) in changed_fields(type(current), saved.get(stage, {}), current,
                                                        f"{saved_path}: {stage}").items()]
    if changed:
        raise UserError(f"{saved_path}: the presets changed since this run started ({'; '.join(changed)}); "
                        "choose a new run folder, or set the old values as overrides in the config")


def run_experiment(config: ExperimentConfig, run_dir: str | Path, jobs: int = 1, progress: bool = True,
                   row_fn: RowFunction | None = None, cluster: str | None = None) -> Path:
    """Run (or resume) an experiment in ``run_dir``; returns the path of report.md.

    ``row_fn`` replaces the U-Net row function (tests inject a fake one); by default every row trains
    with :func:`compute_row`. Rows already in results.csv are not recomputed. ``jobs`` 1 without
    ``cluster`` runs everything here; ``jobs`` > 1 (a dask LocalCluster) or ``cluster`` (a scheduler
    address or ``slurm``) runs artefacts and rows as dask tasks (:mod:`grainforge.experiment.taskgraph`).
    """
    from grainforge.runinfo import RunRecord

    check_cluster_options(jobs, cluster, config.cluster)
    run_dir = ensure_writable_dir(run_dir)
    check_same_config(run_dir, config)
    save_config(config, run_dir / "config.yaml")
    with atomic_path(run_dir / STAGES_FILE) as path:
        path.write_text(yaml.safe_dump(resolved_stages(config), sort_keys=False))
    record = RunRecord(run_dir, command="experiment", config=config_to_dict(config), seed=config.seeds[0])
    layout = RunLayout(run_dir)
    if jobs == 1 and cluster is None:
        with threads_here(config.cluster) as threads:  # each step and row starts with the threads of a dask task
            with record.phase("artefacts"):
                run_here(functools.partial(prepare_artefacts, config, layout, progress=progress), threads)
            with record.phase("rows"):
                run_rows(plan_rows(config), row_fn or functools.partial(compute_row, run_dir, config),
                         layout.results, progress=progress, threads=threads)
    else:
        from distributed import __version__ as distributed_version

        from grainforge.experiment.taskgraph import portable, run_experiment_tasks

        task_config, layout = portable(config), RunLayout(run_dir.resolve())  # paths that hold on any worker
        with record.phase("artefacts and rows"):
            run_experiment_tasks(task_config, layout, plan_rows(config),
                                 row_fn or functools.partial(compute_row, layout.root, task_config),
                                 jobs=jobs, cluster=cluster, progress=progress)
        record.data["versions"]["distributed"] = distributed_version
    with record.phase("report"):
        report = render_report(run_dir, config)
    record.write(jobs=jobs, cluster=cluster)
    return report
