"""pix2pix stage: network shapes, one training step, determinism, bit-identical resume, tiled apply, CLI errors."""

from __future__ import annotations

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP)

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from conftest import assert_user_error, run_cli
from grainforge.config import load_config
from grainforge.data.io import read_csv, read_image, write_png
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids
from grainforge.style import STYLE_PRESETS, StyleConfig, apply_style, load_generator, paint, train_style
from grainforge.style.networks import PatchDiscriminator, UnetGenerator, init_weights, unet_depth
from grainforge import checkpoint
from grainforge.style.networks import to_signed
from grainforge.style.train import Pix2Pix

TINY = StyleConfig(crop=64, ngf=4, ndf=4, batch_size=2, iters=4, decay_fraction=0.0, log_every=1,
                   sample_every=2, checkpoint_every=2, n_samples=2, apply_batch=3)


def grain_ids(size: tuple[int, int], n_seeds: int, seed: int) -> np.ndarray:
    """Voronoi id map (H, W): nearest of ``n_seeds`` random points."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (n_seeds, 2)) * np.array(size)
    yy, xx = np.mgrid[:size[0], :size[1]]
    dist = (yy[..., None] - points[:, 0]) ** 2 + (xx[..., None] - points[:, 1]) ** 2
    return dist.argmin(-1)


def fake_micrograph(ids: np.ndarray, seed: int) -> np.ndarray:
    """uint8 image: one grey level per grain, dark boundaries."""
    rng = np.random.default_rng(seed)
    grey = rng.uniform(120, 220, ids.max() + 1)[ids]
    grey[boundary_from_ids(ids)] = 40
    return grey.astype(np.uint8)


def write_pairs(folder, n: int, size=(70, 76), seed=0):
    for i in range(n):
        ids = grain_ids(size, 12, seed + i)
        write_png(folder / "images" / f"p{i}.png", fake_micrograph(ids, seed + i))
        write_png(folder / "labels" / f"p{i}.png", boundary_from_ids(ids).astype(np.uint8) * 255)
    return folder


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs"), 3)


@pytest.fixture(scope="module")
def tiny_model(pairs_dir, tmp_path_factory):
    return train_style(pairs_dir, TINY, tmp_path_factory.mktemp("model"), seed=1, device="cpu", progress=False)


@pytest.mark.parametrize("crop", [32, 64, 128, 256])
def test_network_shapes_for_every_crop(crop):
    depth = unet_depth(crop)
    assert 2**depth == crop
    generator = init_weights(UnetGenerator(depth, ngf=4))
    discriminator = init_weights(PatchDiscriminator(ndf=4))
    label = torch.rand(2, 1, crop, crop) * 2 - 1
    fake = generator(label)
    assert fake.shape == (2, 1, crop, crop)
    assert fake.abs().max() <= 1.0
    # 70x70 PatchGAN: three stride-2 convs then two stride-1 4x4 convs
    side = crop // 8 - 2
    assert discriminator(label, fake).shape == (2, 1, side, side)
    # dropout only in the depth - 5 decoder blocks next to the bottleneck (unet_256: 3)
    assert sum(isinstance(m, torch.nn.Dropout) for m in generator.modules()) == depth - 5


def test_init_and_bad_crops():
    generator = init_weights(UnetGenerator(6, ngf=16))
    weights = torch.cat([m.weight.flatten() for m in generator.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.002 and abs(weights.mean().item()) < 0.002
    for crop in (16, 48, 0):
        with pytest.raises(ValueError):
            unet_depth(crop)
    with pytest.raises(UserError, match="crop"):
        dataclasses.replace(TINY, crop=100).validate()
    assert STYLE_PRESETS["paper"].depth == 8 and STYLE_PRESETS["paper"].ngf == 64
    assert STYLE_PRESETS["cpu-small"].depth == 7


def test_lr_constant_then_linear_decay():
    config = StyleConfig(iters=100, decay_fraction=0.5, lr=1e-3)
    assert config.lr_at(0) == config.lr_at(50) == 1e-3
    assert config.lr_at(75) == pytest.approx(1e-3 * (1 - 25 / 51))
    assert 0 < config.lr_at(99) < config.lr_at(98)


def test_one_step_lowers_l1():
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, crop=64, ngf=8, ndf=8, dropout=0.0)
    model = Pix2Pix(config, torch.device("cpu"))
    label = to_signed((torch.rand(4, 1, 64, 64) > 0.9).float())
    image = to_signed(torch.rand(4, 1, 64, 64) * 0.2 + 0.5)

    def l1() -> float:  # train-mode batch norm (batch statistics), no dropout: deterministic
        with torch.no_grad():
            return torch.mean(torch.abs(model.generator(label) - image)).item()

    before = l1()
    model.step(label, image)
    assert l1() < before


def test_paint_deterministic_and_seeded():
    config = TINY  # depth 6: one dropout block
    generator = init_weights(UnetGenerator(6, ngf=4))
    boundary = boundary_from_ids(grain_ids((64, 64), 8, 3))
    cpu = torch.device("cpu")
    off_a = paint(generator, boundary, config, device=cpu, dropout=False, seed=0)
    off_b = paint(generator, boundary, config, device=cpu, dropout=False, seed=99)
    np.testing.assert_array_equal(off_a, off_b)
    on_a = paint(generator, boundary, config, device=cpu, dropout=True, seed=5)
    on_b = paint(generator, boundary, config, device=cpu, dropout=True, seed=5)
    on_c = paint(generator, boundary, config, device=cpu, dropout=True, seed=6)
    np.testing.assert_array_equal(on_a, on_b)
    assert not np.array_equal(on_a, on_c)
    state = torch.get_rng_state()
    paint(generator, boundary, config, device=cpu, dropout=True, seed=7)
    assert torch.equal(state, torch.get_rng_state())  # the training RNG is untouched by sample grids


class Passthrough(torch.nn.Module):
    """A 'generator' that returns its input: tiled painting must then give back the label exactly."""

    def forward(self, x):
        return x


@pytest.mark.parametrize("shape", [(32, 32), (20, 45), (77, 100), (129, 33)])
def test_tiling_blends_back_exactly(shape):
    config = dataclasses.replace(TINY, crop=32, apply_overlap=0.25)
    boundary = np.random.default_rng(0).random(shape) > 0.7
    out = paint(Passthrough(), boundary, config, device=torch.device("cpu"), dropout=False)
    assert out.shape == shape
    np.testing.assert_allclose(out, boundary.astype(np.float32), atol=1e-6)


def test_training_writes_model_dir(tiny_model):
    for name in ("generator.pt", "checkpoint.pt", "config.yaml", "losses.csv", "run.json",
                 "samples/iter_000002.png", "samples/iter_000004.png"):
        assert (tiny_model / name).is_file(), name
    rows = read_csv(tiny_model / "losses.csv")
    assert [int(r["iter"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss_G_L1"])) for r in rows)
    grid = read_image(tiny_model / "samples/iter_000004.png")
    assert grid.shape == (2 * 70 + 4, 3 * 76 + 8)  # 2 rows of label | real | generated


def test_resume_is_bit_identical(pairs_dir, tmp_path):
    straight = train_style(pairs_dir, TINY, tmp_path / "straight", seed=2, device="cpu", progress=False)
    half = dataclasses.replace(TINY, iters=2)
    train_style(pairs_dir, half, tmp_path / "resumed", seed=2, device="cpu", progress=False)
    state = checkpoint.load(tmp_path / "resumed" / "checkpoint.pt", "pix2pix-checkpoint")
    assert state["iteration"] == 2
    # the checkpoint reloads bit-identically into a fresh model
    model = Pix2Pix(half, torch.device("cpu"))
    assert model.load_state(state) == 2
    for key, value in model.generator.state_dict().items():
        assert torch.equal(value, state["generator"][key]), key
    assert model.opt_g.state_dict()["state"][0]["step"] == 2
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])
    np.testing.assert_array_equal(np.random.get_state()[1], state["rng"]["numpy"][1].numpy())
    resumed = train_style(pairs_dir, TINY, tmp_path / "resumed", seed=2, device="cpu", resume=True, progress=False)
    a = checkpoint.load(straight / "checkpoint.pt", "pix2pix-checkpoint")
    b = checkpoint.load(resumed / "checkpoint.pt", "pix2pix-checkpoint")
    assert a["iteration"] == b["iteration"] == 4
    for part in ("generator", "discriminator"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    for part in ("opt_g", "opt_d"):
        for index, state in a[part]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, b[part]["state"][index][key]), (part, index, key)
    straight_losses = [r["loss_G_L1"] for r in read_csv(straight / "losses.csv")]
    assert straight_losses == [r["loss_G_L1"] for r in read_csv(resumed / "losses.csv")]


def test_bad_resumes_are_refused(pairs_dir, tiny_model, tmp_path):
    with pytest.raises(UserError, match="different config"):
        train_style(pairs_dir, dataclasses.replace(TINY, ngf=8), tiny_model, device="cpu", resume=True,
                    progress=False)
    with pytest.raises(UserError, match="already at iteration 4"):
        train_style(pairs_dir, TINY, tiny_model, iters=3, device="cpu", resume=True, progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        train_style(pairs_dir, TINY, tmp_path / "new", device="cpu", resume=True, progress=False)


def test_training_refuses_to_overwrite_a_model(pairs_dir, tiny_model):
    """Like segment training: a second training into a model folder needs --resume (CLI: exit 2, model untouched)."""
    generator = (tiny_model / "generator.pt").read_bytes()
    with pytest.raises(UserError, match="already holds a trained model"):
        train_style(pairs_dir, TINY, tiny_model, device="cpu", progress=False)
    assert_user_error(run_cli("style", "train", "--pairs", pairs_dir, "--out", tiny_model, "--device", "cpu"),
                      str(tiny_model), "already holds a trained model")
    assert (tiny_model / "generator.pt").read_bytes() == generator


def test_apply_any_size_writes_pairs(tiny_model, tmp_path):
    labels = tmp_path / "labels"
    shapes = {"a": (45, 70), "b": (20, 25), "c": (150, 67)}
    for stem, shape in shapes.items():
        write_png(labels / f"{stem}.png", boundary_from_ids(grain_ids(shape, 6, 1)).astype(np.uint8) * 255)
    written = apply_style(tiny_model, labels, tmp_path / "out", device="cpu", seed=3, progress=False)
    assert sorted(p.stem for p in written) == sorted(shapes)
    for stem, shape in shapes.items():
        image = read_image(tmp_path / "out" / "images" / f"{stem}.png")
        assert image.shape == shape and image.dtype == np.uint8
        np.testing.assert_array_equal(read_image(tmp_path / "out" / "labels" / f"{stem}.png"),
                                      read_image(labels / f"{stem}.png"))
    again = apply_style(tiny_model, labels, tmp_path / "again", device="cpu", seed=3, progress=False)
    np.testing.assert_array_equal(read_image(written[0]), read_image(again[0]))


def test_cli_train_and_apply(pairs_dir, tmp_path):
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({"base": "cpu-small", **{k: v for k, v in dataclasses.asdict(TINY).items()
                                                                    if k != "iters"}}))
    result = run_cli("style", "train", "--pairs", pairs_dir, "--config", config_file, "--out", tmp_path / "m",
                     "--iters", "2", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m" / "generator.pt").is_file()
    result = run_cli("style", "apply", tmp_path / "m", pairs_dir / "labels", "--out", tmp_path / "syn", "--no-dropout")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "syn" / "images").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert sorted(p.name for p in (tmp_path / "syn" / "labels").iterdir()) == ["p0.png", "p1.png", "p2.png"]


def test_user_errors(pairs_dir, tiny_model, tmp_path):
    labels = pairs_dir / "labels"
    assert_user_error(run_cli("style", "apply", tmp_path / "nothing", labels, "--out", tmp_path / "o"), "generator.pt")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "generator.pt").write_bytes(b"not a torch file")
    assert_user_error(run_cli("style", "apply", corrupt, labels, "--out", tmp_path / "o"), "corrupt")
    truncated = tmp_path / "truncated" / "generator.pt"
    truncated.parent.mkdir()
    truncated.write_bytes((tiny_model / "generator.pt").read_bytes()[:2000])
    with pytest.raises(UserError, match="corrupt"):
        load_generator(truncated.parent, torch.device("cpu"))
    with pytest.raises(UserError, match="huge"):
        load_config(StyleConfig, "huge", STYLE_PRESETS)
    with pytest.raises(UserError, match="iters 0: must be >= 1"):
        train_style(pairs_dir, TINY, tmp_path / "m", iters=0, device="cpu", progress=False)
    with pytest.raises(UserError, match="crop"):  # the cpu-small crop (128 px) does not fit the 70 x 76 pairs
        train_style(pairs_dir, STYLE_PRESETS["cpu-small"], tmp_path / "m", device="cpu", progress=False)


def test_labels_of_another_width_are_redrawn_or_warned_about(capsys):
    from grainforge.labelwidth import draw_at_width, line_width
    from grainforge.style.apply import match_label_width

    thin = boundary_from_ids(grain_ids((96, 96), 10, 3))
    labels = [("a", thin)]
    redrawn, record = match_label_width(labels, 3.1, adapt=True, where="sections")
    assert record["redrawn"] and line_width(redrawn[0][1]) == pytest.approx(3.1, abs=0.6)
    assert "the model was trained on 3.1 px labels: painting (and writing) them redrawn at 3.1 px" in capsys.readouterr().err
    kept, record = match_label_width(labels, 3.1, adapt=False, where="sections")
    assert kept[0][1] is thin and not record["redrawn"]
    assert "warning" in capsys.readouterr().err
    same, record = match_label_width([("b", draw_at_width(thin, 3.0))], 3.1, adapt=True, where="sections")
    assert not record["redrawn"] and capsys.readouterr().err == ""


def test_the_model_records_its_label_width_and_apply_redraws_to_it(tiny_model, tmp_path):
    from grainforge.labelwidth import draw_at_width, line_width

    assert checkpoint.load(tiny_model / "generator.pt", "pix2pix-generator")["label_width_px"] == pytest.approx(1.2, abs=0.1)
    thick = draw_at_width(boundary_from_ids(grain_ids((80, 80), 8, 9)), 4.0)
    write_png(tmp_path / "labels" / "thick.png", thick.astype(np.uint8) * 255)
    apply_style(tiny_model, tmp_path / "labels", tmp_path / "out", device="cpu", progress=False)
    written = read_image(tmp_path / "out" / "labels" / "thick.png") > 127
    assert line_width(written) < 1.6  # painted and written at the model's ~1.2 px


def test_labels_read_with_the_wrong_polarity_are_warned_about(tiny_model, tmp_path, capsys):
    labels = boundary_from_ids(grain_ids((80, 80), 8, 9))
    write_png(tmp_path / "labels" / "a.png", labels.astype(np.uint8) * 255)
    share = checkpoint.load(tiny_model / "generator.pt", "pix2pix-generator")["label_boundary_share"]
    assert 0.0 < share < 0.5
    apply_style(tiny_model, tmp_path / "labels", tmp_path / "right", device="cpu", progress=False, boundary_value=255)
    assert "polarity" not in capsys.readouterr().err
    apply_style(tiny_model, tmp_path / "labels", tmp_path / "wrong", device="cpu", progress=False, boundary_value=0)
    err = capsys.readouterr().err
    inverted = 1.0 - labels.mean()
    assert f"read with boundary value 0 are {inverted:.0%} boundary" in err and f"with {share:.0%} boundary" in err
    assert "inverted" in err
