"""The shared plumbing: atomic writes, image IO, configs, user-error handling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from grainforge.config import load_config
from grainforge.data.io import atomic_path, read_grey, read_image, write_png, write_tiff
from grainforge.errors import UserError


def test_atomic_path_leaves_target_untouched_on_failure(tmp_path: Path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_png_tiff_roundtrip_and_rgb_to_grey(tmp_path: Path):
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    write_png(tmp_path / "g.png", grey)
    assert np.array_equal(read_image(tmp_path / "g.png"), grey)
    deep = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    write_tiff(tmp_path / "d.tif", deep)
    assert np.allclose(read_grey(tmp_path / "d.tif"), deep / 65535.0)
    rgb = np.stack([grey] * 3, axis=-1)
    write_png(tmp_path / "c.png", rgb)
    assert np.array_equal(read_image(tmp_path / "c.png"), grey)


def test_unreadable_and_empty_files_name_the_file(tmp_path: Path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    with pytest.raises(UserError, match="empty.png: file is empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(UserError, match="junk.png: unreadable image"):
        read_image(tmp_path / "junk.png")


@dataclasses.dataclass(frozen=True)
class _Inner:
    lr: float = 1e-4
    width: int = 32


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str = "x"
    iters: int = 10
    net: _Inner = dataclasses.field(default_factory=_Inner)


def test_config_yaml_with_base_and_unknown_keys(tmp_path: Path):
    presets = {"small": _Outer(iters=5)}
    good = tmp_path / "c.yaml"
    good.write_text("base: small\nnet:\n  width: 8\n")
    cfg = load_config(_Outer, good, presets)
    assert cfg == _Outer(iters=5, net=_Inner(width=8))
    bad = tmp_path / "b.yaml"
    bad.write_text("iters: 3\nbogus: 1\n")
    with pytest.raises(UserError, match="unknown key.*bogus"):
        load_config(_Outer, bad, presets)
    wrong = tmp_path / "w.yaml"
    wrong.write_text("iters: many\n")
    with pytest.raises(UserError, match="expected an integer"):
        load_config(_Outer, wrong, presets)
    with pytest.raises(UserError, match="unknown config"):
        load_config(_Outer, "nope", presets)
