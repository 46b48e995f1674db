"""`grainforge demo-data` (placeholder until the stage lands)."""

from grainforge.errors import UserError


def demo_data() -> None:
    """Not built yet."""
    raise UserError("'demo-data' is not built yet")
