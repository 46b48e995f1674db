"""grainforge: physics-made training data for grain-boundary segmentation.

Pipeline stages (each a module, each a CLI subcommand):
``potts`` (3D Monte Carlo Potts grain growth) -> ``sections`` (2D sections, boundary labels)
-> ``style`` (pix2pix label -> micrograph) -> ``segment`` (U-Net micrograph -> boundaries)
-> ``metrics`` (MAP, ARI, VI, boundary F1) and ``grainstats`` (grain statistics).
"""

import os

# torch and numba run OpenMP thread pools; the default busy-wait at barriers makes them up to 8x
# slower when the cores are shared (measured: pix2pix step 0.28 -> 3.1 CPU-s). Must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
