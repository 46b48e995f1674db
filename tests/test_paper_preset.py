"""The `paper` preset as the paper (issue 9, docs/design.md §9.5): the dry run against the paper's
protocol item by item, the fixed patch set, pix2pix's epoch schedule and the reference's inference
mode, the U-Net's final weights, grain-ID sections, and the paper's raw scoring beside ours."""

from __future__ import annotations

import copy
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from rich.console import Console
from scipy import ndimage

from conftest import run_cli
from grainforge.commands.experiment import print_dry_run
from grainforge.data.io import read_csv, read_grey, write_boundary_png, write_png, write_tiff
from grainforge.data.pairs import Pair
from grainforge.data.torchdata import fixed_patch_set, patch_counts
from grainforge.experiment import RESULT_COLUMNS, load_experiment_config, shipped_configs
from grainforge.experiment.artefacts import prepare_simulated_ids
from grainforge.experiment.config import StageConfig, style_config
from grainforge.experiment.layout import RunLayout
from grainforge.experiment.paper import DEMO_DEVIATIONS, PAPER_PROTOCOL, fraction_plan, protocol
from grainforge.experiment.rows import raw_scores
from grainforge.grains import boundary_from_ids
from grainforge.metrics import evaluate_boundaries
from grainforge.segment import SEGMENT_PRESETS
from grainforge.segment.postprocess import closed_boundaries
from grainforge.segment.train import split_real
from grainforge.style import STYLE_PRESETS, StyleConfig, train_style
from grainforge.style.apply import paint
from grainforge.style.networks import UnetGenerator, set_dropout


# ---------------------------------------------------------------- the dry run vs the paper


def test_paper_config_gives_the_papers_protocol_item_by_item():
    ours = protocol(shipped_configs()["paper"])
    assert set(ours) == set(PAPER_PROTOCOL)
    for item, paper in PAPER_PROTOCOL.items():
        if item in DEMO_DEVIATIONS:
            continue
        assert ours[item] == paper, item
    # the built-in demo renders square images: 36 test images of 1600 px -> 16 tiles each, not 28
    assert ours["real image size px"] == (1600, 1600) and ours["test tiles"] == 36 * 16
    assert "map_raw" in RESULT_COLUMNS and "ari_raw" in RESULT_COLUMNS  # scored as the paper too


def test_fraction_plan_is_a_share_of_2800_patches_with_epoch_based_pix2pix():
    plan = {row["fraction"]: row for row in fraction_plan(shipped_configs()["paper"])}
    for fraction, row in plan.items():
        assert row["images"] == round(100 * fraction)  # nested fraction of the 100 training images
        assert row["patches"] == 28 * row["images"] == round(2800 * fraction)  # 28 patches per image
        assert row["pix2pix_iterations"] == 200 * row["patches"]  # 200 epochs at batch 1
    laptop = fraction_plan(shipped_configs()["laptop"])  # cpu-small: a fixed iteration count, no patch set
    assert {row["pix2pix_iterations"] for row in laptop} == {300} and {row["patches"] for row in laptop} == {None}


