"""Run records: every run directory gets ``run.json`` with its config, seed, versions and timings,
so that it can be reproduced."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from grainforge.data.io import write_json

_PACKAGES = ("grainforge", "numpy", "scipy", "numba", "scikit-image", "scikit-learn", "skops", "torch", "typer")


def versions() -> dict[str, str]:
    """Installed versions of the packages that decide the numbers, plus Python and the platform."""
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        if commit:
            found["git_commit"] = commit
    except (OSError, subprocess.SubprocessError):
        pass
    return found


class RunRecord:
    """Collects timings of named phases and writes ``run.json`` into a run directory.

    >>> record = RunRecord(run_dir, command="simulate", config={...}, seed=0)
    >>> with record.phase("simulate"): ...
    >>> record.write()
    """

    def __init__(self, run_dir: str | os.PathLike, command: str, config: dict, seed: int | None):
        self.path = Path(run_dir) / "run.json"
        self.data = {
            "command": command,
            "argv": sys.argv,
            "config": config,
            "seed": seed,
            "versions": versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "timings_s": {},
        }

    def phase(self, name: str):
        record = self

        class _Phase:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                record.data["timings_s"][name] = record.data["timings_s"].get(name, 0.0) + time.perf_counter() - self.t0
                return False

        return _Phase()

    def write(self, **extra) -> None:
        self.data.update(extra)
        self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(self.path, self.data)
