"""`grainforge evaluate` (placeholder until the stage lands)."""

from grainforge.errors import UserError


def evaluate() -> None:
    """Not built yet."""
    raise UserError("'evaluate' is not built yet")
