"""The runner core: the plan of rows, and running them with resume, atomic CSV and parallel jobs.

A row is one (table, setting, real_fraction, seed); a row function maps it to a metrics dict.
``results.csv`` is rewritten atomically after every finished row, and rows already in it are
skipped, so a crash or Ctrl-C loses at most the rows in progress.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from grainforge.data.io import read_csv, write_csv
from grainforge.experiment.config import ExperimentConfig
from grainforge.experiment.layout import format_fraction
from grainforge.progress import progress_bar

# map/ari: after grainforge's closing and merging; map_raw/ari_raw: the network's own boundaries (the paper's)
RESULT_COLUMNS = ("table", "setting", "real_fraction", "seed", "map", "ari", "map_raw", "ari_raw", "vi_split",
                  "vi_merge", "boundary_f1", "delta_G_intercept", "delta_G_planimetric", "mean_intercept_rel_error",
                  "iterations", "wall_time_s")
#: Settings of each table (Table 1 has no rows: it reads the artefact timings).
TABLE_SETTINGS = {
    "table3": ("real", "simulated-ids", "real+simulated-ids", "simulated-plain", "real+simulated-plain", "forest"),
    "table4": ("real", "real+synthetic", "forest"),
    "beyond": ("real+microscope", "real+synthetic+microscope"),
    "supplement": ("simulated-split", "synthetic-split"),
}
#: How the report and its figures name each setting.
SETTING_NAMES = {
    "real": "real", "simulated-ids": "simulated (grain-ID sections)", "real+simulated-ids": "real + simulated (grain IDs)",
    "simulated-plain": "extra: simulated as plain lines", "real+simulated-plain": "extra: real + simulated plain lines",
    "real+synthetic": "real + synthetic (pix2pix)", "real+microscope": "real + microscope renders",
    "real+synthetic+microscope": "real + synthetic + microscope", "simulated-split": "simulated train/test split",
    "synthetic-split": "extra: synthetic train/test split", "forest": "random forest (real only)",
}


@dataclass(frozen=True)
class RowSpec:
    """One row of results.csv: a model trained for ``setting`` with ``real_fraction`` of the real
    training images (0 when it uses none) and ``seed``, scored on the test set of ``table``."""

    table: str
    setting: str
    real_fraction: float
    seed: int

    @property
    def key(self) -> tuple[str, str, str, int]:
        """Identity in results.csv (the fraction as text, so that 0.1 read back matches 0.1)."""
        return (self.table, self.setting, format_fraction(self.real_fraction), int(self.seed))

    @property
    def model_key(self) -> tuple[str, str, int]:
        """What the result depends on: rows of different tables with the same setting, fraction and
        seed (Table 3's real 100 % and Table 4's real at f = 1) are one model, computed once."""
        return (self.setting, format_fraction(self.real_fraction), int(self.seed))


RowFunction = Callable[[RowSpec], dict]


def plan_rows(config: ExperimentConfig) -> list[RowSpec]:
    """Every row the config asks for, seed-major within each table so that early rows cover all settings."""
    rows = []
    for table in config.tables:
        if table == "table1":
            continue
        if table == "table3":
            fractions = [1.0]
        elif table == "supplement":
            fractions = [0.0]
        else:
            fractions = config.table4_fractions
        for seed in config.seeds:
            for fraction in fractions:
                for setting in TABLE_SETTINGS[table]:
                    rows.append(RowSpec(table, setting, fraction, seed))
    return rows


def _result_row(spec: RowSpec, metrics: dict) -> dict:
    row = {"table": spec.table, "setting": spec.setting, "real_fraction": format_fraction(spec.real_fraction),
           "seed": spec.seed}
    row.update({name: metrics.get(name, "") for name in RESULT_COLUMNS[4:]})
    return row


def _row_key(row: dict) -> tuple[str, str, str, int]:
    return (row["table"], row["setting"], format_fraction(float(row["real_fraction"])), int(row["seed"]))


def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results.csv (strings), or [] if there is none yet."""
    return read_csv(path) if Path(path).is_file() else []


def _init_worker(threads: int) -> None:
    """Limit the math libraries of a job process to its share of the cores (before torch is imported)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(threads)


def run_rows(specs: Sequence[RowSpec], row_fn: RowFunction, results_path: str | os.PathLike, jobs: int = 1,
             progress: bool = True) -> list[dict]:
    """Run the rows of ``specs`` missing from ``results_path`` with ``row_fn``; returns all result rows.

    ``row_fn`` runs once per :attr:`RowSpec.model_key`; its metrics fill every row sharing that key.
    After each finished row the CSV is rewritten atomically (rows of earlier runs first, then in plan
    order). ``jobs`` > 1 runs rows in that many spawned processes with cores // jobs threads each
    (``row_fn`` must then be picklable: a module-level function or a functools.partial of one).
    """
    existing = read_results(results_path)
    done = {_row_key(row) for row in existing}
    todo: dict[tuple, list[RowSpec]] = {}  # model key -> the rows it answers
    for spec in specs:
        if spec.key not in done:
            todo.setdefault(spec.model_key, []).append(spec)
    finished: dict[tuple, dict] = {}

    def record(group: list[RowSpec], metrics: dict) -> None:
        for spec in group:
            finished[spec.key] = _result_row(spec, metrics)
        ordered = [finished[s.key] for s in specs if s.key in finished]
        write_csv(results_path, [*existing, *ordered], RESULT_COLUMNS)

    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("experiment rows", total=len(specs), completed=len(specs) - sum(map(len, todo.values())))
        if jobs <= 1:
            for group in todo.values():
                spec = group[0]
                bar.update(task, description=f"{spec.setting} f={format_fraction(spec.real_fraction)} seed={spec.seed}")
                record(group, row_fn(spec))
                bar.update(task, advance=len(group))
        elif todo:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
                pending = {pool.submit(row_fn, group[0]): group for group in todo.values()}
                try:
                    while pending:
                        finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for future in finished_now:
                            group = pending.pop(future)
                            record(group, future.result())
                            bar.update(task, advance=len(group))
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    return [*existing, *(finished[s.key] for s in specs if s.key in finished)]

