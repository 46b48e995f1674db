"""The ``grainforge`` command: one typer app, one subcommand per pipeline stage.

Each stage's options live in ``grainforge.commands.<stage>`` (thin: parse, validate, call the
library, report); heavy imports (numba, torch) happen inside the commands, so ``--help`` is fast.
A :class:`~grainforge.errors.UserError` anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import gc
import sys
import warnings

import typer

from grainforge.commands import demo_data, evaluate, experiment, export, grainsize, segment, simulate, slice_sections, stats, style
from grainforge.errors import GrainforgeWarning, UserError

app = typer.Typer(
    name="grainforge",
    help="Physics-made training data for grain-boundary segmentation of micrographs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("simulate")(simulate.simulate)
app.command("slice")(slice_sections.slice_volume)
app.command("stats")(stats.stats)
app.command("demo-data")(demo_data.demo_data)
app.command("evaluate")(evaluate.evaluate)
app.command("grainsize")(grainsize.grainsize)
app.add_typer(style.app, name="style", help="pix2pix style transfer: train on real pairs, apply to labels.")
app.add_typer(segment.app, name="segment", help="Segmentation (U-Net or random forest): train on real + synthetic, predict grains.")
app.command("experiment")(experiment.experiment)
app.command("export")(export.export)

EXIT_USER_ERROR = 2
GC_THRESHOLD = (10_000, 10, 10)
"""Python's cyclic collector runs after this many net allocations (young generation; default 700): importing
torch, scipy and numba allocates about a million long-lived objects, which at 700 cost five full collections
(0.3-0.4 s of ``segment predict``'s 5-8 s, benchmarks/RESULTS.md); at 10,000 none."""


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning) -> None:
    """Print a :class:`GrainforgeWarning` as one line on stderr; other warnings as Python does."""
    if issubclass(category, GrainforgeWarning):
        print(f"grainforge: warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> None:
    """Console entry point. User errors print ``grainforge: error: ...`` and exit 2; warnings about a
    result (:class:`GrainforgeWarning`) print ``grainforge: warning: ...``. Called without ``argv`` (the
    console script), it leaves the garbage collector frozen for the interpreter's exit."""
    warnings.showwarning = _show_warning
    gc.set_threshold(*GC_THRESHOLD)
    try:
        app(args=argv, prog_name="grainforge")
    except UserError as err:
        print(f"grainforge: error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("grainforge: interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        sys.exit(130)
    finally:
        if argv is None:  # the console entry: the process ends next, and its last collections would visit every
            gc.freeze()   # object torch & co. made (exit after segment predict: 0.61-0.67 s; frozen: 0.14 s)
