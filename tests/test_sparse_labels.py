"""Sparse labels (docs/design.md §3.5): pixels of the ignore value are untraced; reading, the masked U-Net
loss against a hand computation, forest sampling that never sees them, validation and scoring that refuse
them, and non-binary labels that still fail."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from conftest import assert_user_error, run_cli
from grainforge.data.io import read_csv, write_png
from grainforge.data.pairs import Pair, label_to_boundary, label_to_sparse_boundary, load_pairs, parse_ignore_value
from grainforge.data.split import train_test_split
from grainforge.data.torchdata import UNTRACED, PairCropDataset
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids
from grainforge.microscope import render, voronoi_grains
from grainforge.segment import ForestConfig, SegmentConfig, train_segmenter
from grainforge.segment.forest import fit_forest, forest_probability, sample_pixels
from grainforge.segment.train import segmentation_loss, split_real

IGNORE = 128


def _sparse_label(shape=(20, 30), seed=0):
    """A 0/255 label with every 5th row and column boundary, its right third untraced (128)."""
    label = np.zeros(shape, np.uint8)
    label[::5] = 255
    label[:, ::5] = 255
    untraced = np.zeros(shape, bool)
    untraced[:, 2 * shape[1] // 3:] = True
    label[untraced] = IGNORE
    return label, untraced


def test_sparse_label_reads_boundary_and_untraced_mask():
    label, untraced = _sparse_label()
    boundary, ignore = label_to_sparse_boundary(label, "x.png", ignore_value=IGNORE)
    np.testing.assert_array_equal(ignore, untraced)
    np.testing.assert_array_equal(boundary, (label == 255) & ~untraced)
    # auto: the minority among the traced pixels (255 here) whatever the untraced share
    assert boundary.sum() == ((label == 255) & ~untraced).sum() == 20 * 4 + 4 * 16
    # 16-bit labels: the ignore value is in 8-bit units (128 -> 32896)
    wide = label.astype(np.uint16) * 257
    boundary16, ignore16 = label_to_sparse_boundary(wide, "x.tif", ignore_value=IGNORE)
    np.testing.assert_array_equal(boundary16, boundary)
    np.testing.assert_array_equal(ignore16, ignore)
    # a fully traced label read with an ignore value is dense (ignore None), the same map as before
    dense = np.where(untraced, 0, label).astype(np.uint8)
    boundary_dense, none = label_to_sparse_boundary(dense, "d.png", ignore_value=IGNORE)
    assert none is None
    np.testing.assert_array_equal(boundary_dense, label_to_boundary(dense, "d.png"))


def test_labels_that_stay_errors():
    label, _ = _sparse_label()
    # no ignore value: a label that is 1/3 128s is refused as sparse, naming the fix
    with pytest.raises(UserError, match=r"x.png: 33 % of the label is 128, the ignore value of sparse"):
        label_to_boundary(label, "x.png")
    # another mid-grey value is not the ignore value: still "not binary"
    other = np.where(label == IGNORE, 100, label).astype(np.uint8)
    with pytest.raises(UserError, match="not binary"):
        label_to_sparse_boundary(other, "y.png", ignore_value=IGNORE)
    # strict mode (threshold None) without an ignore value: a single 128 pixel is not binary
    one = np.where(label == IGNORE, 0, label).astype(np.uint8)
    one[1, 1] = IGNORE
    with pytest.raises(UserError, match="not binary"):
        label_to_boundary(one, "z.png", threshold=None)
    assert label_to_sparse_boundary(one, "z.png", threshold=None, ignore_value=IGNORE)[1].sum() == 1
    with pytest.raises(UserError, match="every pixel has the ignore value"):
        label_to_sparse_boundary(np.full((4, 4), IGNORE, np.uint8), "e.png", ignore_value=IGNORE)
    traced_grain_only = np.where(label == 255, IGNORE, label).astype(np.uint8)  # only grain traced
    with pytest.raises(UserError, match="no boundary pixels"):
        label_to_sparse_boundary(traced_grain_only, "g.png", boundary_value=255, ignore_value=IGNORE)
    for bad in (0, 255, 300, "grey"):
        with pytest.raises(UserError, match="must be a grey level in 1..254"):
            parse_ignore_value(bad)
    assert parse_ignore_value("none") is None and parse_ignore_value("200") == 200
    with pytest.raises(UserError, match="ignore_value must be in 1..254"):
        SegmentConfig(ignore_value=0).validate()


def test_folder_and_h5_pairs_carry_the_mask(tmp_path):
    label, untraced = _sparse_label()
    write_png(tmp_path / "set" / "images" / "a.png", np.full(label.shape, 90, np.uint8))
    write_png(tmp_path / "set" / "labels" / "a.png", label)
    (pair,) = load_pairs(tmp_path / "set", ignore_value=IGNORE)
    np.testing.assert_array_equal(pair.ignore, untraced)
    with pytest.raises(UserError, match="ignore value of sparse"):
        load_pairs(tmp_path / "set")
    with h5py.File(tmp_path / "d.h5", "w") as handle:  # a 0/255/128 'label' is a sparse boundary map, not grain ids
        handle["image"] = np.full((1, *label.shape), 90, np.uint8)
        handle["label"] = label[None]
    (h5_pair,) = load_pairs(tmp_path / "d.h5", ignore_value=IGNORE)
    np.testing.assert_array_equal(h5_pair.ignore, untraced)
    np.testing.assert_array_equal(h5_pair.boundary, pair.boundary)


def test_crops_mark_untraced_pixels_through_every_augmentation():
    rng = np.random.default_rng(1)
    boundary, ignore = rng.random((40, 40)) < 0.3, rng.random((40, 40)) < 0.4
    boundary &= ~ignore
    image = (0.1 + 0.3 * boundary + 0.6 * ignore).astype(np.float32)  # encodes each pixel's class
    dataset = PairCropDataset([Pair("p", image, boundary, ignore)], crop=16, length=24, seed=0)
    for k in range(len(dataset)):
        crop, target = dataset[k]
        np.testing.assert_array_equal(target == UNTRACED, crop > 0.65)
        np.testing.assert_array_equal(target == 1.0, (crop > 0.35) & (crop < 0.45))


def _hand_loss(logits: np.ndarray, target: np.ndarray, boundary_weight: float, dice_weight: float) -> float:
    """The loss of docs/design.md §8.2 over the pixels with target 0 or 1, in float64 numpy."""
    traced = target >= 0
    z = logits.transpose(0, 2, 3, 1)[traced]  # (n, 2)
    t = target[traced].astype(int)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    w = np.where(t == 1, boundary_weight, 1.0)
    cross_entropy = -(w * log_p[np.arange(t.size), t]).sum() / w.sum()
    p = np.exp(log_p[:, 1])
    dice = (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return cross_entropy + dice_weight * (1 - dice)


def test_masked_loss_equals_the_loss_on_the_traced_pixels():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    boundary = (torch.rand(2, 1, 8, 8, generator=generator) < 0.3).double()
    sparse = boundary.clone()
    sparse[..., 5:] = UNTRACED  # right 3 columns untraced
    loss = segmentation_loss(logits, sparse, boundary_weight=5.0, dice_weight=1.0)
    by_hand = _hand_loss(logits.detach().numpy(), sparse[:, 0].numpy(), 5.0, 1.0)
    assert loss.item() == pytest.approx(by_hand, rel=1e-12)
    # the same as the loss of the traced columns alone, and not the loss of the whole label
    left = segmentation_loss(logits[..., :5], boundary[..., :5], 5.0, 1.0)
    assert loss.item() == pytest.approx(left.item(), rel=1e-12)
    assert abs(loss.item() - segmentation_loss(logits, boundary, 5.0, 1.0).item()) > 1e-3
    # untraced pixels get no gradient; a fully traced label is the plain weighted CE + Dice
    loss.backward()
    assert torch.count_nonzero(logits.grad[..., 5:]) == 0 and torch.count_nonzero(logits.grad[..., :5]) > 0
    dense = segmentation_loss(logits, boundary, 5.0, 0.5)
    plain_ce = F.cross_entropy(logits, boundary[:, 0].long(), weight=torch.tensor([1.0, 5.0], dtype=torch.float64))
    assert dense.item() == pytest.approx(_hand_loss(logits.detach().numpy(), boundary[:, 0].numpy(), 5.0, 0.5), rel=1e-12)
    assert segmentation_loss(logits, boundary, 5.0, 0.0).item() == pytest.approx(plain_ce.item(), rel=1e-12)
    nothing = segmentation_loss(logits, torch.full_like(boundary, UNTRACED), 5.0, 1.0)
    assert nothing.item() == 0.0


def _rendered(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    ids = voronoi_grains(size, mean_area_px=300, seed=seed)
    return render(ids, seed=seed), boundary_from_ids(ids)


def _balanced_accuracy(probability: np.ndarray, boundary: np.ndarray) -> float:
    found = probability > 0.5
    return 0.5 * (found[boundary].mean() + (~found[~boundary]).mean())


def test_forest_ignores_garbage_under_untraced_pixels():
    config = ForestConfig(n_estimators=15, max_depth=10, pixels_per_image=3000, num_sigma=3, n_jobs=1)
    image, clean = _rendered(0)
    untraced = np.zeros(clean.shape, bool)
    untraced[:, 48:] = True
    garbage = clean.copy()
    garbage[untraced] = ~clean[untraced]  # the right half's label inverted: boundary <-> grain
    sparse_garbage = Pair("a", image, garbage & ~untraced, untraced)
    sparse_clean = Pair("a", image, clean & ~untraced, untraced)
    # the same training set whatever lies under the untraced half
    for got, expected in zip(sample_pixels([sparse_garbage], config, seed=0), sample_pixels([sparse_clean], config, seed=0)):
        np.testing.assert_array_equal(got, expected)
    test_image, test_boundary = _rendered(1)
    accuracy = {}
    for name, pair in {"sparse": sparse_garbage, "clean": Pair("a", image, clean),
                       "garbage": Pair("a", image, garbage)}.items():
        forest = fit_forest([pair], config, seed=0)
        accuracy[name] = _balanced_accuracy(forest_probability(forest, test_image, config), test_boundary)
    # like the forest on the fully traced label, far better than one that learns the garbage
    assert accuracy["sparse"] > 0.85 and abs(accuracy["sparse"] - accuracy["clean"]) < 0.05, accuracy
    assert accuracy["garbage"] < accuracy["sparse"] - 0.15, accuracy


@pytest.mark.filterwarnings("ignore::grainforge.errors.GrainforgeWarning")  # 3 iterations find no boundary yet
def test_sparse_pairs_train_a_unet_and_are_never_held_out(tmp_path):
    image, clean = _rendered(2, size=64)
    untraced = np.zeros(clean.shape, bool)
    untraced[32:] = True
    sparse = Pair("s", image, clean & ~untraced, untraced)
    dense = [Pair(f"d{k}", image, clean) for k in range(5)]
    config = SegmentConfig(width=4, depth=2, iters=3, batch_size=2, crop=32, tile=32, val_every=3, checkpoint_every=3)
    # the sparse pair stays in training; the held-out image is the one a fully traced set holds out
    expected = train_test_split([p.name for p in dense], config.val_fraction, seed=0)[1]
    for seed in range(4):
        train, held = split_real([sparse, *dense], config, 1.0, seed=seed, hold_out=True)
        assert [p.name for p in held] == train_test_split([p.name for p in dense], config.val_fraction, seed)[1]
        assert "s" in [p.name for p in train] and len(train) == 5
    assert [p.name for p in split_real(dense, config, 1.0, seed=0, hold_out=True)[1]] == expected
    model = train_segmenter(None, tmp_path / "unet", config, real_pairs=[sparse], device="cpu", progress=False)
    assert np.isfinite(float(read_csv(model / "log.csv")[-1]["loss"]))
    write_png(tmp_path / "val" / "images" / "s.png", np.round(image * 255).astype(np.uint8))
    write_png(tmp_path / "val" / "labels" / "s.png", np.where(untraced, IGNORE, clean * 255).astype(np.uint8))
    with pytest.raises(UserError, match="s is a sparse label .* pass fully traced --val pairs"):
        train_segmenter(None, tmp_path / "unet2", config, real_pairs=[sparse], val=tmp_path / "val", device="cpu",
                        progress=False)
    dense_config = dataclasses.replace(config, ignore_value=None)  # without an ignore value: refused as sparse
    with pytest.raises(UserError, match="ignore value of sparse"):
        train_segmenter(tmp_path / "val", tmp_path / "unet3", dense_config, device="cpu", progress=False)


def test_evaluate_refuses_a_sparse_truth_in_one_line(tmp_path):
    label, _ = _sparse_label()
    write_png(tmp_path / "truth" / "a.png", label)
    write_png(tmp_path / "pred" / "a.png", np.where(label == IGNORE, 0, label).astype(np.uint8))
    result = run_cli("evaluate", tmp_path / "pred", tmp_path / "truth", "--out", tmp_path / "m.csv")
    assert_user_error(result, "a.png: 33 % of the label is 128", "scoring and statistics need every boundary traced")
    result = run_cli("segment", "train", "--method", "forest", "--real", tmp_path, "--out", tmp_path / "f",
                     "--ignore-value", "255")
    assert_user_error(result, "ignore value '255': must be a grey level in 1..254")
