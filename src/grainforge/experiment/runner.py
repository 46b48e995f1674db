"""The runner core: the plan of rows, and running them with resume, atomic CSV, in this process or as
tasks on a dask.distributed cluster (a LocalCluster of ``--jobs N`` workers, a scheduler address, Slurm).

A row is one (table, setting, real_fraction, seed); a row function maps it to a metrics dict.
``results.csv`` is rewritten atomically, by this process only, after every finished row, and rows
already in it are skipped, so a crash, a Ctrl-C or a lost worker loses at most the rows in progress.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from grainforge.data.io import read_csv, write_csv
from grainforge.errors import UserError
from grainforge.experiment.config import ClusterConfig, ExperimentConfig
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


class ResultsFile:
    """results.csv of a run: the rows of ``specs`` still to compute, grouped by model, and the atomic
    rewrite after each finished model (rows of earlier runs first, then in plan order)."""

    def __init__(self, specs: Sequence[RowSpec], path: str | os.PathLike):
        self.specs, self.path = list(specs), Path(path)
        self.existing = read_results(path)
        done = {_row_key(row) for row in self.existing}
        self.todo: dict[tuple, list[RowSpec]] = {}  # model key -> the rows it answers
        for spec in self.specs:
            if spec.key not in done:
                self.todo.setdefault(spec.model_key, []).append(spec)
        self.finished: dict[tuple, dict] = {}

    @property
    def n_done(self) -> int:
        """Rows of ``specs`` already in the file when it was opened."""
        return len(self.specs) - sum(map(len, self.todo.values()))

    def record(self, group: list[RowSpec], metrics: dict) -> None:
        """Add the rows of one model and rewrite the file atomically."""
        for spec in group:
            self.finished[spec.key] = _result_row(spec, metrics)
        write_csv(self.path, self.rows(), RESULT_COLUMNS)

    def rows(self) -> list[dict]:
        """Every result row: earlier runs', then this run's in plan order."""
        return [*self.existing, *(self.finished[s.key] for s in self.specs if s.key in self.finished)]


def _describe(spec: RowSpec) -> str:
    return f"{spec.setting} f={format_fraction(spec.real_fraction)} seed={spec.seed}"


def run_rows(specs: Sequence[RowSpec], row_fn: RowFunction, results_path: str | os.PathLike, jobs: int = 1,
             progress: bool = True, threads: int | None = None) -> list[dict]:
    """Run the rows of ``specs`` missing from ``results_path`` with ``row_fn``; returns all result rows.

    ``row_fn`` runs once per :attr:`RowSpec.model_key`; its metrics fill every row sharing that key.
    After each finished row the CSV is rewritten atomically. In this process (``jobs`` 1) each row
    starts with ``threads`` torch threads (:func:`run_here`; None: as they are). ``jobs`` > 1 runs the
    rows as tasks on a dask LocalCluster of that many worker processes (see :func:`dask_client`,
    :func:`run_row_tasks`; ``row_fn`` must then be picklable: a module-level function or a
    functools.partial of one).
    """
    if jobs > 1:
        with dask_client(jobs, None, ClusterConfig()) as (client, threads):
            return run_row_tasks(client, specs, row_fn, results_path, threads=threads, progress=progress)
    results = ResultsFile(specs, results_path)
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("experiment rows", total=len(specs), completed=results.n_done)
        for group in results.todo.values():
            bar.update(task, description=_describe(group[0]))
            results.record(group, run_here(functools.partial(row_fn, group[0]), threads))
            bar.update(task, advance=len(group))
    return results.rows()


@contextmanager
def threads_here(settings: ClusterConfig) -> Iterator[int]:
    """The torch threads of the steps and rows of a run in this process (``--jobs 1``): ``settings.cores``,
    else the threads torch has when the run starts (OMP_NUM_THREADS, the CPUs, or the caller's
    ``torch.set_num_threads``); torch's count is put back on exit. (Starting numba's OpenMP pool would
    change torch's count; ``simulate`` puts it back itself, docs/design.md §9.6.)
    """
    import torch

    before = torch.get_num_threads()
    try:
        yield settings.cores or before
    finally:
        torch.set_num_threads(before)


def run_here(fn: Callable[[], object], threads: int | None) -> object:
    """A step or row run in this process: ``fn()`` with ``threads`` torch threads (None: as they are), set
    anew each time, as :func:`run_task` does on a worker."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return fn()


