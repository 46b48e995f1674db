"""U-Net segmentation (docs/design.md §8): training on real + extra mixes, tiled prediction, closed
1-pixel boundaries and grain tables. Importing this package imports torch."""

from grainforge.segment.config import SEGMENT_PRESETS, SegmentConfig
from grainforge.segment.predict import predict
from grainforge.segment.train import train_segmenter

__all__ = ["SEGMENT_PRESETS", "SegmentConfig", "predict", "train_segmenter"]
