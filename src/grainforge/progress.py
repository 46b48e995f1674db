"""Progress of every long-running stage, where the user looks at it (docs/design.md §2.3).

- In a terminal, and in Jupyter when ``ipywidgets`` is installed (rich renders its bars there): a
  live rich progress bar on stderr.
- Anywhere else (a log file, a pipe, Jupyter without ``ipywidgets``): plain lines on stderr, one per
  task every :data:`LOG_INTERVAL_S` seconds while it runs and one when it ends after such a line, e.g.
  ``segment train  120/800  15%  elapsed 0:00:30  remaining 0:02:50  3.99 it/s  loss 0.4321``.
  A task shorter than the interval prints nothing, so quick commands keep their one-line output; a
  run of T seconds prints at most T / LOG_INTERVAL_S + 1 lines per task. A live bar is not drawn
  there: its final frame would interleave with (and break the one-line form of) error messages.
"""

from __future__ import annotations

import importlib.util

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=True)
LOG_INTERVAL_S = 30.0
"""Seconds between two plain progress lines of one task (log files, pipes)."""


class LogLineProgress(Progress):
    """A :class:`rich.progress.Progress` that draws nothing live and prints a plain progress line per task
    every ``interval`` seconds (default :data:`LOG_INTERVAL_S`), and a last one when a task that printed
    lines completes.

    Lines hold the description, n/total, percent, elapsed and remaining time, then ``extra_columns``
    rendered as plain text. Time comes from the console's clock (``console.get_time``).
    """

    def __init__(self, *extra_columns, interval: float | None = None, console: Console = console):
        super().__init__(TextColumn("{task.description}"), MofNCompleteColumn(), TaskProgressColumn(),
                         TimeElapsedColumn(), TimeRemainingColumn(), *extra_columns, console=console, disable=True)
        self.interval = LOG_INTERVAL_S if interval is None else float(interval)
        self._last_line: dict[TaskID, float] = {}
        self._ended: set[TaskID] = set()

    def update(self, task_id: TaskID, **kwargs) -> None:
        """As :meth:`rich.progress.Progress.update`, then print a line if one is due."""
        super().update(task_id, **kwargs)
        self._log_if_due(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        """As :meth:`rich.progress.Progress.advance`, then print a line if one is due."""
        super().advance(task_id, advance)
        self._log_if_due(task_id)

    def line(self, task_id: TaskID) -> str:
        """The plain progress line of a task now."""
        task = self._tasks[task_id]
        description, count, percent, elapsed, remaining, *extra = (column(task).plain for column in self.columns)
        return "  ".join([description, count, percent.strip(), f"elapsed {elapsed}", f"remaining {remaining}", *extra])

    def _log_if_due(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        if task_id in self._ended or task.start_time is None:
            return
        now = self.get_time()
        last = self._last_line.get(task_id)
        due = now - (task.start_time if last is None else last) >= self.interval
        if task.finished:
            self._ended.add(task_id)
            due = due or last is not None
        if due:
            self._last_line[task_id] = now
            self.console.print(self.line(task_id), markup=False, highlight=False, soft_wrap=True)


def live_display_possible(target: Console = console) -> bool:
    """Whether rich can draw a live bar on ``target``: a terminal, or Jupyter with ``ipywidgets``."""
    return target.is_terminal or (target.is_jupyter and importlib.util.find_spec("ipywidgets") is not None)


def progress_bar(*extra_columns, disable: bool = False) -> Progress:
    """Progress on stderr: description, bar, n/total, elapsed, remaining, then ``extra_columns``.

    A live rich bar in a terminal or Jupyter (with ``ipywidgets``), plain periodic lines elsewhere
    (:class:`LogLineProgress`; module docstring); nothing with ``disable``.

    Use ``task = bar.add_task("training", total=n, **fields)`` and ``bar.update(task, advance=1, **fields)``;
    extra columns such as ``TextColumn("{task.fields[loss]}")`` show the fields.
    """
    if not disable and not live_display_possible(console):
        return LogLineProgress(*extra_columns, console=console)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=console,
        disable=disable,
    )
