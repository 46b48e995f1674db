"""pix2pix configuration: a dataclass with the reference values and two presets.

``paper``: the reference pix2pix (junyanz/pytorch-CycleGAN-and-pix2pix) at 256 px for a GPU: unet_256,
ngf = ndf = 64, batch 1, Adam 2e-4 / 0.5, lambda_L1 = 100; an epoch-based schedule, 200 epochs over the
training items (100 at constant lr, then linear decay to 0), so a run on 5 % of the 2800 patches is 20
times shorter than one on all of them; applied as the reference's test.py does without ``--eval``:
batch norm normalises each tile with its own statistics and dropout stays on.
``cpu-small`` differs on purpose, to train to realistic output on the demo data in under 10 minutes
on 2 CPU cores: 128 px crops, ngf = ndf = 24, batch 4, a fixed 1500 iterations at every real fraction
(no epochs: a 2-image fraction would get almost no training), and batch norm applied with its
running statistics (deterministic tone across tiles; the reference's per-tile statistics suit batch 1
on 256 px images only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from grainforge.errors import UserError
from grainforge.style.networks import unet_depth


@dataclass(frozen=True)
class StyleConfig:
    """Networks, optimiser, schedule and logging of a pix2pix run (sizes in px, rates per iteration)."""

    crop: int = 256                  # training crop (square, power of two >= 32); U-Net depth = log2(crop)
    ngf: int = 64                    # generator width of the outermost level
    ndf: int = 64                    # discriminator width of the first layer
    dropout: float = 0.5             # in the decoder blocks next to the bottleneck
    upsample: Literal["transpose", "resize"] = "transpose"  # decoder up-sampling (networks.up_convolution)
    batch_size: int = 1
    iters: int = 560_000             # paper: 200 epochs over 2800 training crops at batch 1
    epochs: int | None = None        # set: iters = epochs x ceil(training items / batch_size), the reference's schedule
    decay_fraction: float = 0.5      # last fraction of iters: lr decays linearly to 0
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_l1: float = 100.0
    augment: bool = True             # random flips / rot90 of the crops
    inference_dropout: bool = True   # pix2pix keeps dropout on when applying (its noise source)
    inference_batchnorm: Literal["running", "batch"] = "running"  # batch: each tile's own statistics (the reference, no --eval)
    apply_overlap: float = 0.25      # tile overlap when applying, as a fraction of crop
    apply_batch: int = 8             # tiles per forward pass when applying
    log_every: int = 10              # iterations between rows of losses.csv
    sample_every: int = 5000         # iterations between sample grids (0 = only at the end)
    checkpoint_every: int = 5000     # iterations between checkpoints (0 = only at the end)
    n_samples: int = 4               # rows of the sample grid

    @property
    def depth(self) -> int:
        """U-Net down-samplings: log2(crop)."""
        return unet_depth(self.crop)

    def validate(self) -> None:
        """UserError naming the key if a value is out of range."""
        try:
            unet_depth(self.crop)
        except ValueError as err:
            raise UserError(f"style config crop: {err}; use 32, 64, 128, 256 or 512") from err
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"style config epochs: must be >= 1 (or null for a fixed iters), got {self.epochs}")
        if self.inference_batchnorm not in ("running", "batch"):
            raise UserError(f"style config inference_batchnorm: {self.inference_batchnorm!r} is not running or batch")
        positive = ("ngf", "ndf", "batch_size", "iters", "log_every", "n_samples", "apply_batch")
        for key in positive:
            if getattr(self, key) < 1:
                raise UserError(f"style config {key}: must be >= 1, got {getattr(self, key)}")
        for key in ("sample_every", "checkpoint_every"):
            if getattr(self, key) < 0:
                raise UserError(f"style config {key}: must be >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"style config dropout: must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise UserError(f"style config decay_fraction: must be in [0, 1], got {self.decay_fraction}")
        if not 0.0 <= self.apply_overlap < 1.0:
            raise UserError(f"style config apply_overlap: must be in [0, 1), got {self.apply_overlap}")
        if self.lr <= 0 or not 0.0 <= self.beta1 < 1.0 or self.lambda_l1 < 0:
            raise UserError("style config lr/beta1/lambda_l1: need lr > 0, 0 <= beta1 < 1, lambda_l1 >= 0")

    def lr_at(self, iteration: int) -> float:
        """Learning rate at 0-based ``iteration``: constant, then linear decay towards 0 (reference rule)."""
        n_decay = int(round(self.iters * self.decay_fraction))
        n_const = self.iters - n_decay
        return self.lr * (1.0 - max(0, iteration - n_const) / (n_decay + 1))

    def with_iters(self, iters: int | None) -> StyleConfig:
        """A copy with ``iters`` replaced and the epoch schedule dropped (None = unchanged); validated."""
        if iters is None:
            return self
        if iters < 1:
            raise UserError(f"iters {iters}: must be >= 1")
        return dataclasses.replace(self, iters=iters, epochs=None)

    def for_items(self, n_items: int) -> StyleConfig:
        """A copy whose ``iters`` covers ``epochs`` passes over ``n_items`` training items (unchanged
        without epochs): the reference's epoch-based schedule, e.g. 200 x 2800 = 560,000 at batch 1."""
        if self.epochs is None:
            return self
        return dataclasses.replace(self, iters=self.epochs * -(-n_items // self.batch_size))


STYLE_PRESETS: dict[str, StyleConfig] = {
    "paper": StyleConfig(epochs=200, inference_batchnorm="batch"),
    "cpu-small": StyleConfig(crop=128, ngf=24, ndf=24, batch_size=4, iters=1500, apply_batch=16,
                             sample_every=500, checkpoint_every=250),
}
