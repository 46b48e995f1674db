"""3D Monte Carlo Potts grain growth: :func:`simulate` a volume, :func:`load_volume` it back.

``kernel`` holds the numba sweeps (imported lazily by :func:`simulate`), ``driver`` the run loop,
stop rules, log, checkpoints and the run-directory layout.
"""

from grainforge.potts.driver import LOG_COLUMNS, SimulationResult, parse_size, simulate
from grainforge.volume import read_volume as load_volume

__all__ = ["LOG_COLUMNS", "SimulationResult", "load_volume", "parse_size", "simulate"]
