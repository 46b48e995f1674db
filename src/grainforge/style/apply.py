"""Apply a trained pix2pix generator to boundary labels of any size.

A label larger than the training crop is cut into crop-sized tiles that overlap by
``config.apply_overlap`` x crop; the generated tiles are blended with a linear-ramp
(trapezoid) window, so no seams show. A label smaller than the crop is mirror-padded to it
(the crop is 2**depth, so every tile has a size the U-Net accepts). Batch norm uses its running
statistics; dropout stays on by default, as in pix2pix, where it is the generator's only noise
source (``dropout=False`` gives the deterministic, smoother output). Each image's dropout noise
is seeded from ``seed`` and the file stem, so an image does not depend on the other files.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import torch

from grainforge.data.io import ensure_writable_dir, to_uint8, write_csv, write_png
from grainforge.errors import UserError
from grainforge.progress import progress_bar
from grainforge.runinfo import RunRecord
from grainforge.style.config import StyleConfig
from grainforge.style.fidelity import StatisticsAccumulator, gate, read_reference
from grainforge import checkpoint
from grainforge.config import config_from_dict
from grainforge.style.networks import UnetGenerator, set_dropout, to_signed, to_unit

GENERATOR_FILE = "generator.pt"  # in a model folder written by train_style


def load_generator(model_dir: str | os.PathLike, device: torch.device) -> tuple[UnetGenerator, StyleConfig]:
    """The generator (eval mode) and config saved by ``train_style`` in ``model_dir`` (or that generator.pt
    file itself); UserError naming the file if it is missing or corrupt."""
    path = Path(model_dir) if Path(model_dir).is_file() else Path(model_dir) / GENERATOR_FILE
    data = checkpoint.load(path, "pix2pix-generator")
    config = config_from_dict(StyleConfig, data["config"], str(path))
    generator = UnetGenerator(config.depth, config.ngf, config.dropout)
    try:
        generator.load_state_dict(data["state"])
    except (KeyError, RuntimeError) as err:
        raise UserError(f"{path}: generator weights do not match its config ({type(err).__name__}); "
                        "retrain the model") from err
    return generator.to(device).eval(), config


def tile_starts(length: int, crop: int, overlap: float) -> list[int]:
    """Start offsets of crop-sized tiles covering [0, length) (length >= crop), evenly spread, overlap >= requested."""
    if length <= crop:
        return [0]
    stride = max(1, int(crop * (1.0 - overlap)))
    n = int(np.ceil((length - crop) / stride)) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - crop, n)})


def blend_window(crop: int, overlap: float) -> np.ndarray:
    """(crop, crop) float32 weights: 1 inside, linear ramps over the overlap width at the edges, > 0 everywhere."""
    ramp_width = max(1, int(crop * overlap))
    ramp = np.minimum(np.arange(crop) + 1, np.arange(crop)[::-1] + 1) / (ramp_width + 1)
    ramp = np.minimum(ramp, 1.0).astype(np.float32)
    return np.outer(ramp, ramp)


@torch.no_grad()
def paint(generator: UnetGenerator, boundary: np.ndarray, config: StyleConfig, *, device: torch.device,
          dropout: bool = True, seed: int = 0) -> np.ndarray:
    """Synthetic micrograph (float32 H x W in [0, 1]) for a bool boundary map (H x W) of any size.

    Tiles of ``config.crop`` px, ``config.apply_batch`` per forward pass; the global torch RNG
    is left untouched (the dropout noise comes from a forked RNG seeded with ``seed``).
    """
    crop = config.crop
    boundary = np.asarray(boundary, dtype=bool)
    height, width = boundary.shape
    pad_y, pad_x = max(0, crop - height), max(0, crop - width)
    label = np.pad(boundary, ((0, pad_y), (0, pad_x)), mode="symmetric").astype(np.float32)
    ys = tile_starts(label.shape[0], crop, config.apply_overlap)
    xs = tile_starts(label.shape[1], crop, config.apply_overlap)
    corners = [(y, x) for y in ys for x in xs]
    window = blend_window(crop, config.apply_overlap)
    total = np.zeros(label.shape, dtype=np.float32)
    weight = np.zeros(label.shape, dtype=np.float32)

    was_training = generator.training
    generator.eval()
    set_dropout(generator, dropout)
    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            for first in range(0, len(corners), config.apply_batch):
                chunk = corners[first:first + config.apply_batch]
                tiles = np.stack([label[y:y + crop, x:x + crop] for y, x in chunk])[:, None]
                fake = to_unit(generator(to_signed(torch.from_numpy(tiles).to(device)))).cpu().numpy()[:, 0]
                for (y, x), tile in zip(chunk, fake):
                    total[y:y + crop, x:x + crop] += tile * window
                    weight[y:y + crop, x:x + crop] += window
    finally:
        generator.train(was_training)
    return (total / weight)[:height, :width]


def stem_seed(seed: int, stem: str) -> int:
    """A per-image seed from the run seed and the file stem (stable across runs and platforms)."""
    return (seed * 1_000_003 + zlib.crc32(stem.encode())) % 2**63


def apply_style(model_dir: str | os.PathLike, labels_dir: str | os.PathLike, out: str | os.PathLike,
                device: str = "auto", seed: int = 0, dropout: bool | None = None, progress: bool = True,
                *, boundary_value: str | int = "auto", threads: int | None = None) -> list[Path]:
    """Paint every boundary label in ``labels_dir``; returns the image paths written.

    Writes ``out/images/<stem>.png`` (uint8 grey) and ``out/labels/<stem>.png`` (the label it was
    made from, uint8, 255 = boundary), so ``out`` is a pair folder ready for training, plus
    ``out/manifest.csv``, ``run.json`` and ``fidelity.json`` (the images' style statistics against the
    model's real reference; the verdict line goes to stderr). ``dropout`` None = the model's ``inference_dropout``
    (on, as in pix2pix).
    """
    from grainforge.data.pairs import load_boundaries
    from grainforge.torchutil import resolve_device

    torch_device = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    generator, config = load_generator(model_dir, torch_device)
    dropout = config.inference_dropout if dropout is None else dropout
    labels = load_boundaries(labels_dir, boundary_value=boundary_value)
    reference = read_reference(model_dir)
    out = ensure_writable_dir(out)
    record = RunRecord(out, command="style apply",
                       config={"model_dir": str(model_dir), "labels_dir": str(labels_dir), "dropout": dropout},
                       seed=seed)
    written, manifest = [], []
    generated = StatisticsAccumulator()  # style statistics of the painted images, for fidelity.json
    with record.phase("apply"), progress_bar(disable=not progress) as bar:
        task = bar.add_task("painting", total=len(labels))
        for stem, boundary in labels:
            image = paint(generator, boundary, config, device=torch_device, dropout=dropout,
                          seed=stem_seed(seed, stem))
            image_path = out / "images" / f"{stem}.png"
            write_png(image_path, to_uint8(image))
            write_png(out / "labels" / f"{stem}.png", np.where(boundary, 255, 0).astype(np.uint8))
            written.append(image_path)
            manifest.append({"image": f"images/{stem}.png", "label": f"labels/{stem}.png",
                             "height": boundary.shape[0], "width": boundary.shape[1]})
            bar.update(task, advance=1)
            generated.add(image, boundary)
    write_csv(out / "manifest.csv", manifest)
    fidelity = gate(out, generated.result(), reference)
    record.write(n_images=len(written), device=str(torch_device), fidelity=fidelity)
    return written
