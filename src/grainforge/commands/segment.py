"""`grainforge segment` (placeholder until the stage lands)."""

import typer

app = typer.Typer(no_args_is_help=True)
