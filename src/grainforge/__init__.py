"""grainforge: physics-made training data for grain-boundary segmentation.

Pipeline stages (each a module, each a CLI subcommand):
``potts`` (3D Monte Carlo Potts grain growth) -> ``sections`` (2D sections, boundary labels)
-> ``style`` (pix2pix label -> micrograph) -> ``segment`` (U-Net micrograph -> boundaries)
-> ``metrics`` (MAP, ARI, VI, boundary F1) and ``grainstats`` (grain statistics).
"""

__version__ = "0.1.0"
