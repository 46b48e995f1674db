"""U-Net training loop and the `grainforge segment` commands, on tiny synthetic pair folders and a
tiny network (seconds on a CPU)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import assert_user_error, run_cli
from grainforge.data.io import read_csv, read_image, write_png
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids, label_grains
from grainforge.metrics import evaluate_folders
from grainforge.segment import SegmentConfig, predict, train_segmenter
from grainforge.segment.network import UNet

TINY = SegmentConfig(width=4, depth=2, iters=4, batch_size=8, crop=32, lr=1e-3, val_every=2, checkpoint_every=2,
                     tile=32, min_grain_area=4)
TINY_YAML = {k: v for k, v in dataclasses.asdict(TINY).items() if k in ("width", "depth", "iters", "crop", "tile",
                                                                           "val_every", "checkpoint_every", "min_grain_area")}


def _pair_folder(root: Path, n: int, grey: float | None, seed: int, size: int = 48) -> Path:
    """n (image, label) pairs of blocky grains; the image is the constant ``grey`` if given, else
    grains with dark boundaries."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        ids = np.kron(rng.integers(0, 6, size=(size // 8, size // 8)), np.ones((8, 8), dtype=int))
        boundary = boundary_from_ids(ids)
        image = np.full(ids.shape, grey) if grey is not None else np.where(boundary, 0.1, 0.5 + 0.05 * (ids % 5))
        write_png(root / "images" / f"im{i}.png", np.round(image * 255).astype(np.uint8))
        write_png(root / "labels" / f"im{i}.png", boundary.astype(np.uint8) * 255)
    return root


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread here and in the CLI subprocesses: the tiny nets gain nothing from more, and on a
    shared 2-core machine two spinning threads per process are many times slower."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pairs")
    return {"real": _pair_folder(root / "real", 5, None, 0), "real_flat": _pair_folder(root / "flat_real", 5, 0.2, 1),
            "syn_a": _pair_folder(root / "syn_a", 3, 0.6, 2), "syn_b": _pair_folder(root / "syn_b", 3, 1.0, 3)}


@pytest.fixture(scope="module")
def tiny_model(pairs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    return train_segmenter(pairs["real"], out / "m", TINY, seed=0, progress=False)


def _spy_training_batches(monkeypatch, stop_after: int | None = None) -> list[torch.Tensor]:
    """Record every batch the network sees in training mode (optionally interrupt after some)."""
    seen: list[torch.Tensor] = []
    forward = UNet.forward

    def spy(self, x):
        if self.training:
            if stop_after is not None and len(seen) == stop_after:
                raise KeyboardInterrupt
            seen.append(x.detach().clone())
        return forward(self, x)

    monkeypatch.setattr(UNet, "forward", spy)
    return seen


def test_training_batches_have_the_exact_per_source_counts(pairs, tmp_path, monkeypatch):
    seen = _spy_training_batches(monkeypatch)
    out = train_segmenter(pairs["real_flat"], tmp_path / "m", TINY, extras=[pairs["syn_a"], pairs["syn_b"]],
                          seed=1, progress=False)
    assert len(seen) == TINY.iters
    for batch in seen:  # each source has its own constant grey: 0.2 real, 0.6 syn_a, 1.0 syn_b
        grey = [round(float(v), 2) for v in batch.mean(dim=(1, 2, 3))]
        assert grey == [0.2] * 4 + [0.6] * 2 + [1.0] * 2
    run = yaml.safe_load((out / "run.json").read_text())
    assert run["batch_counts"] == {"real": 4, "syn_a": 2, "syn_b": 2}
    assert len(run["val_images"]) == 1 and len(run["train_images"]["real"]) == 4  # 5 real: 1 held out


def test_real_fraction_zero_trains_on_extras_only_and_still_validates_on_real(pairs, tmp_path, monkeypatch):
    seen = _spy_training_batches(monkeypatch)
    out = train_segmenter(pairs["real_flat"], tmp_path / "m", dataclasses.replace(TINY, iters=2), real_fraction=0.0,
                          extras=[pairs["syn_a"]], progress=False)
    assert all(np.allclose(batch.numpy(), 0.6, atol=0.01) for batch in seen)
    assert yaml.safe_load((out / "run.json").read_text())["batch_counts"] == {"syn_a": 8}


def test_training_writes_the_model_folder_and_a_log(tiny_model):
    assert {"best.pt", "checkpoint.pt", "config.yaml", "log.csv", "run.json"} <= {p.name for p in tiny_model.iterdir()}
    log = read_csv(tiny_model / "log.csv")
    assert [int(row["iteration"]) for row in log] == [2, 4]
    assert all(0.0 <= float(row["val_map"]) <= 1.0 for row in log)
    assert not [p for p in tiny_model.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_resume_after_an_interruption_gives_the_uninterrupted_weights(pairs, tmp_path, monkeypatch):
    straight = train_segmenter(pairs["real"], tmp_path / "straight", TINY, seed=5, progress=False)
    _spy_training_batches(monkeypatch, stop_after=3)  # dies in iteration 4; checkpoint at 2
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(pairs["real"], tmp_path / "resumed", TINY, seed=5, progress=False)
    monkeypatch.undo()
    train_segmenter(pairs["real"], tmp_path / "resumed", TINY, seed=5, progress=False, resume=True)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_refuses_to_overwrite_or_resume_nothing(pairs, tiny_model, tmp_path):
    with pytest.raises(UserError, match="already holds a trained model"):
        train_segmenter(pairs["real"], tiny_model, TINY, progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        train_segmenter(pairs["real"], tmp_path / "new", TINY, resume=True, progress=False)
    with pytest.raises(UserError, match=r"real_fraction 1.5: must be in \[0, 1\]"):
        train_segmenter(pairs["real"], tmp_path / "new2", TINY, real_fraction=1.5, progress=False)


def test_predict_writes_closed_boundaries_labels_and_tables(tiny_model, pairs, tmp_path):
    rows = predict(tiny_model, [pairs["real"] / "images"], tmp_path / "out", um_per_px=0.5, progress=False)
    assert [r["image"] for r in rows] == [f"im{i}" for i in range(5)]
    out = tmp_path / "out"
    for stem in ("im0", "im4"):
        boundary = read_image(out / "boundaries" / f"{stem}.png") == 255
        labels = read_image(out / "labels" / f"{stem}.tif")
        assert np.array_equal(label_grains(boundary), labels)
        assert read_image(out / "overlays" / f"{stem}.png").shape == (48, 48)  # read back as grey
        assert read_image(out / "probabilities" / f"{stem}.png").dtype == np.uint8
        grains = read_csv(out / "grains" / f"{stem}.csv")
        assert len(grains) == labels.max()
        assert {"perimeter_px", "n_neighbours", "touches_border", "area_um2"} <= set(grains[0])
    summary = read_csv(out / "summary.csv")
    assert len(summary) == 5 and "astm_g" in summary[0]


def test_an_interrupted_predict_leaves_no_half_written_files(tiny_model, pairs, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_replace = os.replace

    def failing_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        predict(tiny_model, [pairs["real"] / "images" / "im0.png"], tmp_path / "out", progress=False)
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert not [p for p in written if p.name.startswith(".")]
    assert len(written) == 2  # the two files renamed before the failure are complete


def test_cli_train_and_predict_end_to_end(pairs, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"base": "cpu-small", **TINY_YAML}))
    result = run_cli("segment", "train", "--real", pairs["real"], "--config", config, "--out", tmp_path / "m",
                     "--iters", "2", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "val MAP" in result.stdout
    result = run_cli("segment", "predict", tmp_path / "m", pairs["real"] / "images", "--out", tmp_path / "p",
                     "--threshold-only")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "p" / "boundaries").glob("*.png"))) == 5
    scores = evaluate_folders(tmp_path / "p" / "boundaries", pairs["real"] / "labels", workers=1)  # what `grainforge evaluate` reads
    assert [row["image"] for row in scores] == [f"im{i}" for i in range(5)]


