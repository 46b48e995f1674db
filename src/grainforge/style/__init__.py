"""pix2pix style transfer: boundary label -> micrograph (docs/design.md §7).

``train_style`` learns the real micrographs' look from (label, image) pairs; ``apply_style``
paints it onto any boundary labels (e.g. Potts sections), giving synthetic images that carry
those labels exactly.
"""

import importlib

_HOMES = {"apply_style": "apply", "load_generator": "apply", "paint": "apply", "STYLE_PRESETS": "config",
          "StyleConfig": "config", "train_style": "train"}


def __getattr__(name: str):
    """Import the submodule that holds ``name`` on first use (``import grainforge.style.apply`` stays
    free of the training code)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = ["STYLE_PRESETS", "StyleConfig", "apply_style", "load_generator", "paint", "train_style"]
