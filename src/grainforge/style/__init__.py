"""pix2pix style transfer: boundary label -> micrograph (DESIGN §2.3).

``train_style`` learns the real micrographs' look from (label, image) pairs; ``apply_style``
paints it onto any boundary labels (e.g. Potts sections), giving synthetic images that carry
those labels exactly.
"""

from grainforge.style.apply import apply_style, load_generator, paint
from grainforge.style.config import STYLE_PRESETS, StyleConfig
from grainforge.style.train import train_style

__all__ = ["STYLE_PRESETS", "StyleConfig", "apply_style", "load_generator", "paint", "train_style"]
