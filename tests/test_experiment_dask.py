"""Experiment artefacts and rows as dask tasks (docs/design.md §9.6): on a tiny config with real
training, a LocalCluster of 2 workers writes the results.csv of the in-process run, bit for bit; a worker killed
mid-row costs that row only and a rerun completes it with the same numbers; numba's OpenMP pool starting
does not change the threads of an in-process run; the row -> artefact
dependencies cover every folder a row reads; the config's cluster: section becomes the Slurm job
script it should, and jobs submitted through a stand-in sbatch (the job script run on this machine)
start workers that run rows with the configured threads. No cluster and no GPU needed."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import dask
import pytest
import torch
import yaml

from conftest import assert_user_error, run_cli
from grainforge.data.io import read_csv
from grainforge.errors import UserError
from grainforge.experiment import (RESULT_COLUMNS, RowSpec, compute_row, load_experiment_config, plan_rows,
                                   run_experiment)
from grainforge.experiment.layout import RunLayout
from grainforge.experiment.rows import training_sources
from grainforge.experiment.runner import ONE_TASK_PER_WORKER, dask_client, run_row_tasks, slurm_options
from grainforge.experiment.taskgraph import REST, artefact_steps, row_steps

#: Every table and artefact kind, at a size that trains each U-Net in well under a second on one thread
#: (40 iterations of a 4-channel net: scores differ row by row, so mixed-up rows would show).
TINY = {
    "base": "demo",
    "real": {"demo_images": 4, "demo_size": 64, "demo_preset": "easy"},
    "simulation": {"size": 16, "mcs": 4, "stride": 8, "axes": "xy"},
    "style": {"iters": 2, "overrides": {"crop": 32, "ngf": 4, "ndf": 4, "n_samples": 1}},
    "segment": {"iters": 40, "overrides": {"width": 4, "depth": 2, "crop": 32, "batch_size": 4, "lr": 0.01,
                                           "val_fraction": 0.0}},
    "fractions": [1.0],
    "seeds": [0],
    "cluster": {"cores": 1},  # one thread per task, as in the reference run here
}
#: The row whose worker is killed (mid-row: after training, before prediction).
VICTIM = "real+synthetic"


def _config(tmp_path: Path, **changes):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return load_experiment_config(path)


def _scores(path: Path) -> list[dict]:
    """results.csv as written (floats as Python's repr, so equal text is equal bits) without the wall time
    (the only column that may differ between runs), in plan order (a resumed run appends its rows after
    those of the run before)."""
    rows = [{k: v for k, v in row.items() if k != "wall_time_s"} for row in read_csv(path)]
    order = [(spec.table, spec.setting) for spec in plan_rows(load_experiment_config(path.parent / "config.yaml"))]
    return sorted(rows, key=lambda row: order.index((row["table"], row["setting"])))


def _row_killing_its_worker(poison: Path, run_dir: Path, config, spec):
    """compute_row, except that the VICTIM row SIGKILLs its own worker process between training and
    prediction while ``poison`` exists (a worker lost mid-row: out of memory, node failure, walltime)."""
    if spec.setting == VICTIM and poison.exists():
        import grainforge.segment

        grainforge.segment.predict = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
    return compute_row(run_dir, config, spec)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny experiment run in this process (--jobs 1): one torch thread per step and row, from the config's
    cluster.cores as on a worker, whatever this process had (and torch's count is put back)."""
    run = tmp_path_factory.mktemp("jobs1") / "run"
    threads = torch.get_num_threads()
    run_experiment(_config(run.parent), run, progress=False)
    assert torch.get_num_threads() == threads
    return run


def test_local_cluster_matches_in_process_and_a_killed_worker_costs_only_its_rows(reference: Path, tmp_path: Path):
    from distributed import LocalCluster

    config = _config(tmp_path)
    run = tmp_path / "run"
    poison = tmp_path / "poison"
    row_fn = functools.partial(_row_killing_its_worker, poison, run.resolve(), config)
    expected = _scores(reference / "results.csv")
    assert len(expected) == len(plan_rows(config)) == 13
    # --cluster ADDRESS: a scheduler as README's "Scaling out" starts one, except that a task lost with its worker
    # is not retried
    with dask.config.set({**ONE_TASK_PER_WORKER, "distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        poison.touch()
        with pytest.raises(UserError, match="not done: its worker was lost") as lost:
            run_experiment(config, run, cluster=cluster.scheduler_address, progress=False, row_fn=row_fn)
        # the victim and what was queued behind it on its worker are named; every other row is saved, as in-process
        named = str(lost.value).split("results.csv: ")[1].split(" not done")[0].split(", ")
        assert f"{VICTIM} f=1 seed=0" in named
        saved = _scores(run / "results.csv")
        assert saved == [row for row in expected if f"{row['setting']} f={row['real_fraction']} seed=0" not in named]
        victim = RunLayout(run).row(VICTIM, 1.0, 0)
        assert (victim / "model" / "best.pt").is_file() and not (victim / "metrics.json").exists()  # died mid-row

    poison.unlink()
    run_experiment(config, run, jobs=2, progress=False)  # the rerun: --jobs 2, its own LocalCluster, the default rows
    assert _scores(run / "results.csv") == expected  # bit for bit
    assert list(read_csv(run / "results.csv")[0]) == list(RESULT_COLUMNS)
    # artefact tasks ran at once on two workers and each merged its timings into artefacts.json
    timings, reference_timings = RunLayout(run).read_timings(), RunLayout(reference).read_timings()
    assert set(timings) == set(reference_timings) and timings["n_sections"] == reference_timings["n_sections"]
    assert (run / "report.md").is_file()


#: A process that has run torch, sets one thread, then runs a Potts simulation (numba's OpenMP pool starts) and
#: prints torch's threads; THREADS_HERE wraps that in a --jobs 1 run's thread setting.
AFTER_POTTS = """
import numba
import torch
from grainforge.experiment.config import ClusterConfig
from grainforge.experiment.runner import run_here, threads_here
from grainforge.potts import simulate

torch.get_num_threads()
torch.set_num_threads(1)
{run}
print(torch.get_num_threads())
"""
THREADS_HERE = """with threads_here(ClusterConfig(cores=1)) as threads:
    run_here(lambda: simulate(8, 1, progress=False), threads)
    print(torch.get_num_threads(), end=" ")"""


def test_starting_numbas_pool_changes_torchs_threads_except_in_simulate_and_a_run_here():
    # the cause of in-process models training on NUMBA_NUM_THREADS threads, not cluster.cores (docs/design.md §9.6)
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    env.pop("OMP_NUM_THREADS", None)

    def threads_after(run: str) -> str:
        result = subprocess.run([sys.executable, "-c", AFTER_POTTS.format(run=run)], capture_output=True, text=True,
                                env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert threads_after("numba.get_num_threads()") == "2"  # the pool's start changes torch's threads
    assert threads_after("simulate(8, 1, progress=False)") == "1"  # simulate puts them back
    assert threads_after(THREADS_HERE) == "1 1"  # one thread while the run lasts, the caller's 1 after it


def test_row_dependencies_cover_every_folder_a_row_reads(reference: Path):
    config = load_experiment_config(reference / "config.yaml")
    layout = RunLayout(reference)
    specs = plan_rows(config)
    steps = artefact_steps(config, layout, specs)
    assert list(steps)[:2] == ["real", "sections"] and list(steps)[-1] == REST
    assert set(steps[REST].needs) == set(steps) - {REST}
    for spec in specs:
        real, _, extras, test = training_sources(layout, config, spec)
        outputs = [out for name in row_steps(spec) for out in steps[name].outputs]
        for folder in (real, *extras, test):
            assert any(folder.is_relative_to(out) for out in outputs), (spec, folder)
    for step in steps.values():  # a step is submitted after the steps it needs
        assert all(list(steps).index(need) < list(steps).index(step.name) for need in step.needs)


def test_cluster_section_becomes_the_slurm_job_script(tmp_path: Path):
    from dask_jobqueue import SLURMCluster

    config = _config(tmp_path, cluster={"jobs": 3, "cores": 8, "memory": "32GB", "walltime": "1-02:00:00", "gpus": 1,
                                        "queue": "gpu", "account": "matsci", "job_extra": ["--constraint=h200"],
                                        "prologue": ["module load cuda"]})
    with SLURMCluster(**slurm_options(config.cluster, tmp_path / "logs"), scheduler_options={"dashboard_address": None}) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH -A matsci", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=30G",
                 "#SBATCH -t 1-02:00:00", "#SBATCH --gres=gpu:1", "#SBATCH --constraint=h200", "module load cuda",
                 "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_=None"):
        assert line in script, (line, script)
    assert "--nthreads 1 --memory-limit 29.80GiB" in script  # one task at a time per job, the memory of the job


def _malloc_trim_threshold() -> str | None:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_workers_keep_glibcs_adaptive_malloc(tmp_path: Path, monkeypatch):
    # dask's default MALLOC_TRIM_THRESHOLD_=65536 made U-Net training in a worker 2x slower (runner.GLIBC_MALLOC_DEFAULTS).
    # A nanny sets it in its own process too, so a LocalCluster started earlier in this pytest process (the tests
    # above) leaves it in os.environ; a grainforge command starts with a clean environment.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with dask_client(1, None, _config(tmp_path).cluster) as (client, _):
        assert client.submit(_malloc_trim_threshold, pure=False).result() is None


FAKE_SBATCH = """#!/bin/bash
# stand-in for Slurm's sbatch: run a copy of the job script on this machine; print a job id as sbatch does
id=$RANDOM
cp "$1" "{folder}/job-$id.sh"
nohup bash "{folder}/job-$id.sh" > "{folder}/job-$id.out" 2>&1 &
echo $! > "{folder}/job-$id.pid"
echo "Submitted batch job $id"
"""
FAKE_SCANCEL = """#!/bin/bash
for id in "$@"; do pid=$(cat "{folder}/job-$id.pid") && pkill -TERM -P "$pid"; kill "$pid"; done 2> /dev/null; true
"""


def _threads_seen(spec) -> dict:
    """A row that reports, as its iterations, the OpenMP threads its task was given."""
    return {"map": 0.5, "iterations": int(os.environ["OMP_NUM_THREADS"])}


def test_slurm_jobs_start_workers_that_run_the_rows(tmp_path: Path, monkeypatch):
    for name, text in (("sbatch", FAKE_SBATCH), ("scancel", FAKE_SCANCEL)):
        (tmp_path / name).write_text(text.format(folder=tmp_path))
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    settings = _config(tmp_path, cluster={"jobs": 1, "cores": 2, "memory": "2GB", "walltime": "00:10:00",
                                          "prologue": ["echo prologue ran",  # and the row function's module:
                                                       f"export PYTHONPATH={Path(__file__).parent}:$PYTHONPATH"]}).cluster
    specs = [RowSpec("table4", "real", 0.25, seed) for seed in range(3)]
    with dask_client(1, "slurm", settings, tmp_path / "logs") as (client, threads):
        rows = run_row_tasks(client, specs, _threads_seen, tmp_path / "results.csv", threads=threads, progress=False)
    assert [(row["seed"], row["iterations"]) for row in rows] == [(0, 2), (1, 2), (2, 2)]
    (job,) = tmp_path.glob("job-*.out")
    assert job.read_text().startswith("prologue ran")


@pytest.mark.parametrize("cluster, fragment", [
    ({"gpus": 2}, "cluster.gpus: 2 must be 0 or 1"),
    ({"memory": "lots"}, "cluster.memory: 'lots' is not a size"),
    ({"walltime": "4h"}, "cluster.walltime: '4h' is not a Slurm time"),
    ({"walltime": 43200}, "cluster.walltime: '43200' is not a Slurm time"),  # YAML's reading of an unquoted 12:00:00
    ({"cores": 0}, "cluster.jobs / cluster.cores: 4 / 0 must be >= 1"),
    ({"qeue": "gpu"}, "cluster: unknown key(s) qeue"),
])
def test_bad_cluster_section_is_a_user_error(tmp_path: Path, cluster: dict, fragment: str):
    with pytest.raises(UserError) as err:
        _config(tmp_path, cluster=cluster)
    assert fragment in str(err.value)


def test_cluster_options_are_checked_before_any_work(tmp_path: Path):
    out = tmp_path / "run"
    no_cores = tmp_path / "no_cores.yaml"
    no_cores.write_text(yaml.safe_dump({"base": "demo"}))
    assert_user_error(run_cli("experiment", no_cores, "--out", out, "--cluster", "slurm"),
                      "--cluster slurm: the config's cluster: section must give cores")
    config = load_experiment_config("demo")
    with pytest.raises(UserError, match="--jobs 2 and --cluster tcp://localhost:8786: give one"):
        run_experiment(config, out, jobs=2, cluster="tcp://localhost:8786")
    with pytest.raises(UserError, match="--cluster mycluster: give a dask scheduler address"):
        run_experiment(config, out, cluster="mycluster")
    assert not out.exists()