# ---------------------------------------------------------------- dask


#: Environment variables that size the thread pools of OpenMP, MKL, OpenBLAS (numpy, torch) and numba.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


#: Scheduler setting of our clusters: hand a worker a task only when its slot is free (tasks run for
#: minutes, and a task queued on a worker that dies counts as failed there).
ONE_TASK_PER_WORKER = {"distributed.scheduler.worker-saturation": 1.0}
#: dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which fixes glibc's mmap threshold:
#: every large torch temporary is then mmap'd and unmapped again, and cpu-small U-Net training ran 2.1x
#: slower (60 iterations on the demo images: 21.0 s against 10.0 s in-process; the same 21.6 s in-process
#: with that variable set). Unset it, so that glibc adapts its thresholds as in a plain process.
GLIBC_MALLOC_DEFAULTS = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
#: The same for the workers of Slurm jobs, which read their dask config from the environment.
GLIBC_MALLOC_PROLOGUE = "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_=None"


def use_threads(threads: int | None) -> None:
    """Size this process's math-library thread pools to ``threads`` (None: the CPUs it may run on).

    A dask worker starts with one OpenMP thread; a task calls this first, before it imports torch or
    numba (their pools read the environment once), and resizes the pools of those already imported:
    numba's first, because starting its OpenMP pool sets torch's threads too (:func:`threads_here`).
    """
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def run_task(fn: Callable[[], object], threads: int | None, *needs: object) -> object:
    """What a worker runs: ``fn()`` with ``threads`` threads. ``needs`` are the results of the tasks it
    waits for (dask passes them in once they are finished); they only order the tasks."""
    use_threads(threads)
    return fn()


def check_cluster_options(jobs: int, cluster: str | None, settings: ClusterConfig) -> None:
    """UserError, before any work, for ``--jobs``/``--cluster`` values :func:`dask_client` cannot use."""
    if jobs < 1:
        raise UserError(f"--jobs: {jobs} must be >= 1")
    if cluster is not None and jobs != 1:
        raise UserError(f"--jobs {jobs} and --cluster {cluster}: give one (a cluster's size is its own)")
    if cluster == "slurm" and settings.cores is None:
        raise UserError("--cluster slurm: the config's cluster: section must give cores (CPU cores per Slurm job)")
    if cluster not in (None, "slurm") and ":" not in cluster:
        raise UserError(f"--cluster {cluster}: give a dask scheduler address (tcp://HOST:8786) or slurm")


@contextmanager
def dask_client(jobs: int, cluster: str | None, settings: ClusterConfig,
                log_dir: Path | None = None) -> Iterator[tuple[object, int | None]]:
    """A ``distributed.Client`` and the threads each task gets, for one of three kinds of cluster.

    ``cluster`` None: a LocalCluster of ``jobs`` worker processes with one task slot each, torn down on
    exit. ``"slurm"``: a ``dask_jobqueue.SLURMCluster`` of ``settings.jobs`` jobs (:func:`slurm_options`),
    cancelled on exit; job logs go to ``log_dir``. Else a scheduler address (``tcp://HOST:8786``) whose
    workers the user started (one task slot each: ``dask worker ADDRESS --nthreads 1``).
    """
    import dask
    from distributed import Client, LocalCluster

    if cluster is None:
        threads = settings.cores or max(1, (os.cpu_count() or 1) // jobs)
        env = {name: str(threads) for name in THREAD_VARIABLES}
        with dask.config.set({**ONE_TASK_PER_WORKER, **GLIBC_MALLOC_DEFAULTS}), LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True, memory_limit=0, dashboard_address=None,
                silence_logs=logging.ERROR, env=env) as local, Client(local) as client:
            yield client, threads
    elif cluster == "slurm":
        from dask_jobqueue import SLURMCluster

        with dask.config.set(ONE_TASK_PER_WORKER), SLURMCluster(**slurm_options(settings, log_dir)) as slurm, \
                Client(slurm) as client:
            slurm.adapt(minimum_jobs=settings.jobs, maximum_jobs=settings.jobs)  # replaces jobs that end
            yield client, settings.cores
    else:
        try:
            client = Client(cluster, timeout="20s")
        except OSError as err:
            raise UserError(f"--cluster {cluster}: no dask scheduler answers there ({err}); start one with "
                            "'dask scheduler' and workers with 'dask worker ADDRESS --nthreads 1'") from err
        with client:
            yield client, settings.cores


