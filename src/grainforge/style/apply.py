"""Apply a trained pix2pix generator to boundary labels of any size.

A label larger than the training crop is cut into crop-sized tiles that overlap by
``config.apply_overlap`` x crop; the generated tiles are blended with a linear-ramp
(trapezoid) window, so no seams show (:func:`grainforge.tiling.sliding_window`, ``"spread"``
layout). A label smaller than the crop is mirror-padded to it at the bottom/right (the crop is
2**depth, so every tile has a size the U-Net accepts). Batch norm follows the config's
``inference_batchnorm``: ``running`` (cpu-small) uses the running statistics; ``batch`` (the
``paper`` preset) is the reference implementation's inference mode (its test.py without
``--eval`` keeps the generator in train mode): every tile is normalised with its own statistics,
one tile per forward pass as the reference's batch of 1, and the running statistics are left
untouched. Dropout stays on by default, as in pix2pix, where it is the generator's only noise
source (``dropout=False`` gives the deterministic, smoother output). Each image's dropout noise
is seeded from ``seed`` and the file stem, so an image does not depend on the other files.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import torch

from grainforge.data.io import ensure_writable_dir, to_uint8, write_boundary_png, write_csv, write_png
from grainforge.errors import UserError
from grainforge.progress import progress_bar
from grainforge.runinfo import RunRecord
from grainforge.style.config import StyleConfig
from grainforge.style.fidelity import StatisticsAccumulator, gate, read_reference
from grainforge import checkpoint
from grainforge.config import config_from_dict
from grainforge.style.networks import UnetGenerator, set_dropout, to_signed, to_unit
from grainforge.tiling import sliding_window

GENERATOR_FILE = "generator.pt"  # in a model folder written by train_style


def load_generator(model_dir: str | os.PathLike, device: torch.device) -> tuple[UnetGenerator, StyleConfig]:
    """Load the generator (eval mode) and config saved by ``train_style``.

    ``model_dir``: the model folder or its generator.pt file. UserError naming the file if it is
    missing or corrupt.
    """
    generator, config, _ = _load_generator_file(model_dir, device)
    return generator, config


def stored_config(data: dict, where: str) -> StyleConfig:
    """Read the StyleConfig stored in a checkpoint or generator file, validated (UserError if it does not fit)."""
    return config_from_dict(StyleConfig, data["config"], where)


def _load_generator_file(model_dir: str | os.PathLike, device: torch.device) -> tuple[UnetGenerator, StyleConfig, dict]:
    """Load a generator file: (generator, config, the file's payload); see :func:`load_generator`."""
    path = Path(model_dir) if Path(model_dir).is_file() else Path(model_dir) / GENERATOR_FILE
    data = checkpoint.load(path, "pix2pix-generator")
    config = stored_config(data, str(path))
    generator = UnetGenerator(config.depth, config.ngf, config.dropout, upsample=config.upsample)
    try:
        generator.load_state_dict(data["state"])
    except (KeyError, RuntimeError) as err:
        raise UserError(f"{path}: generator weights do not match its config ({type(err).__name__}); "
                        "retrain the model") from err
    return generator.to(device).eval(), config, data


@torch.no_grad()
def paint(generator: UnetGenerator, boundary: np.ndarray, config: StyleConfig, *, device: torch.device,
          dropout: bool = True, seed: int = 0) -> np.ndarray:
    """Synthetic micrograph (float32 H x W in [0, 1]) for a bool boundary map (H x W) of any size.

    Tiles of ``config.crop`` px, ``config.apply_batch`` per forward pass (one with
    ``config.inference_batchnorm == "batch"``, see the module docstring); the global torch RNG
    is left untouched (the dropout noise comes from a forked RNG seeded with ``seed``).
    """

    def predict(tiles: torch.Tensor) -> torch.Tensor:
        return to_unit(generator(to_signed(tiles)))[:, 0]

    was_training = generator.training
    generator.eval()
    set_dropout(generator, dropout)
    batch_statistics = config.inference_batchnorm == "batch"
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms if batch_statistics else []:
        norm.train(True)
        norm.track_running_stats = False  # normalise with the batch's statistics, do not update the running ones
    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            return sliding_window(predict, np.asarray(boundary, dtype=bool), config.crop, config.apply_overlap,
                                  batch=1 if batch_statistics else config.apply_batch, window="ramp",
                                  pad_mode="symmetric", layout="spread", device=device)
    finally:
        for norm in norms:
            norm.track_running_stats = True
        generator.train(was_training)


def stem_seed(seed: int, stem: str) -> int:
    """Derive a per-image seed from the run seed and the file stem (stable across runs and platforms)."""
    return (seed * 1_000_003 + zlib.crc32(stem.encode())) % 2**63


def match_label_width(labels: list[tuple[str, np.ndarray]], model_width: float | None, adapt: bool,
                      where: str) -> tuple[list[tuple[str, np.ndarray]], dict]:
    """Compare the labels' line width with the width the model was trained on.

    With ``adapt``, redraw them at the model's width. Returns (labels to paint, a record of both
    widths and what was done), and tells on stderr when they differ.
    """
    from grainforge.labelwidth import draw_at_width, mean_line_width, same_width
    from grainforge.progress import console

    width = mean_line_width(boundary for _, boundary in labels)
    record = {"labels_width_px": width, "model_label_width_px": model_width, "redrawn": False}
    if model_width is None or not np.isfinite(width) or same_width(width, model_width):
        return labels, record
    if adapt:
        console.print(f"style apply: the labels in {where} are {width:.1f} px wide, the model was trained on "
                      f"{model_width:.1f} px labels: painting (and writing) them redrawn at {model_width:.1f} px",
                      soft_wrap=True)
        record["redrawn"] = True
        return [(stem, draw_at_width(boundary, model_width)) for stem, boundary in labels], record
    console.print(f"[yellow]warning[/]: the labels in {where} are {width:.1f} px wide, the model was trained on "
                  f"{model_width:.1f} px labels; the images will not look like the real ones "
                  "(match_width=True redraws them)", soft_wrap=True)
    return labels, record


def check_label_polarity(labels: list[tuple[str, np.ndarray]], model_share: float | None, where: str,
                         boundary_value: str | int) -> dict:
    """Warn (on stderr) when the labels are mostly boundary: read with the wrong boundary value.

    ``model_share``: the boundary share of the labels the model was trained on (None for older model
    files). Returns a record of both shares.
    """
    from grainforge.progress import console

    share = float(np.mean([boundary.mean() for _, boundary in labels])) if labels else float("nan")
    if share > 0.5:
        trained = f"{model_share:.0%}" if model_share is not None else "a minority"
        console.print(f"[yellow]warning[/]: the labels in {where} read with boundary value {boundary_value} are {share:.0%} "
                      f"boundary; the model was trained on labels with {trained} boundary pixels: the polarity looks "
                      "inverted (pass the other --boundary-value)", soft_wrap=True)
    return {"labels_boundary_share": share, "model_label_boundary_share": model_share}


def apply_style(model_dir: str | os.PathLike, labels_dir: str | os.PathLike, out: str | os.PathLike,
                device: str = "auto", seed: int = 0, dropout: bool | None = None, progress: bool = True,
                *, boundary_value: str | int = "auto", threads: int | None = None,
                match_width: bool = True) -> list[Path]:
    """Paint the style of a trained pix2pix onto every boundary label in a folder (docs/design.md §7.3).

    The library function behind ``grainforge style apply``. Labels of any size are painted in
    overlapping crop-sized tiles blended without seams; each synthetic image carries its label
    exactly, so the output is a pair folder ready for :func:`grainforge.segment.train_segmenter`.

    Parameters
    ----------
    model_dir : str or path-like
        Model folder written by :func:`train_style` (or its ``generator.pt``).
    labels_dir : str or path-like
        Folder of boundary label images (e.g. ``labels/`` of :func:`grainforge.sections.slice_run`).
    out : str or path-like
        Output folder: ``images/<stem>.png`` (uint8 grey), ``labels/<stem>.png`` (the label it was
        painted from, uint8, 255 = boundary), ``manifest.csv``, ``run.json`` and ``fidelity.json``
        (the images' style statistics against the model's real reference,
        :mod:`grainforge.style.fidelity`; the verdict line goes to stderr).
    device : str, optional
        "auto" (CUDA when torch sees it, else CPU), "cpu" or "cuda".
    seed : int, optional
        Seed of the dropout noise; each image's noise comes from ``seed`` and its file stem, so an
        image does not depend on the other files.
    dropout : bool, optional
        Keep dropout on when painting (pix2pix's noise source). None: the model's
        ``inference_dropout`` (on).
    progress : bool, optional
        Show a progress bar.
    boundary_value : {"auto", 0, 255}, optional
        Label value of boundary pixels; "auto": the minority value.
    threads : int, optional
        torch CPU threads (None: torch's default).
    match_width : bool, optional
        Labels whose line width differs from the width the model was trained on (by 0.5 px or
        more) are redrawn at the model's width (:func:`match_label_width`); False keeps them and
        warns.

    Returns
    -------
    written : list of Path
        The synthetic images, one per label, in the labels' order.

    References
    ----------
    .. [1] Isola, P., Zhu, J.-Y., Zhou, T. and Efros, A. A. (2017). Image-to-image translation with
           conditional adversarial networks. CVPR 2017, 1125-1134. :arXiv:`1611.07004`

    Examples
    --------
    A tiny generator (one training iteration) paints a 40 x 50 label, smaller than its crop:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from grainforge.data.io import read_image, write_boundary_png
    >>> from grainforge.data.pairs import Pair
    >>> from grainforge.grains import boundary_from_ids
    >>> from grainforge.style import StyleConfig, apply_style, train_style
    >>> rows, cols = np.indices((64, 64)) // 16
    >>> boundary = boundary_from_ids(4 * rows + cols)
    >>> image = np.where(boundary, 0.2, 0.8).astype(np.float32)
    >>> config = StyleConfig(crop=32, ngf=4, ndf=4, iters=1, sample_every=0, checkpoint_every=0, n_samples=1)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> model = train_style(None, config, Path(tmp.name) / "style", pairs=[Pair("a", image, boundary)],
    ...                     device="cpu", progress=False)
    >>> write_boundary_png(Path(tmp.name) / "labels" / "s0.png", boundary[:40, :50])
    >>> written = apply_style(model, Path(tmp.name) / "labels", Path(tmp.name) / "synthetic", device="cpu",
    ...                       progress=False)
    >>> [path.name for path in written], read_image(written[0]).shape
    (['s0.png'], (40, 50))
    >>> sorted(path.name for path in (Path(tmp.name) / "synthetic").iterdir())
    ['fidelity.json', 'images', 'labels', 'manifest.csv', 'run.json']
    >>> tmp.cleanup()
    """
    from grainforge.data.pairs import load_boundaries
    from grainforge.torchutil import resolve_device

    torch_device = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    generator, config, payload = _load_generator_file(model_dir, torch_device)
    dropout = config.inference_dropout if dropout is None else dropout
    labels = load_boundaries(labels_dir, boundary_value=boundary_value)
    polarity_record = check_label_polarity(labels, payload.get("label_boundary_share"), str(labels_dir), boundary_value)
    labels, width_record = match_label_width(labels, payload.get("label_width_px"), match_width, str(labels_dir))
    reference = read_reference(model_dir)
    out = ensure_writable_dir(out)
    record = RunRecord(out, command="style apply",
                       config={"model_dir": str(model_dir), "labels_dir": str(labels_dir), "dropout": dropout,
                               "match_width": match_width},
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
            write_boundary_png(out / "labels" / f"{stem}.png", boundary)
            written.append(image_path)
            manifest.append({"image": f"images/{stem}.png", "label": f"labels/{stem}.png",
                             "height": boundary.shape[0], "width": boundary.shape[1]})
            bar.update(task, advance=1)
            generated.add(image, boundary)
    write_csv(out / "manifest.csv", manifest)
    fidelity = gate(out, generated.result(), reference)
    record.write(n_images=len(written), device=str(torch_device), label_width=width_record, label_polarity=polarity_record,
                 fidelity=fidelity)
    return written
