"""Progress where the user looks (grainforge.progress): live bars in terminals and Jupyter, plain periodic
lines in log files and pipes, bounded in number."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from rich.console import Console
from rich.progress import TextColumn

import grainforge.progress as progress_module
from grainforge.progress import LOG_INTERVAL_S, LogLineProgress, live_display_possible, progress_bar


class Clock:
    """A settable clock for the console (seconds)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_console(monkeypatch):
    """The progress console swapped for one writing to a non-tty StringIO with a fake clock."""
    clock, stream = Clock(), io.StringIO()
    console = Console(file=stream, get_time=clock, width=200)
    monkeypatch.setattr(progress_module, "console", console)
    return clock, stream


def test_log_file_gets_periodic_lines_bounded_in_number(log_console):
    clock, stream = log_console
    steps, step_s = 400, 1.0  # 400 s of work: at most 400 / 30 + 1 lines, not one per step
    with progress_bar(TextColumn("loss {task.fields[loss]:.3f}")) as bar:
        assert isinstance(bar, LogLineProgress)
        task = bar.add_task("segment train", total=steps, loss=float("nan"))
        for step in range(steps):
            clock.now += step_s
            bar.update(task, advance=1, loss=1.0 / (step + 1))
    lines = stream.getvalue().splitlines()
    # a line every 30 s (at 30, 60, ..., 390 s), then the last one at completion (400 s)
    assert len(lines) == int(steps * step_s // LOG_INTERVAL_S) + 1 == 14
    assert lines[0].split() == ["segment", "train", "30/400", "8%", "elapsed", "0:00:30", "remaining", "0:06:10",
                                "loss", "0.033"]
    assert lines[-1].startswith("segment train  400/400  100%  elapsed 0:06:40")
    assert all("\x1b" not in line for line in lines)  # plain text, no terminal codes
    completed = [int(re.search(r"(\d+)/400", line).group(1)) for line in lines]
    assert completed == [30 * k for k in range(1, 14)] + [400]


def test_short_task_prints_nothing_and_disable_silences(log_console):
    clock, stream = log_console
    with progress_bar() as bar:
        task = bar.add_task("quick", total=5)
        for _ in range(5):
            clock.now += 1.0
            bar.update(task, advance=1)
    with progress_bar(disable=True) as bar:
        task = bar.add_task("off", total=2)
        clock.now += 100.0
        bar.update(task, advance=2)
    assert stream.getvalue() == ""


def test_several_tasks_and_advance(log_console):
    clock, stream = log_console
    with progress_bar() as bar:
        first, second = bar.add_task("first", total=3), bar.add_task("second", total=None)
        for _ in range(3):
            clock.now += 40.0
            bar.advance(first)
            bar.advance(second, 2)
    lines = stream.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["first", "1/3"], ["second", "2/?"], ["first", "2/3"],
                                                   ["second", "4/?"], ["first", "3/3"], ["second", "6/?"]]


def test_a_stage_logs_its_progress(log_console, monkeypatch):
    """A library stage (metrics over image pairs) prints its progress lines to a log, one per image at interval 0."""
    from grainforge.metrics import evaluate_arrays

    _, stream = log_console
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.0)
    boundary = np.zeros((8, 8), bool)
    boundary[4] = True
    rows = evaluate_arrays([(boundary, boundary)] * 3, progress=True)
    assert [row["map"] for row in rows] == [1.0] * 3
    assert [line.split()[:2] for line in stream.getvalue().splitlines()] == [["evaluating", f"{k}/3"] for k in (1, 2, 3)]


def test_terminal_and_jupyter_get_live_bars(monkeypatch):
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert live_display_possible(terminal)
    monkeypatch.setattr(progress_module, "console", terminal)
    assert not isinstance(progress_bar(), LogLineProgress)
    jupyter = Console(file=io.StringIO(), force_jupyter=True)
    has_widgets = progress_module.importlib.util.find_spec("ipywidgets") is not None
    assert live_display_possible(jupyter) == has_widgets  # without ipywidgets rich cannot draw there: lines
    assert not live_display_possible(Console(file=io.StringIO()))
