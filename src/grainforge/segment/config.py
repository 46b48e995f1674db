"""Configuration of the segmentation stage: the post-processing shared by every method
(:class:`PostprocessConfig`), the U-Net's network, training schedule, batch mixing, validation and tiled
inference (:class:`SegmentConfig`, presets ``cpu-small`` and ``paper``) and the random-forest baseline's
features and trees (:class:`ForestConfig`, preset ``default``)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from grainforge.errors import UserError


@dataclasses.dataclass(frozen=True)
class PostprocessConfig:
    """Boundary probability map -> closed boundaries (:func:`grainforge.segment.postprocess.postprocess`),
    the same for every segmentation method. Sizes in pixels, probabilities in [0, 1].

    Markers = 4-connected cores (probability < marker_threshold, eroded by marker_erosion px); watershed of
    the probability map from them; regions < min_grain_area px merged; neighbours whose shared border has
    mean probability < min_border_probability merged.
    """

    threshold: float = 0.5  # binary boundary map (and --threshold-only)
    marker_threshold: float = 0.3
    marker_erosion: int = 2
    min_grain_area: int = 30
    min_border_probability: float = 0.3

    def postprocess_checks(self) -> list[tuple[bool, str]]:
        """(ok, message) for each post-processing rule; ``validate`` of each method's config raises the first failure."""
        return [
            (0.0 < self.marker_threshold <= self.threshold < 1.0, "need 0 < marker_threshold <= threshold < 1"),
            (0.0 <= self.min_border_probability < 1.0, "min_border_probability must be in [0, 1)"),
            (self.marker_erosion >= 0 and self.min_grain_area >= 0, "marker_erosion and min_grain_area must be >= 0"),
        ]


