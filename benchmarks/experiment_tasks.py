"""What running experiment rows as dask tasks costs beyond the rows themselves (docs/design.md §9.5).

Rows that do no work (a fixed metrics dict) isolate the runner: per row, the in-process loop
(results.csv rewritten atomically after each row) against dask tasks on a LocalCluster of --jobs
workers (submit, schedule, run, return, and the same CSV rewrite by the client), and the time to
start and stop that cluster. A real row trains a U-Net for seconds (tiny) to hours (paper).

Figures (one per line): in-process ms per row; dask ms per row and the ratio; cluster start + stop s.

    .venv/bin/python benchmarks/experiment_tasks.py [--rows 200] [--jobs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import grainforge  # noqa: F401  (first: OMP_WAIT_POLICY before torch/numba)
from grainforge.experiment.config import ClusterConfig
from grainforge.experiment.runner import RowSpec, dask_client, run_row_tasks, run_rows


def no_work_row(spec: RowSpec) -> dict:
    """A row that computes nothing: what remains is the runner's cost."""
    return {"map": 0.5, "ari": 0.8, "vi_split": 0.1, "vi_merge": 0.2, "boundary_f1": 0.7, "iterations": 1,
            "wall_time_s": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    specs = [RowSpec("table4", "real", 0.25, seed) for seed in range(args.rows)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_rows(specs, no_work_row, Path(tmp) / "serial.csv", progress=False)
        serial = (time.perf_counter() - t0) / args.rows
        t0 = time.perf_counter()
        with dask_client(args.jobs, None, ClusterConfig()) as (client, threads):
            started = time.perf_counter() - t0
            t1 = time.perf_counter()
            run_row_tasks(client, specs, no_work_row, Path(tmp) / "dask.csv", threads=threads, progress=False)
            tasks = (time.perf_counter() - t1) / args.rows
            t1 = time.perf_counter()
        lifetime = started + time.perf_counter() - t1
    print(f"in-process: {serial * 1e3:.2f} ms per row ({args.rows} rows)")
    print(f"dask LocalCluster({args.jobs}): {tasks * 1e3:.2f} ms per row, {tasks / serial:.1f}x in-process")
    print(f"cluster start + stop: {lifetime:.1f} s")


if __name__ == "__main__":
    main()
