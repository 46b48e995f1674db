"""The random-forest segmentation baseline: quality on rendered micrographs, determinism, the same
outputs as a U-Net model, model files that cannot run code, one-line input errors, and the warning for
a model that finds no boundary on its own training images (seconds on a CPU, 128 px images)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import yaml

from conftest import assert_user_error, run_cli
from grainforge.data.io import write_png
from grainforge.data.pairs import Pair, load_pairs
from grainforge.errors import GrainforgeWarning, UserError
from grainforge.grains import boundary_from_ids
from grainforge.metrics import evaluate_boundaries, evaluate_folders
from grainforge.microscope import render, voronoi_grains
from grainforge.segment import ForestConfig, SegmentConfig, predict, train_forest, train_segmenter
from grainforge.segment.forest import (FOREST_FILE, fit_forest, forest_probability, load_forest, sample_pixels,
                                       save_forest)
from grainforge.segment.postprocess import missing_boundary_warnings, postprocess

SMALL = ForestConfig(n_estimators=20, pixels_per_image=4000, n_jobs=1)
SMALL_YAML = {"base": "default", "n_estimators": 20, "pixels_per_image": 4000, "n_jobs": 1}


def _micrograph_folder(root: Path, seeds: range, size: int = 128) -> Path:
    """Rendered etched micrographs (virtual microscope) of Laguerre grain maps of ~400 px grains, with
    their boundary labels (255 = boundary)."""
    for seed in seeds:
        ids = voronoi_grains(size, mean_area_px=400, seed=seed)
        write_png(root / "images" / f"m{seed}.png", np.round(render(ids, seed=seed) * 255).astype(np.uint8))
        write_png(root / "labels" / f"m{seed}.png", boundary_from_ids(ids).astype(np.uint8) * 255)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("micrographs")
    return {"train": _micrograph_folder(root / "train", range(3)), "test": _micrograph_folder(root / "test", range(10, 12))}


@pytest.fixture(scope="module")
def forest_model(data, tmp_path_factory) -> Path:
    return train_forest(data["train"], tmp_path_factory.mktemp("forest") / "model", SMALL, seed=0, progress=False)


def test_forest_segments_held_out_micrographs_where_a_constant_model_finds_nothing(forest_model, data, tmp_path):
    predict(forest_model, [data["test"] / "images"], tmp_path / "pred", progress=False)
    scores = evaluate_folders(tmp_path / "pred" / "boundaries", data["test"] / "labels", workers=1)
    # measured MAP 0.67, ARI 0.89 (seed 0); a constant probability map is one grain: MAP 0
    assert np.mean([s["map"] for s in scores]) > 0.6
    assert np.mean([s["ari"] for s in scores]) > 0.8
    test = load_pairs(data["test"])[0]
    for constant in (0.0, 0.5, 1.0):
        boundary, _ = postprocess(np.full(test.image.shape, constant, np.float32), SMALL)
        assert evaluate_boundaries(test.boundary, boundary)["map"] == 0.0
    run = json.loads((forest_model / "run.json").read_text())
    assert run["method"] == "forest" and run["warnings"] == [] and run["train_images"]["real"] == ["m0", "m1", "m2"]


def test_same_seed_gives_identical_probability_maps_whatever_the_thread_count(data):
    pairs, image = load_pairs(data["train"]), load_pairs(data["test"])[0].image
    one = forest_probability(fit_forest(pairs, SMALL, seed=3), image, SMALL)
    two_threads = dataclasses.replace(SMALL, n_jobs=2)
    again = forest_probability(fit_forest(pairs, two_threads, seed=3), image, two_threads)
    other = forest_probability(fit_forest(pairs, SMALL, seed=4), image, SMALL)
    assert one.dtype == np.float32 and one.shape == image.shape and 0.0 <= one.min() and one.max() <= 1.0
    np.testing.assert_array_equal(one, again)
    assert np.abs(one - other).max() > 0.05


def test_training_sample_is_class_balanced_and_capped_per_image(data):
    pairs = load_pairs(data["train"])
    features, classes = sample_pixels(pairs, dataclasses.replace(SMALL, pixels_per_image=1000), seed=0)
    assert features.shape == (3 * 1000, 20) and features.dtype == np.float32
    assert int(classes.sum()) == 3 * 500  # 500 boundary + 500 grain pixels of each 128 x 128 image
    features, classes = sample_pixels(pairs, dataclasses.replace(SMALL, max_pixels=1500), seed=0)
    assert features.shape == (3 * 500, 20) and int(classes.sum()) == 3 * 250  # the total cap, split over 3 images
    # a cap of 4000 exceeds twice the ~1600 boundary pixels of an image: all of them, and as many grain pixels
    n_boundary = [int(pair.boundary.sum()) for pair in pairs]
    assert max(n_boundary) < 2000
    features, classes = sample_pixels(pairs, SMALL, seed=0)
    assert features.shape == (2 * sum(n_boundary), 20) and int(classes.sum()) == sum(n_boundary)
    with pytest.raises(UserError, match="m0: image 128x128 and boundary label 64x64 differ"):
        fit_forest([Pair("m0", pairs[0].image, pairs[0].boundary[:64, :64])], SMALL)


def test_cli_forest_model_predicts_the_same_files_as_a_unet_model(forest_model, data, tmp_path):
    config = tmp_path / "forest.yaml"
    config.write_text(yaml.safe_dump(SMALL_YAML))
    result = run_cli("segment", "train", "--method", "forest", "--real", data["train"], "--config", config,
                     "--out", tmp_path / "cli-forest")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "cli-forest").iterdir()) == ["config.yaml", FOREST_FILE, "run.json"]
    result = run_cli("segment", "predict", tmp_path / "cli-forest", data["test"] / "images", "--out", tmp_path / "pf",
                     "--um-per-px", "0.5")
    assert result.returncode == 0, result.stderr
    # the CLI (config from YAML) and the library (ForestConfig) models are the same forest: same boundaries
    predict(forest_model, [data["test"] / "images"], tmp_path / "pl", um_per_px=0.5, progress=False)
    for name in ("m10", "m11"):
        assert (tmp_path / "pf" / "boundaries" / f"{name}.png").read_bytes() == \
            (tmp_path / "pl" / "boundaries" / f"{name}.png").read_bytes()

    unet = SegmentConfig(width=4, depth=2, iters=2, batch_size=2, crop=32, tile=32, val_every=2, checkpoint_every=2)
    with pytest.warns(GrainforgeWarning):  # two iterations find no boundary
        train_segmenter(data["train"], tmp_path / "unet", unet, seed=0, progress=False)
    predict(tmp_path / "unet", [data["test"] / "images"], tmp_path / "pu", um_per_px=0.5, progress=False)

    def files(folder: Path) -> list[str]:
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    assert files(tmp_path / "pf") == files(tmp_path / "pu")
    assert len(files(tmp_path / "pf")) == 2 * 5 + 2  # 5 per image (probability, boundary, labels, overlay, grains)
    assert (tmp_path / "pf" / "summary.csv").read_text().splitlines()[0] == \
        (tmp_path / "pu" / "summary.csv").read_text().splitlines()[0]
    assert json.loads((tmp_path / "pf" / "run.json").read_text())["model"].endswith(FOREST_FILE)


class Poison:
    """Rebuilding this object from a skops file calls ``__setstate__``, which creates the marker file:
    the file appears if and only if code from the model file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        open(state["marker"], "w").close()