def test_cli_dry_run_prints_every_item_and_the_row_plan():
    result = run_cli("experiment", "paper", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for item, paper in PAPER_PROTOCOL.items():
        line = next(line for line in lines if f" {item} " in line)
        assert ("differs" in line) == (item in DEMO_DEVIATIONS), line
    assert "result rows: 144 in results.csv, 138 models trained" in result.stdout
    assert "28,800" in result.stdout and "560,000" in result.stdout and "one fixed set of 2800 patches" in result.stdout
    for name in ("demo", "laptop"):  # the other configs still validate and plan (in-process: no CLI start-up)
        text = io.StringIO()
        print_dry_run(load_experiment_config(name), Console(file=text, width=160))
        assert "random crops anywhere" in text.getvalue() and "result rows:" in text.getvalue()


# ---------------------------------------------------------------- fixed patch set


def test_fixed_patch_set_is_spread_evenly_nested_and_made_of_views():
    counts = patch_counts([f"i{k}" for k in range(7)], 30)
    assert sum(counts.values()) == 30 and set(counts.values()) == {4, 5}
    rng = np.random.default_rng(0)
    pairs = [Pair(f"i{k}", rng.random((50, 60), dtype=np.float32), rng.random((50, 60)) < 0.1) for k in range(7)]
    names = [p.name for p in pairs]
    everything = fixed_patch_set(pairs, names, 16, 30, seed=3)
    part = fixed_patch_set(pairs[2:4], names, 16, 30, seed=3)
    assert len(everything) == 30 and len(part) == counts["i2"] + counts["i3"]
    by_name = {p.name: p for p in everything}
    for patch in part:  # a subset of the images gets exactly its own patches of the one set
        assert np.array_equal(patch.image, by_name[patch.name].image)
        source = pairs[int(patch.name[1])]
        assert patch.image.shape == (16, 16) and np.shares_memory(patch.image, source.image)
        y, x = np.argwhere(source.image == patch.image[0, 0])[0]
        assert np.array_equal(source.boundary[y:y + 16, x:x + 16], patch.boundary)
    assert len({p.image[0, 0] for p in everything}) > 20  # positions differ


# ---------------------------------------------------------------- pix2pix as the reference


def test_pix2pix_epochs_set_the_iterations_and_an_explicit_count_replaces_them(tmp_path):
    paper = STYLE_PRESETS["paper"]
    assert paper.for_items(140).iters == 28_000 and paper.for_items(2800).iters == 560_000
    assert paper.with_iters(10).epochs is None and paper.with_iters(10).for_items(140).iters == 10
    assert STYLE_PRESETS["cpu-small"].for_items(2).iters == 1500  # cpu-small: fixed iterations
    config = dataclasses.replace(shipped_configs()["paper"], style=StageConfig(preset="paper", iters=7))
    assert style_config(config).iters == 7 and style_config(config).epochs is None
    tiny = StyleConfig(crop=32, ngf=4, ndf=4, batch_size=2, epochs=2, sample_every=0, checkpoint_every=0, n_samples=1)
    rows, cols = np.indices((40, 40)) // 10
    boundary = boundary_from_ids(4 * rows + cols)
    pairs = [Pair(f"p{k}", np.where(boundary, 0.2, 0.8).astype(np.float32), boundary) for k in range(3)]
    model = train_style(None, tiny, tmp_path / "style", pairs=pairs, device="cpu", progress=False)
    losses = read_csv(model / "losses.csv")
    assert int(losses[-1]["iter"]) == 2 * math.ceil(3 / 2)  # 2 epochs of 3 items at batch 2


def test_paper_inference_normalises_each_tile_with_its_own_statistics():
    torch.manual_seed(0)
    generator = UnetGenerator(5, ngf=4, dropout=0.5)
    with torch.no_grad():  # running statistics far from any batch's, so the two modes differ clearly
        for module in generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.fill_(0.5)
                module.running_var.fill_(4.0)
    before = copy.deepcopy(generator.state_dict())
    boundary = np.zeros((32, 32), dtype=bool)
    boundary[10, :] = boundary[:, 20] = True
    paper = dataclasses.replace(STYLE_PRESETS["paper"], crop=32, ngf=4)
    painted = paint(generator, boundary, paper, device=torch.device("cpu"), dropout=False)
    reference = copy.deepcopy(generator).train()  # the reference's test.py without --eval, dropout off
    set_dropout(reference, False)
    with torch.no_grad():
        expected = ((reference(torch.from_numpy(boundary.astype(np.float32))[None, None] * 2 - 1) + 1) / 2).clamp(0, 1)
    assert np.allclose(painted, expected[0, 0].numpy(), atol=1e-5)
    for key, value in generator.state_dict().items():  # running statistics untouched
        assert torch.equal(value, before[key]), key
    running = paint(generator, boundary, dataclasses.replace(paper, inference_batchnorm="running"),
                    device=torch.device("cpu"), dropout=False)
    assert np.abs(running - painted).mean() > 0.01


# ---------------------------------------------------------------- U-Net: every image, final weights


def test_segment_paper_preset_trains_on_every_image():
    config = SEGMENT_PRESETS["paper"]
    pairs = [Pair(f"p{k}", np.zeros((8, 8), np.float32), np.zeros((8, 8), bool)) for k in range(10)]
    train, held_out = split_real(pairs, config, 1.0, seed=0, hold_out=True)
    assert len(train) == 10 and held_out == []
    assert len(split_real(pairs, SEGMENT_PRESETS["cpu-small"], 1.0, seed=0, hold_out=True)[1]) == 2


# ---------------------------------------------------------------- Table 3's grain-ID sections


def test_simulated_ids_images_hold_grain_ids_over_n_with_zero_boundaries(tmp_path):
    layout = RunLayout(tmp_path)
    rows, cols = np.indices((24, 30)) // 8
    ids = (rows * 4 + cols + 1).astype(np.uint16)  # 12 grains, ids 1..12
    boundary = boundary_from_ids(ids)
    write_boundary_png(layout.sections / "labels" / "s0.png", boundary)
    write_tiff(layout.sections / "ids" / "s0.tif", ids)
    prepare_simulated_ids(layout, progress=False)
    image = read_grey(layout.simulated_ids / "images" / "s0.png")
    assert np.all(image[boundary] == 0)
    assert np.allclose(image[~boundary], np.round(ids[~boundary] / 12 * 255) / 255)
    assert np.array_equal(read_grey(layout.simulated_ids / "labels" / "s0.png") > 0.5, boundary)


# ---------------------------------------------------------------- raw scoring (the paper's) beside closed


def test_raw_scores_keep_the_networks_gaps_that_closing_would_mend(tmp_path):
    truth = np.zeros((64, 64), dtype=bool)
    truth[31, :] = truth[:, 31] = True  # four grains
    probability = ndimage.binary_dilation(truth, iterations=1).astype(np.float32) * 0.9 + 0.05  # 3 px band
    probability[10:14, 30:33] = 0.05  # a gap in the upper vertical line: raw merges the two upper grains
    write_png(tmp_path / "pred" / "probabilities" / "a.png", np.round(probability * 255).astype(np.uint8))
    write_boundary_png(tmp_path / "test" / "labels" / "a.png", truth)
    raw = raw_scores(tmp_path / "pred", tmp_path / "test", threshold=0.5)[0]
    assert raw["n_pred"] == 3 and raw["n_true"] == 4
    # the two lower grains match exactly (thinning restores the 1-px line); the merged upper grain (961 + 992 px
    # + the 4-px gap) overlaps the 992-px upper-right grain with IoU 992 / 1957 = 0.507: a match at IoU 0.5
    # only. AP = 3 / (3 + 0 + 1) at 0.5, 2 / (2 + 1 + 2) at the nine higher thresholds.
    assert raw["map"] == pytest.approx((3 / 4 + 9 * 2 / 5) / 10)
    # grainforge's closing mends the gap: all four grains match (plus a 1-px island the watershed line leaves in
    # the gap, a false positive): AP 4 / 5 at every threshold
    closed = evaluate_boundaries(truth, closed_boundaries(probability))
    assert closed["map"] == pytest.approx(4 / 5) and closed["map"] > raw["map"]


def test_a_run_started_before_the_new_keys_resumes(tmp_path):
    """real.patches / real.patch and simulation.zoom are new: a run folder whose config.yaml lacks them
    (their defaults) resumes; a real change is still refused."""
    import yaml

    from grainforge.config import config_to_dict
    from grainforge.errors import UserError
    from grainforge.experiment import check_same_config

    config = shipped_configs()["laptop"]
    saved = config_to_dict(config)
    del saved["real"]["patches"], saved["real"]["patch"], saved["simulation"]["zoom"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    check_same_config(tmp_path, config)
    saved["simulation"]["size"] = 32
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(UserError, match="different simulation"):
        check_same_config(tmp_path, config)
