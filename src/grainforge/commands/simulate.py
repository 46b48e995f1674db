"""`grainforge simulate` (placeholder until the stage lands)."""

from grainforge.errors import UserError


def simulate() -> None:
    """Not built yet."""
    raise UserError("'simulate' is not built yet")
