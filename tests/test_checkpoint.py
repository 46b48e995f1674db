"""Model files are read without running code: a poisoned file is refused, for both networks."""

from __future__ import annotations

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP)

import numpy as np
import pytest
import torch

from conftest import assert_user_error, run_cli
from grainforge import checkpoint
from grainforge.config import config_to_dict
from grainforge.data.io import write_png
from grainforge.errors import UserError
from grainforge.segment.config import SegmentConfig
from grainforge.segment.network import UNet, load_model, save_model
from grainforge.style.config import STYLE_PRESETS
from grainforge.style.networks import UnetGenerator


class Poison:
    """Unpickling this calls ``open(marker, "w")``: the file appears if and only if code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _segment_payload():
    config = SegmentConfig(width=4, depth=2, crop=32, tile=32)
    return {"format": "grainforge", "kind": "segment-unet", "version": checkpoint.VERSION,
            "config": config_to_dict(config), "state_dict": UNet(4, 2).state_dict()}


def _generator_payload():
    config = STYLE_PRESETS["cpu-small"]
    return {"format": "grainforge", "kind": "pix2pix-generator", "version": checkpoint.VERSION,
            "config": config_to_dict(config),
            "state": UnetGenerator(config.depth, config.ngf, config.dropout).state_dict()}


def test_poison_file_would_run_code_with_a_plain_load(tmp_path):
    """Guards the test itself: the crafted file really runs code under an unrestricted unpickler."""
    marker = tmp_path / "ran"
    torch.save({**_segment_payload(), "extra": Poison(marker)}, tmp_path / "best.pt")
    torch.load(tmp_path / "best.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("make_payload", [_segment_payload, _generator_payload])
def test_poisoned_model_is_refused_without_running_code(tmp_path, make_payload):
    marker = tmp_path / "ran"
    torch.save({**make_payload(), "extra": Poison(marker)}, tmp_path / "poisoned.pt")
    with pytest.raises(UserError, match="poisoned.pt: refused"):
        checkpoint.load(tmp_path / "poisoned.pt", "segment-unet", "pix2pix-generator")
    assert not marker.exists()


def test_cli_refuses_poisoned_models_of_both_kinds(tmp_path):
    images = tmp_path / "images"
    write_png(images / "a.png", np.full((40, 40), 128, np.uint8))
    write_png(tmp_path / "labels" / "a.png", np.zeros((40, 40), np.uint8))

    marker = tmp_path / "ran-segment"
    (tmp_path / "unet").mkdir()
    torch.save({**_segment_payload(), "extra": Poison(marker)}, tmp_path / "unet" / "best.pt")
    result = run_cli("segment", "predict", tmp_path / "unet", images, "--out", tmp_path / "pred")
    assert_user_error(result, "best.pt: refused")
    assert not marker.exists() and not (tmp_path / "pred").exists()

    marker = tmp_path / "ran-style"
    (tmp_path / "style").mkdir()
    torch.save({**_generator_payload(), "extra": Poison(marker)}, tmp_path / "style" / "generator.pt")
    result = run_cli("style", "apply", tmp_path / "style", tmp_path / "labels", "--out", tmp_path / "synthetic")
    assert_user_error(result, "generator.pt: refused")
    assert not marker.exists()


def test_checkpoints_with_optimiser_state_load_the_same_way(tmp_path):
    config = SegmentConfig(width=4, depth=2, crop=32, tile=32)
    network = UNet(4, 2)
    optimizer = torch.optim.Adam(network.parameters())
    network(torch.rand(1, 1, 32, 32)).sum().backward()
    optimizer.step()
    save_model(tmp_path / "checkpoint.pt", network, config, iteration=1, best_map=0.5,
               optimizer=optimizer.state_dict())
    payload = checkpoint.load(tmp_path / "checkpoint.pt", "segment-checkpoint")
    assert payload["kind"] == "segment-checkpoint" and payload["iteration"] == 1
    restored = torch.optim.Adam(network.parameters())
    restored.load_state_dict(payload["optimizer"])
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    _, loaded_config, _ = load_model(tmp_path / "checkpoint.pt")
    assert loaded_config == config


def test_wrong_kind_and_bad_config_are_named(tmp_path):
    checkpoint.save(tmp_path / "g.pt", "pix2pix-generator", {"crop": 64}, state={})
    with pytest.raises(UserError, match="g.pt: a pix2pix generator, expected a U-Net segmentation model"):
        load_model(tmp_path / "g.pt")
    payload = _segment_payload()
    payload["config"]["depth"] = 99
    torch.save(payload, tmp_path / "bad-config.pt")
    with pytest.raises(UserError, match="depth must be in 1..6"):
        load_model(tmp_path / "bad-config.pt")


def test_first_format_files_still_load(tmp_path):
    """Segmentation models tagged 'grainforge-segment-unet' v1 (written before the shared format)."""
    payload = _segment_payload()
    payload.update(format="grainforge-segment-unet", version=1)
    del payload["kind"]
    torch.save(payload, tmp_path / "old.pt")
    network, config, _ = load_model(tmp_path / "old.pt")
    assert config.depth == 2 and isinstance(network, UNet)
