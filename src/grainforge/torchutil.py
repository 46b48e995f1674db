"""Torch helpers shared by the style and segment stages: device choice and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from grainforge.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu``; ``cuda`` (UserError if absent)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("device cuda asked for, but torch sees no CUDA GPU; use device auto or cpu")
        return torch.device(name)
    raise UserError(f"device {name!r} is not one of auto, cpu, cuda")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; make CPU kernels deterministic. Returns a seeded torch Generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
