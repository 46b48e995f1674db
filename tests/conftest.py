"""Shared test helpers. Tests are CPU-only, small and deterministic; none needs ../shared/data."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch/numba start their thread pools)


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``grainforge ARGS...`` in a fresh interpreter; returns the completed process (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "grainforge", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
    )


@pytest.fixture
def cli():
    """The :func:`run_cli` helper as a fixture."""
    return run_cli


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: exit 2, one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("grainforge: error:"), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def load_benchmark(name: str):
    """The module ``benchmarks/NAME.py`` (benchmarks hold the reference implementations some tests compare with)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
