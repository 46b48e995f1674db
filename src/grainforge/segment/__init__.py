"""Segmentation (docs/design.md §8): a U-Net trained on real + extra mixes, or the random-forest baseline;
prediction, closed 1-pixel boundaries and grain tables. Importing this package imports torch."""

from grainforge.segment.config import FOREST_PRESETS, SEGMENT_PRESETS, ForestConfig, PostprocessConfig, SegmentConfig
from grainforge.segment.forest import train_forest
from grainforge.segment.predict import predict
from grainforge.segment.train import train_segmenter

__all__ = ["FOREST_PRESETS", "SEGMENT_PRESETS", "ForestConfig", "PostprocessConfig", "SegmentConfig", "predict",
           "train_forest", "train_segmenter"]
