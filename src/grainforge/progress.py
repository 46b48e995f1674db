"""Rich progress bars used by every long-running stage."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress_bar(*extra_columns, disable: bool = False) -> Progress:
    """A progress bar on stderr: description, bar, n/total, elapsed, remaining, then ``extra_columns``.

    It is drawn only when stderr is a terminal: in logs and pipes a final frame would interleave
    with (and break the one-line form of) error messages.

    Use ``task = bar.add_task("training", total=n, **fields)`` and ``bar.update(task, advance=1, **fields)``;
    extra columns such as ``TextColumn("{task.fields[loss]}")`` show the fields.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=console,
        disable=disable or not console.is_terminal,
    )