def test_poisoned_forest_file_is_refused_without_running_code(forest_model, data, tmp_path):
    forest, config, path = load_forest(forest_model)
    payload = sio.load(path, trusted=["sklearn.tree._tree.Tree"])
    marker = tmp_path / "ran"
    sio.dump({**payload, "extra": Poison(marker)}, tmp_path / "poisoned.skops")
    poison_type = f"{Poison.__module__}.Poison"
    # guard: the file does run code when its type is trusted
    sio.load(tmp_path / "poisoned.skops", trusted=[poison_type, "sklearn.tree._tree.Tree"])
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UserError, match=f"poisoned.skops: refused: .*{poison_type}"):
        load_forest(tmp_path / "poisoned.skops")
    assert not marker.exists()
    (tmp_path / "poisoned").mkdir()
    (tmp_path / "poisoned" / FOREST_FILE).write_bytes((tmp_path / "poisoned.skops").read_bytes())
    result = run_cli("segment", "predict", tmp_path / "poisoned", data["test"] / "images", "--out", tmp_path / "pred")
    assert_user_error(result, f"{FOREST_FILE}: refused")
    assert not marker.exists() and not (tmp_path / "pred").exists()


def test_tampered_or_truncated_forest_file_is_refused(forest_model, tmp_path):
    from sklearn.tree._tree import Tree

    forest, config, _ = load_forest(forest_model)
    tree = forest.estimators_[0].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = tree.node_count + 1000  # prediction would read past the node array
    tampered = Tree(tree.n_features, np.asarray(tree.n_classes), tree.n_outputs)
    tampered.__setstate__({**state, "nodes": nodes})
    forest.estimators_[0].tree_ = tampered
    save_forest(tmp_path / "tampered.skops", forest, config)
    with pytest.raises(UserError, match="tampered.skops: tampered or corrupt forest model"):
        load_forest(tmp_path / "tampered.skops")
    (tmp_path / "short.skops").write_bytes((forest_model / FOREST_FILE).read_bytes()[:300])
    with pytest.raises(UserError, match="short.skops: corrupt or unreadable forest model"):
        load_forest(tmp_path / "short.skops")


