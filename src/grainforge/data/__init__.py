"""Data layer: image/volume IO with atomic writes, real-data readers, splits, patches, torch datasets.

Submodules that need torch (``torchdata``) are imported explicitly, never from here.
"""
