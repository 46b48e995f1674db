"""Model and checkpoint files of both networks: one format, read without running any code.

Every file grainforge writes with torch is a dict
``{"format": "grainforge", "kind": KIND, "version": 2, "config": {...}, ...tensors and plain values}``
where KIND is one of :data:`KINDS`. Files are read with ``torch.load(weights_only=True)``, whose
unpickler only rebuilds tensors and plain Python containers: a file crafted to run code when
unpickled (a shared ``best.pt`` from someone else, say) is refused before anything in it runs.

Files of the first format (segmentation models tagged ``grainforge-segment-unet`` version 1,
pix2pix files with only ``config`` and ``state``/``generator``) are read too; they were written
from the same plain types.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from grainforge.data.io import atomic_path
from grainforge.errors import UserError

FORMAT = "grainforge"
VERSION = 2
KINDS = {
    "segment-unet": "U-Net segmentation model",
    "segment-checkpoint": "U-Net training checkpoint",
    "pix2pix-generator": "pix2pix generator",
    "pix2pix-checkpoint": "pix2pix training checkpoint",
}
_TRAIN_HINT = {
    "segment-unet": "grainforge segment train",
    "segment-checkpoint": "grainforge segment train",
    "pix2pix-generator": "grainforge style train",
    "pix2pix-checkpoint": "grainforge style train",
}


def check_start(checkpoint_path: Path, resume: bool) -> None:
    """UserError unless a training may start in the folder of ``checkpoint_path``: resuming needs the
    checkpoint; a new training refuses to overwrite the model of an earlier one."""
    if resume and not checkpoint_path.is_file():
        raise UserError(f"{checkpoint_path}: nothing to resume; start a new training (resume off)")
    if not resume and checkpoint_path.is_file():
        raise UserError(f"{checkpoint_path.parent}: already holds a trained model; resume it or choose another "
                        "output folder")


def save(path: str | os.PathLike, kind: str, config: dict, **payload) -> None:
    """Write ``payload`` (tensors, state dicts, numbers, strings, lists) tagged with ``kind``, atomically."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "kind": kind, "version": VERSION, "config": config, **payload}, tmp)


def _legacy_kind(data: dict) -> str | None:
    """The kind of a first-format file, or None if ``data`` is not one."""
    if data.get("format") == "grainforge-segment-unet" and data.get("version") == 1:
        return "segment-checkpoint" if "optimizer" in data else "segment-unet"
    if "format" not in data and isinstance(data.get("config"), dict):
        if "generator" in data and "opt_g" in data:
            return "pix2pix-checkpoint"
        if "state" in data:
            return "pix2pix-generator"
    return None


def load(path: str | os.PathLike, *kinds: str) -> dict:
    """The payload of a file of one of ``kinds``; UserError naming the file if it is missing, corrupt,
    of another kind, or holds anything but tensors and plain values (a pickle that would run code)."""
    path = Path(path)
    what = " or ".join(KINDS[k] for k in kinds)
    hint = _TRAIN_HINT[kinds[0]]
    if not path.is_file():
        raise UserError(f"{path}: no {what} here; train one with '{hint}'")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain types only: no code
    except Exception as err:  # a refused global, truncated zip, not a torch file at all
        if "Unsupported global" in str(err):
            raise UserError(f"{path}: refused: the file holds Python objects other than weights, which could run "
                            f"code when loaded; use a {what} written by grainforge") from err
        raise UserError(f"{path}: corrupt or unreadable {what} ({type(err).__name__}); "
                        "retrain or restore the file") from err
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a grainforge {what}; train one with '{hint}'")
    kind = data.get("kind") if data.get("format") == FORMAT else _legacy_kind(data)
    if data.get("format") == FORMAT and data.get("version") != VERSION:
        raise UserError(f"{path}: file format version {data.get('version')} is not {VERSION}; "
                        "upgrade grainforge or retrain the model")
    if kind not in kinds:
        found = f"a {KINDS[kind]}" if kind in KINDS else "not a grainforge model file"
        raise UserError(f"{path}: {found}, expected a {what}; train one with '{hint}'")
    if not isinstance(data.get("config"), dict):
        raise UserError(f"{path}: {what} without its config; retrain it")
    data["kind"] = kind
    return data
