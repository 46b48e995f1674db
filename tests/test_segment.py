"""U-Net segmentation pieces on synthetic arrays: network, tiled inference, post-processing, loss,
batch composition, grain tables and the ASTM grain-size number."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from scipy import ndimage

from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids, label_grains
from grainforge.metrics import average_precision
from grainforge.segment.config import SEGMENT_PRESETS, SegmentConfig
from grainforge.segment.inference import full_probability, tiled_probability
from grainforge.tiling import aligned_layout, aligned_origins
from grainforge.segment.network import UNet, load_model, save_model
from grainforge.segment.postprocess import closed_boundaries, postprocess, threshold_boundaries, watershed_regions
from grainforge.grainsize import astm_g_from_grains_per_mm2
from grainforge.segment.predict import gather_images, grain_rows, overlay, summary_row
from grainforge.segment.train import learning_rate_factor, segmentation_loss, source_counts

RECEPTIVE_RADIUS_DEPTH2 = 24  # measured 22 px (gradient support) for UNet(depth=2), plus a margin


def _voronoi_ids(shape: tuple[int, int], n_seeds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, 1, size=(n_seeds, 2)) * np.array(shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    distance = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    return distance.argmin(axis=-1)


class _PointwiseNet(torch.nn.Module):
    """A 'network' whose boundary probability at each pixel is sigmoid(4 x - 2) of that pixel alone."""

    size_multiple = 16

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 4 * x - 2], dim=1)


def test_unet_keeps_size_and_gives_two_class_logits():
    net = UNet(width=4, depth=3)
    assert net.size_multiple == 8
    assert net(torch.rand(2, 1, 48, 40)).shape == (2, 2, 48, 40)


@pytest.mark.parametrize("shape", [(150, 230), (37, 300), (5, 9), (1, 40)])
def test_tiling_pads_blends_and_crops_exactly(shape):
    """A pointwise net makes every tile exact, so the blend must reproduce it everywhere (edges, tiny images)."""
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    expected = 1.0 / (1.0 + np.exp(-(4 * image - 2)))
    got = tiled_probability(_PointwiseNet(), image, tile=64, overlap=0.25)
    assert got.shape == shape
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_tiled_prediction_equals_full_image_away_from_seams():
    torch.manual_seed(0)
    net = UNet(width=4, depth=2).eval()
    shape, tile, overlap, radius = (150, 230), 128, 0.25, RECEPTIVE_RADIUS_DEPTH2
    image = ndimage.gaussian_filter(np.random.default_rng(0).random(shape), 2).astype(np.float32)
    full = full_probability(net, image)
    tiled = tiled_probability(net, image, tile=tile, overlap=overlap, tile_batch=3)

    def good_axis(length: int) -> np.ndarray:
        tile_len, stride, margin, padded = aligned_layout(length, tile, overlap, net.size_multiple)
        padded_index = np.arange(length) + margin
        good = np.ones(length, dtype=bool)
        for start in aligned_origins(padded, tile_len, stride):
            inside = (padded_index >= start) & (padded_index < start + tile_len)
            offset = padded_index - start
            good &= ~inside | ((offset >= radius) & (offset < tile_len - radius))
        good[:radius] = good[length - radius:] = False  # the full pass zero-pads at the image edge
        return good

    mask = good_axis(shape[0])[:, None] & good_axis(shape[1])[None, :]
    assert mask.sum() > 2000
    assert np.abs(tiled - full)[mask].max() < 1e-5
    assert np.abs(tiled - full).max() < 0.5  # and the blend stays close near the seams


def test_postprocess_closes_a_two_pixel_gap():
    boundary = np.zeros((40, 60), dtype=bool)
    boundary[:, 30] = True
    boundary[18:20, 30] = False  # 2-pixel gap
    probability = boundary.astype(np.float32)
    assert label_grains(threshold_boundaries(probability)).max() == 1
    closed = closed_boundaries(probability, marker_threshold=0.3, marker_erosion=2, min_grain_area=30)
    labels = label_grains(closed)
    assert labels.max() == 2
    assert set(np.unique(labels[:, :25])) == {1} and set(np.unique(labels[:, 35:])) == {2}
    assert closed[:18, 30].all() and closed[20:, 30].all() and closed.sum() == 40  # on the ridge, 1 px wide


def test_postprocess_recovers_blurred_gappy_boundaries_better_than_threshold():
    ids = _voronoi_ids((160, 160), 25, seed=3)
    truth = boundary_from_ids(ids)
    damaged = truth.copy()
    rows, cols = np.nonzero(truth)
    drop = np.random.default_rng(0).random(rows.size) < 0.02
    for r, c in zip(rows[drop], cols[drop]):  # knock out short segments (gaps of ~2-3 px)
        damaged[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = False
    probability = np.clip(ndimage.gaussian_filter(damaged.astype(np.float32), 1.0) * 2.5, 0, 1)
    config = SegmentConfig(marker_erosion=3)
    closed, closed_labels = postprocess(probability, config)
    _, threshold_labels = postprocess(probability, config, threshold_only=True)
    truth_labels = label_grains(truth)
    assert average_precision(truth_labels, closed_labels) > 0.9
    assert average_precision(truth_labels, threshold_labels) < 0.2  # the gaps merge grains
    assert closed_labels.max() == len(np.unique(watershed_regions(probability, 0.3, 3, 30)))  # every region closed


def test_small_regions_merge_into_a_neighbour():
    probability = np.zeros((60, 60), dtype=np.float32)
    probability[:, 30] = 1.0
    probability[10:16, 5:11] = 1.0
    probability[12:14, 7:9] = 0.0  # a 2 x 2 'grain' inside a ring: far below min_grain_area
    regions = watershed_regions(probability, marker_threshold=0.3, marker_erosion=0, min_grain_area=30)
    assert len(np.unique(regions)) == 2
    kept = watershed_regions(probability, marker_threshold=0.3, marker_erosion=0, min_grain_area=0)
    assert len(np.unique(kept)) == 3


def test_postprocess_without_any_grain_core_is_one_grain():
    regions = watershed_regions(np.ones((10, 10), dtype=np.float32))
    assert np.unique(regions).tolist() == [1]
    assert not closed_boundaries(np.ones((10, 10), dtype=np.float32)).any()


def test_loss_is_small_for_a_confident_correct_prediction_and_weights_boundaries():
    boundary = torch.zeros(2, 1, 16, 16)
    boundary[:, :, 8, :] = 1.0
    good = torch.cat([10 * (1 - boundary), 10 * boundary], dim=1) - 5
    assert segmentation_loss(good, boundary, 5.0, 1.0) < 0.01
    all_grain = torch.cat([torch.ones_like(boundary), -torch.ones_like(boundary)], dim=1)
    light = segmentation_loss(all_grain, boundary, 1.0, 0.0)
    heavy = segmentation_loss(all_grain, boundary, 5.0, 0.0)
    assert heavy > light  # missing boundary pixels costs more with the boundary weight


def test_batch_counts_follow_the_documented_rule():
    assert source_counts(8, True, [], 0.5) == {"real": 8}
    assert source_counts(8, True, ["syn"], 0.5) == {"real": 4, "syn": 4}
    assert source_counts(8, True, ["a", "b"], 0.5) == {"real": 4, "a": 2, "b": 2}
    assert source_counts(8, True, ["a", "b", "c"], 0.5) == {"real": 4, "a": 2, "b": 1, "c": 1}
    assert source_counts(8, False, ["a", "b"], 0.5) == {"a": 4, "b": 4}
    with pytest.raises(UserError, match="extras: 5 extra sources but only 4 synthetic patches per batch of 8"):
        source_counts(8, True, list("abcde"), 0.5)
    with pytest.raises(UserError, match="no training data"):
        source_counts(8, False, [], 0.5)


def test_cosine_schedule_runs_from_lr_to_the_floor():
    config = SEGMENT_PRESETS["cpu-small"]
    assert learning_rate_factor(config, 0) == pytest.approx(1.0)
    assert learning_rate_factor(config, config.iters) == pytest.approx(config.min_lr_factor)
    assert learning_rate_factor(SEGMENT_PRESETS["paper"], 12345) == 1.0


def test_config_validation_names_the_field():
    with pytest.raises(UserError, match="crop must be a positive multiple"):
        SegmentConfig(crop=100, depth=4).validate()
    for preset in SEGMENT_PRESETS.values():
        preset.validate()


def test_grain_rows_and_summary_on_a_known_map():
    ids = np.zeros((20, 30), dtype=int)
    ids[:, 10:] = 1
    ids[5:15, 15:25] = 2  # an interior 10 x 10 grain inside grain 1
    boundary = boundary_from_ids(ids)
    labels = label_grains(boundary)
    rows = grain_rows(labels, um_per_px=2.0)
    assert len(rows) == 3
    inner = next(r for r in rows if not r["touches_border"])
    assert inner["area_px"] == 9 * 9  # boundary_from_ids takes its last row and column
    assert inner["area_um2"] == 4 * 81 and inner["n_neighbours"] == 1
    assert inner["perimeter_px"] > 0
    summary = summary_row("x", labels, rows, um_per_px=2.0)
    assert summary["n_grains"] == 3 and summary["n_interior_grains"] == 1 and summary["mean_area_px"] == 81
    area_mm2 = 20 * 30 * (2e-3) ** 2
    # E112: the inner grain counts 1; the two outer grains hold two corners each, 1/4 per corner
    assert summary["n_grains_weighted"] == 2.0
    assert summary["grains_per_mm2"] == pytest.approx(2.0 / area_mm2)
    assert summary["astm_g"] == pytest.approx(astm_g_from_grains_per_mm2(summary["grains_per_mm2"]))


def test_summary_counts_no_grain_below_three_pixels():
    boundary = np.zeros((20, 20), dtype=bool)
    boundary[10] = True  # two grains holding two corners each: 4 x 1/4
    boundary[3:6, 3:6] = True
    boundary[4, 4] = False  # a 1-pixel grain inside a ring: a fragment of the boundary network
    labels = label_grains(boundary)
    summary = summary_row("x", labels, grain_rows(labels), um_per_px=None)
    assert summary["n_grains"] == 3 and summary["n_grains_weighted"] == 1.0


def test_overlay_paints_boundaries_over_the_grey_image():
    image = np.full((4, 4), 0.5, dtype=np.float32)
    boundary = np.zeros((4, 4), dtype=bool)
    boundary[1, :] = True
    rgb = overlay(image, boundary)
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert (rgb[1] == (255, 40, 40)).all() and (rgb[0] == 128).all()


def test_gather_images_rejects_missing_paths_and_duplicate_stems(tmp_path):
    from grainforge.data.io import write_png

    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "images").mkdir(parents=True)
    write_png(tmp_path / "a" / "x.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "b" / "images" / "y.png", np.zeros((4, 4), np.uint8))
    assert [p.name for p in gather_images([tmp_path / "a", tmp_path / "b"])] == ["x.png", "y.png"]
    with pytest.raises(UserError, match="same name"):
        gather_images([tmp_path / "a", tmp_path / "a" / "x.png"])
    with pytest.raises(UserError, match="no such image or folder"):
        gather_images([tmp_path / "nope.png"])


def test_model_files_round_trip_and_bad_files_are_user_errors(tmp_path):
    config = SegmentConfig(width=4, depth=2, crop=32, tile=32)
    net = UNet(4, 2)
    save_model(tmp_path / "m" / "best.pt", net, config, iteration=3)
    loaded, loaded_config, payload = load_model(tmp_path / "m")
    assert loaded_config == config and payload["iteration"] == 3
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(UserError, match="no such model"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no best.pt"):
        load_model(tmp_path / "empty")
    (tmp_path / "bad.pt").write_bytes(b"garbage, not a torch file")
    with pytest.raises(UserError, match="bad.pt: corrupt or unreadable U-Net segmentation model"):
        load_model(tmp_path / "bad.pt")
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="other.pt: not a grainforge model file"):
        load_model(tmp_path / "other.pt")


def test_validation_hold_out_is_shared_by_every_nested_fraction():
    from grainforge.data.pairs import Pair
    from grainforge.segment.train import split_real

    pairs = [Pair(f"p{i:02d}", np.zeros((4, 4), np.float32), np.zeros((4, 4), bool)) for i in range(20)]
    config = SegmentConfig(val_fraction=0.2, val_min_images=5)
    quarter, val_q = split_real(pairs, config, 0.25, seed=7, hold_out=True)
    half, val_h = split_real(pairs, config, 0.5, seed=7, hold_out=True)
    names = lambda ps: {p.name for p in ps}  # noqa: E731
    assert names(val_q) == names(val_h) and len(val_q) == 4
    assert names(quarter) < names(half) and not names(half) & names(val_h)
    assert (len(quarter), len(half)) == (4, 8)
    as_given, no_val = split_real(pairs, config, 1.0, seed=7, hold_out=False)
    assert len(as_given) == 20 and no_val == []
    assert split_real(pairs, config, 0.0, seed=7, hold_out=True)[0] == []
