"""`grainforge stats` (placeholder until the stage lands)."""

from grainforge.errors import UserError


def stats() -> None:
    """Not built yet."""
    raise UserError("'stats' is not built yet")