def _raise_first_failure(what: str, checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise UserError(f"{what}: {message}")


@dataclasses.dataclass(frozen=True)
class SegmentConfig(PostprocessConfig):
    """Every number of U-Net ``segment train`` / ``segment predict``; the model folder keeps a copy.

    Sizes are in pixels. ``crop`` and ``tile`` must be multiples of ``2**depth``. Post-processing fields:
    :class:`PostprocessConfig`.
    """

    # network: classic U-Net, 1 input channel, 2 classes (grain, boundary)
    width: int = 64  # channels of the first level; doubled at each down-sampling
    depth: int = 4  # number of 2x down-samplings
    # training
    iters: int = 28000
    batch_size: int = 8
    crop: int = 400  # training patch side
    lr: float = 1e-4
    lr_schedule: Literal["constant", "cosine"] = "constant"
    min_lr_factor: float = 0.05  # cosine ends at lr * min_lr_factor
    weight_decay: float = 0.0
    boundary_weight: float = 5.0  # cross-entropy weight of the boundary class (grain = 1)
    dice_weight: float = 1.0  # loss = CE + dice_weight * (1 - soft Dice of the boundary class)
    real_share: float = 0.5  # share of each batch drawn from --real when --extra sources are given
    # extra sources are mixed in for the first extra_until x iters iterations; the rest fine-tune on real
    # patches alone (1 = mixed to the end, the paper; with real_share 0: pre-train on extras, then fine-tune)
    extra_until: float = 1.0
    augment: bool = True
    # random contrast, gamma, brightness, illumination ramp, blur and noise of the training images
    # (grainforge.data.torchdata.photometric_jitter); 0 = off, 1 = its documented ranges
    photometric: float = 0.0
    # sparse labels: label pixels of this grey level (8-bit) are untraced and add nothing to the loss; null: none
    ignore_value: int | None = 128
    # validation (held-out real images, scored with MAP/ARI after post-processing)
    val_every: int = 2000
    val_fraction: float = 0.2  # held out of --real when no --val is given and it has >= val_min_images
    val_min_images: int = 5
    val_max_images: int = 16
    checkpoint_every: int = 500
    # inference
    tile: int = 400
    overlap: float = 0.25  # tile overlap as a fraction of the tile side

    def validate(self) -> None:
        """UserError naming the first inconsistent field."""
        multiple = 2**self.depth
        checks = [
            (self.width >= 1, "width must be >= 1"),
            (1 <= self.depth <= 6, "depth must be in 1..6"),
            (self.iters >= 1, "iters must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.crop % multiple == 0 and self.crop > 0, f"crop must be a positive multiple of 2**depth = {multiple}"),
            (self.tile % multiple == 0 and self.tile > 0, f"tile must be a positive multiple of 2**depth = {multiple}"),
            (self.lr > 0, "lr must be > 0"),
            (0.0 <= self.photometric <= 2.0, "photometric must be in [0, 2]"),
            (0.0 <= self.overlap < 1.0, "overlap must be in [0, 1)"),
            (0.0 <= self.real_share <= 1.0, "real_share must be in [0, 1]"),
            (0.0 < self.extra_until <= 1.0, "extra_until must be in (0, 1]"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (self.val_every >= 1 and self.checkpoint_every >= 1, "val_every and checkpoint_every must be >= 1"),
            (self.ignore_value is None or 1 <= self.ignore_value <= 254, "ignore_value must be in 1..254 (or null)"),
        ]
        _raise_first_failure("segment config", checks + self.postprocess_checks())


SEGMENT_PRESETS: dict[str, SegmentConfig] = {
    # the paper's schedule (GPU job): 28k iterations of 8 x 400 px, lr 1e-4, tiles of 400 px; every real
    # image trains and the final weights are kept (no validation hold-out unless --val is given)
    "paper": SegmentConfig(val_fraction=0.0),
    # laptop scale: a few minutes on 2 CPU cores (see benchmarks/segment_speed.py)
    "cpu-small": SegmentConfig(
        width=8, depth=4, iters=800, batch_size=8, crop=128, lr=2e-3, lr_schedule="cosine",
        val_every=200, checkpoint_every=100, tile=256, min_grain_area=20, photometric=1.0,
    ),
}


@dataclasses.dataclass(frozen=True)
class ForestConfig(PostprocessConfig):
    """Random-forest boundary classifier (``segment train --method forest``); the model file keeps a copy.

    Features per pixel (``skimage.feature.multiscale_basic_features``): Gaussian-smoothed intensity, Sobel
    edge magnitude and the two Hessian eigenvalues (texture) at ``num_sigma`` scales log-spaced from
    ``sigma_min`` to ``sigma_max`` px. Training sample: per image at most ``min(pixels_per_image,
    max_pixels // number of training images)`` pixels, half boundary and half grain (fewer when a class has
    fewer pixels), seeded; ``max_pixels`` bounds the fitting time however many images there are.
    Post-processing fields: :class:`PostprocessConfig`, with ``min_border_probability`` 0.5 instead of 0.3:
    trained on balanced classes, the forest gives grain pixels of ambiguous texture probabilities well
    above the true boundary share, and 0.5 (its boundary-vs-grain decision point) keeps only borders it
    calls boundary on average (on 12 tbm training crops held out of the fit: ARI 0.38 vs 0.23 at 0.3).
    """

    min_border_probability: float = 0.5

    sigma_min: float = 1.0
    sigma_max: float = 16.0
    num_sigma: int = 5
    intensity: bool = True
    edges: bool = True
    texture: bool = True
    n_estimators: int = 100
    max_depth: int | None = 20  # None grows every tree until its leaves are pure
    min_samples_leaf: int = 2
    pixels_per_image: int = 20000
    max_pixels: int = 60000
    n_jobs: int = -1  # threads for fitting (-1 = all CPUs); prediction runs on one, so maps are bit-identical

    def validate(self) -> None:
        """UserError naming the first inconsistent field."""
        checks = [
            (0.0 < self.sigma_min <= self.sigma_max, "need 0 < sigma_min <= sigma_max"),
            (self.num_sigma >= 1, "num_sigma must be >= 1"),
            (self.intensity or self.edges or self.texture, "at least one of intensity, edges, texture must be true"),
            (self.n_estimators >= 1, "n_estimators must be >= 1"),
            (self.max_depth is None or self.max_depth >= 1, "max_depth must be >= 1 (or null for unlimited)"),
            (self.min_samples_leaf >= 1, "min_samples_leaf must be >= 1"),
            (self.pixels_per_image >= 2 and self.max_pixels >= 2, "pixels_per_image and max_pixels must be >= 2"),
            (self.n_jobs != 0, "n_jobs must be -1 (all CPUs) or >= 1"),
        ]
        _raise_first_failure("forest config", checks + self.postprocess_checks())


FOREST_PRESETS: dict[str, ForestConfig] = {
    # about 10-30 s of training on 2 CPU cores for a few images of 256-600 px (20 features, 100 trees)
    "default": ForestConfig(),
}