def test_cli_bad_model_files_are_one_line_errors(tiny_model, pairs, tmp_path):
    image = pairs["real"] / "images" / "im0.png"
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "best.pt").write_bytes((tiny_model / "best.pt").read_bytes()[:500])
    assert_user_error(run_cli("segment", "predict", tmp_path / "corrupt", image, "--out", tmp_path / "o"),
                      "best.pt", "corrupt")
    with pytest.raises(UserError, match="um_per_px -1.0: must be > 0"):
        predict(tiny_model, [image], tmp_path / "o", um_per_px=-1.0, progress=False)


def test_cli_bad_training_inputs_are_one_line_errors(pairs, tmp_path):
    with pytest.raises(UserError, match="none: no such folder"):
        train_segmenter(tmp_path / "none", tmp_path / "m", TINY, progress=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: cpu-small\nwidht: 8\n")
    assert_user_error(run_cli("segment", "train", "--real", pairs["real"], "--config", bad, "--out", tmp_path / "m"),
                      "bad.yaml", "widht")
    with pytest.raises(UserError, match="no training data"):
        train_segmenter(None, tmp_path / "m", TINY, progress=False)


def test_pretrain_then_fine_tune_switches_to_real_only_batches(pairs, tmp_path, monkeypatch):
    """real_share 0 + extra_until 0.5: iterations 1-2 see only synthetic patches, 3-4 only real ones."""
    seen = _spy_training_batches(monkeypatch)
    config = dataclasses.replace(TINY, real_share=0.0, extra_until=0.5)
    train_segmenter(pairs["real_flat"], tmp_path / "m", config, extras=[pairs["syn_a"]], seed=1, progress=False)
    greys = [sorted({round(float(v), 2) for v in batch.mean(dim=(1, 2, 3))}) for batch in seen]
    assert greys == [[0.6], [0.6], [0.2], [0.2]]


def test_fine_tune_phase_resumes_with_the_uninterrupted_batches(pairs, tmp_path, monkeypatch):
    from grainforge.segment.train import _training_batches
    from grainforge.data.pairs import load_pairs
    from grainforge.data.torchdata import PairCropDataset

    real, extra = load_pairs(pairs["real"]), load_pairs(pairs["syn_a"])
    config = dataclasses.replace(TINY, iters=6, extra_until=0.5)
    counts = {"real": 4, "syn_a": 4}
    datasets = {"real": PairCropDataset(real, 32, 24), "syn_a": PairCropDataset(extra, 32, 24, seed=5)}
    straight = [b[0] for b in _training_batches(datasets, counts, real, config, seed=3, start=0)]
    resumed = [b[0] for b in _training_batches(datasets, counts, real, config, seed=3, start=4)]
    assert len(straight) == 6 and len(resumed) == 2
    assert all(torch.equal(a, b) for a, b in zip(straight[4:], resumed))
    with pytest.raises(UserError, match="extra_until must be in"):
        dataclasses.replace(TINY, extra_until=0.0).validate()