def test_cli_bad_forest_training_inputs_are_one_line_errors_and_write_nothing(data, tmp_path):
    blank = tmp_path / "blank"
    write_png(blank / "images" / "a.png", np.full((40, 40), 128, np.uint8))
    write_png(blank / "labels" / "a.png", np.zeros((40, 40), np.uint8))
    result = run_cli("segment", "train", "--method", "forest", "--real", blank, "--out", tmp_path / "m1")
    assert_user_error(result, "a.png", "no boundary pixels")
    assert not (tmp_path / "m1").exists()

    mismatch = tmp_path / "mismatch"
    write_png(mismatch / "images" / "a.png", np.full((40, 40), 128, np.uint8))
    write_png(mismatch / "labels" / "a.png", np.eye(32, dtype=np.uint8) * 255)
    result = run_cli("segment", "train", "--method", "forest", "--real", data["train"], "--extra", mismatch,
                     "--out", tmp_path / "m2")
    assert_user_error(result, "a.png", "differs from its image")
    assert not (tmp_path / "m2").exists()

    assert_user_error(run_cli("segment", "train", "--method", "forest", "--real", data["train"], "--iters", "5",
                              "--out", tmp_path / "m3"), "--iters", "only for --method unet")
    with pytest.raises(UserError, match="forest config: need 0 < sigma_min <= sigma_max"):
        train_forest(data["train"], tmp_path / "m4", dataclasses.replace(SMALL, sigma_max=0.5), progress=False)
    assert not (tmp_path / "m3").exists() and not (tmp_path / "m4").exists()


def test_missing_boundary_warning_fires_for_one_grain_predictions_only():
    ids = voronoi_grains(96, mean_area_px=300, seed=5)
    thick = boundary_from_ids(ids)
    thick = thick | np.roll(thick, 1, axis=0) | np.roll(thick, 1, axis=1)  # 2-3 px lines, as hand labels often are
    pairs = [Pair("a", np.zeros(thick.shape, np.float32), thick)]
    config = ForestConfig()
    # a model that reproduces the thick labels: its 1-px closed lines count against the thinned labels
    assert missing_boundary_warnings(pairs, lambda image: thick.astype(np.float32), config) == []
    for flat in (0.0, 0.5):  # grain everywhere, or no grain core anywhere: one grain, no boundary
        with pytest.warns(GrainforgeWarning, match=r"a: 0 boundary px .* 0 %"):
            assert len(missing_boundary_warnings(pairs, lambda image: np.full(thick.shape, flat, np.float32), config)) == 1


def test_forest_on_featureless_images_warns_on_stderr_and_in_run_json(data, tmp_path):
    flat = tmp_path / "flat"
    for pair in load_pairs(data["train"]):
        write_png(flat / "images" / f"{pair.name}.png", np.full(pair.image.shape, 90, np.uint8))
        write_png(flat / "labels" / f"{pair.name}.png", pair.boundary.astype(np.uint8) * 255)
    config = tmp_path / "forest.yaml"
    config.write_text(yaml.safe_dump(SMALL_YAML))
    result = run_cli("segment", "train", "--method", "forest", "--real", flat, "--config", config, "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("grainforge: warning: the trained model finds almost no boundary")
    assert "m0, m1: 0 boundary px" in lines[0]
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert run["warnings"] == [lines[0].removeprefix("grainforge: warning: ")]
