"""Thin typer command modules, one per pipeline stage (see ``grainforge.cli``)."""