def slurm_options(settings: ClusterConfig, log_dir: Path | None = None) -> dict:
    """``dask_jobqueue.SLURMCluster`` keyword arguments for the config's ``cluster:`` section: one worker
    with one task slot per job (``cores=1``), ``job_cpu`` = ``settings.cores`` CPUs booked for its threads."""
    gres = [f"--gres=gpu:{settings.gpus}"] if settings.gpus else []
    return dict(cores=1, processes=1, job_cpu=settings.cores, memory=settings.memory, walltime=settings.walltime,
                queue=settings.queue, account=settings.account, interface=settings.interface,
                job_extra_directives=[*gres, *settings.job_extra],
                job_script_prologue=[GLIBC_MALLOC_PROLOGUE, *settings.prologue],
                log_directory=None if log_dir is None else str(log_dir))


def task_key(kind: str, name: str, run_token: str) -> str:
    """A task's name on the scheduler (its dashboard shows ``kind-name``), unique to one run."""
    return f"{kind}-{name}-{run_token}"


def new_run_token() -> str:
    """A token that keeps the task keys of two runs on one scheduler apart."""
    return uuid.uuid4().hex[:8]


def run_row_tasks(client, specs: Sequence[RowSpec], row_fn: RowFunction, results_path: str | os.PathLike, *,
                  threads: int | None = None, needs: Callable[[RowSpec], list] | None = None,
                  artefacts: dict | None = None, run_token: str | None = None, progress: bool = True) -> list[dict]:
    """Run the rows of ``specs`` missing from ``results_path`` as tasks of ``client``; returns all result rows.

    One task per model (as :func:`run_rows`); a row's task waits for the futures ``needs(spec)``
    (the artefacts it reads). ``artefacts`` (name -> future) are only watched: progress and failures.
    This process writes results.csv atomically as each model finishes. A failing task costs its rows
    only: the others run on, then the first error is raised; rows lost with their worker (dask retries
    a task on another worker ``distributed.scheduler.allowed-failures`` times) give one UserError that
    names them. Rerunning computes what is missing.
    """
    from distributed import KilledWorker, as_completed

    results = ResultsFile(specs, results_path)
    run_token = run_token or new_run_token()
    artefacts = artefacts or {}
    watched = {future: ("artefact", name) for name, future in artefacts.items()}
    for group in results.todo.values():
        spec = group[0]
        future = client.submit(run_task, functools.partial(row_fn, spec), threads, *(needs(spec) if needs else ()),
                               key=task_key("row", f"{spec.setting}_f{format_fraction(spec.real_fraction)}_s{spec.seed}",
                                            run_token), pure=False)
        watched[future] = ("row", group)
    failures: list[tuple[str, BaseException]] = []
    with progress_bar(disable=not progress) as bar:
        rows_task = bar.add_task("experiment rows", total=len(specs), completed=results.n_done)
        artefacts_task = bar.add_task("artefacts", total=len(artefacts)) if artefacts else None
        for future in as_completed(list(watched)):
            kind, what = watched.pop(future)
            if future.status == "finished":
                if kind == "row":
                    results.record(what, future.result())
            else:
                error = future.exception() if future.status == "error" else RuntimeError(f"task {future.status}")
                failures.append((f"artefact {what}" if kind == "artefact" else _describe(what[0]), error))
            bar.update(rows_task if kind == "row" else artefacts_task, advance=len(what) if kind == "row" else 1)
    if failures:
        lost = [name for name, error in failures if isinstance(error, KilledWorker)]
        other = [error for _, error in failures if not isinstance(error, KilledWorker)]
        if other:
            raise other[0]
        raise UserError(f"{results_path}: {', '.join(lost)} not done: its worker was lost (killed, out of memory or "
                        f"walltime, or it could not load the task: see the worker logs) more often than dask retries; "
                        f"{len(results.finished)} row(s) of this run are saved: rerun the same command to compute the rest")
    return results.rows()
