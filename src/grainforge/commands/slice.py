"""`grainforge slice` (placeholder until the stage lands)."""

from grainforge.errors import UserError


def slice_volume() -> None:
    """Not built yet."""
    raise UserError("'slice' is not built yet")
