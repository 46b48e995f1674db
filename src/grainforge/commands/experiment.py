"""`grainforge experiment` (placeholder until the stage lands)."""

from grainforge.errors import UserError


def experiment() -> None:
    """Not built yet."""
    raise UserError("'experiment' is not built yet")
