"""Training the U-Net on mixed mini-batches of real and extra (synthetic, simulated) patches.

Batch composition (fixed counts per batch, ``MixedBatches``):
- real only: all ``batch_size`` patches real (paper: 8 real);
- real + k extra sources: ``round(real_share * batch_size)`` real (paper: 4), the rest split evenly
  over the extras in the order given, the first ones taking one more when it does not divide
  (8 = 4 real + 2 + 2 with two extras; 4 real + 2 + 1 + 1 with three);
- ``real_fraction = 0`` (or no real data): the whole batch split over the extras.

Sparse labels (docs/design.md §3.5): label pixels of ``config.ignore_value`` are untraced; the loss
skips them (:func:`segmentation_loss`). Validation scores MAP, which needs fully traced labels:
sparse pairs are never held out, and a sparse ``val`` set is refused.

Validation: on ``val`` if given; otherwise, when the real set (``real``) has at least
``val_min_images`` fully traced images, ``round(val_fraction * n)`` of those (seeded, before the real
fraction is taken, so every fraction is scored on the same images; at most ``val_max_images`` are
scored) are held out of training. Pairs passed in memory (``real_pairs``, e.g. the experiment runner's fraction)
are trained on as they are: nothing is held out of them, so without ``val`` there is no
validation. Every ``val_every`` iterations and at the end the full held-out images are predicted
(tiled inference + post-processing) and scored with MAP/ARI; ``best.pt`` keeps the weights of the
best validation MAP. Without validation images ``best.pt`` is the final weights.

Model folder: ``config.yaml``, ``best.pt``, ``checkpoint.pt`` (weights, optimiser, schedule and
iteration, for ``--resume``), ``log.csv`` (iteration, loss, lr, val_map, val_ari, wall_time_s),
``run.json`` (with ``warnings``: e.g. a model that finds almost no boundary on its own training images,
:func:`grainforge.segment.postprocess.missing_boundary_warnings`, also issued as a GrainforgeWarning).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from grainforge.data.torchdata import UNTRACED
from grainforge.errors import UserError

LOG_COLUMNS = ("iteration", "loss", "lr", "val_map", "val_ari", "wall_time_s")


def source_counts(batch_size: int, has_real: bool, extra_names: Sequence[str], real_share: float) -> dict[str, int]:
    """Patches per batch from each source: ``{"real": n, extra_name: n, ...}`` (rule in the module docstring)."""
    if not has_real and not extra_names:
        raise UserError("real and extras: no training data; give real pairs and/or extra pair folders")
    if not extra_names:
        return {"real": batch_size}
    n_real = int(round(real_share * batch_size)) if has_real else 0
    rest = batch_size - n_real
    base, more = divmod(rest, len(extra_names))
    if base == 0:
        raise UserError(f"extras: {len(extra_names)} extra sources but only {rest} synthetic patches per batch "
                        f"of {batch_size}; give fewer extra folders or raise batch_size in the config")
    counts = {"real": n_real} if n_real else {}
    counts.update({name: base + (i < more) for i, name in enumerate(extra_names)})
    return counts


def segmentation_loss(logits: torch.Tensor, boundary: torch.Tensor, boundary_weight: float, dice_weight: float) -> torch.Tensor:
    """Weighted cross-entropy + ``dice_weight`` x (1 - soft Dice of the boundary class), over the traced pixels.

    Class weights: grain 1, boundary ``boundary_weight``. logits (B, 2, H, W); boundary (B, 1, H, W)
    in {0, 1}, or :data:`~grainforge.data.torchdata.UNTRACED` on the untraced pixels of sparse labels:
    those add nothing (the cross-entropy is the weighted mean over the traced pixels, the Dice sums run
    over them), and a batch without a traced pixel has loss 0.
    """
    target = boundary[:, 0].long()
    traced = target != int(UNTRACED)
    if not bool(traced.any()):
        return logits.sum() * 0.0
    weight = torch.tensor([1.0, boundary_weight], device=logits.device, dtype=logits.dtype)
    cross_entropy = F.cross_entropy(logits, target, weight=weight, ignore_index=int(UNTRACED))
    probability = torch.softmax(logits, dim=1)[:, 1] * traced
    truth = boundary[:, 0] * traced
    dice = (2.0 * (probability * truth).sum() + 1.0) / (probability.sum() + truth.sum() + 1.0)
    return cross_entropy + dice_weight * (1.0 - dice)


def learning_rate_factor(config, iteration: int) -> float:
    """Multiplier of ``config.lr`` at ``iteration`` (constant, or cosine decay to ``min_lr_factor``)."""
    if config.lr_schedule == "constant":
        return 1.0
    progress = min(iteration / max(config.iters, 1), 1.0)
    return config.min_lr_factor + (1.0 - config.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def score_on(network, pairs, config) -> tuple[float, float]:
    """(mean MAP, mean ARI) of the network (tiled inference + post-processing) on full validation images."""
    from grainforge.metrics import evaluate_boundaries
    from grainforge.segment.inference import tiled_probability
    from grainforge.segment.predict import segment_image

    was_training = network.training
    network.eval()
    scores = []
    for pair in pairs:
        _, boundary, _ = segment_image(lambda image: tiled_probability(network, image, config.tile, config.overlap),
                                       pair.image, config)
        scores.append(evaluate_boundaries(pair.boundary, boundary))
    network.train(was_training)
    return float(np.mean([s["map"] for s in scores])), float(np.mean([s["ari"] for s in scores]))


def split_real(real_pairs: list, config, real_fraction: float, seed: int, hold_out: bool) -> tuple[list, list]:
    """Split the real pairs: (training pairs after the real fraction, held-out validation pairs).

    See the module docstring; ``config`` (its val_* fields) is read only with ``hold_out``.
    """
    from grainforge.data.split import nested_fraction, train_test_split

    if not 0.0 <= real_fraction <= 1.0:
        raise UserError(f"real_fraction {real_fraction}: must be in [0, 1]; e.g. 0.25 for 25 %")
    by_name = {pair.name: pair for pair in real_pairs}
    train_names, val_names = list(by_name), []
    traced = [name for name, pair in by_name.items() if pair.ignore is None]  # sparse labels cannot be scored
    if hold_out and len(traced) >= config.val_min_images and config.val_fraction > 0:
        _, held = train_test_split(traced, config.val_fraction, seed)
        train_names = [name for name in by_name if name not in held]
        val_names = held[: config.val_max_images]
    if real_fraction == 0.0:
        train_names = []
    elif real_fraction < 1.0:
        train_names = nested_fraction(train_names, real_fraction, seed)
    return [by_name[n] for n in train_names], [by_name[n] for n in val_names]


def _training_batches(datasets: dict, counts: dict[str, int], train_real: list, config, seed: int, start: int):
    """Yield the batches of iterations start+1 .. iters (a finite iterator).

    Batches are mixed per ``counts`` up to ``extra_until x iters``, then (when there are extras and
    real pairs) ``batch_size`` real patches each. A resumed run gets the uninterrupted run's batches.
    """
    from grainforge.data.torchdata import MixedBatches, PairCropDataset

    mixing = len(counts) > 1 or "real" not in counts
    switch = round(config.extra_until * config.iters) if mixing and train_real else config.iters
    mixed = itertools.islice(MixedBatches(datasets, counts, seed=seed), min(start, switch), switch)
    if switch >= config.iters:
        return mixed
    real_only = PairCropDataset(train_real, config.crop, length=(config.iters - switch) * config.batch_size,
                                augment=config.augment, seed=seed + 999, photometric=config.photometric)
    fine_tune = MixedBatches({"real": real_only}, {"real": config.batch_size}, seed=seed + 1)
    return itertools.chain(mixed, itertools.islice(fine_tune, max(start - switch, 0), config.iters - switch))


def source_name(folder: Path, taken: set[str]) -> str:
    """Name the batch source of an extra folder: its stem, made unique (never "real")."""
    name, k = folder.stem or "extra", 2
    while name in taken or name == "real":
        name, k = f"{folder.stem or 'extra'}-{k}", k + 1
    return name


def train_segmenter(real: str | os.PathLike | None, out: str | os.PathLike, config, real_fraction: float = 1.0,
                    extras: Sequence[str | os.PathLike] = (), iters: int | None = None, seed: int = 0,
                    device: str = "auto", resume: bool = False, val: str | os.PathLike | None = None,
                    progress: bool = True, real_pairs: list | None = None) -> Path:
    """Train the grain-boundary U-Net on real and extra pairs and write its model folder (docs/design.md §8).

    The library function behind ``grainforge segment train``. Mini-batches mix the sources in fixed
    counts (module docstring; the paper: 4 real + 4 synthetic of 8); the loss is weighted
    cross-entropy plus soft Dice of the boundary class. Deterministic by seed on CPU.

    Parameters
    ----------
    real : str, path-like or None
        Real pairs: a folder with ``images/`` and ``labels/`` (same stems) or an .h5 file. None
        when training on ``extras`` only or on ``real_pairs``.
    out : str or path-like
        Model folder to write: ``best.pt``, ``checkpoint.pt``, ``config.yaml``, ``log.csv``,
        ``run.json``. It must not hold a model already unless ``resume``.
    config : SegmentConfig
        Network, schedule, batch mixing, validation and inference settings, e.g.
        ``SEGMENT_PRESETS["cpu-small"]``; sizes in pixels.
    real_fraction : float, optional
        Share in [0, 1] of the real training images to train on: a seeded subset, nested (a smaller
        fraction is a subset of a larger one), taken after the validation images are held out.
    extras : sequence of str or path-like, optional
        More pair sources (synthetic, simulated); together they fill ``1 - config.real_share`` of
        each batch, split evenly.
    iters : int, optional
        Training iterations (batches); overrides ``config.iters``.
    seed : int, optional
        Seed of the initial weights, the validation split, the fraction and the crops.
    device : str, optional
        "auto" (CUDA when torch sees it, else CPU), "cpu" or "cuda".
    resume : bool, optional
        Continue from ``out/checkpoint.pt``; the config and ``iters`` must be the same.
    val : str or path-like, optional
        Validation pairs. Default: ``config.val_fraction`` of ``real`` held out when it has at
        least ``config.val_min_images`` images; none for ``real_pairs``.
    progress : bool, optional
        Show a progress bar with the loss and the validation MAP.
    real_pairs : list of Pair, optional
        In-memory real pairs instead of ``real``, trained on as they are (nothing held out).

    Returns
    -------
    out : Path
        The model folder; ``best.pt`` holds the weights of the best validation MAP, or the final
        weights without validation images.

    Raises
    ------
    grainforge.errors.UserError
        On missing data, an invalid config or fraction, an existing model without ``resume``, or a
        checkpoint of another config.

    References
    ----------
    .. [1] Ronneberger, O., Fischer, P. and Brox, T. (2015). U-Net: convolutional networks for
           biomedical image segmentation. MICCAI 2015, LNCS 9351, 234-241. :arXiv:`1505.04597`

    Examples
    --------
    One iteration of a tiny U-Net on one 64-pixel pair of 16-pixel square grains:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from grainforge.data.pairs import Pair
    >>> from grainforge.grains import boundary_from_ids
    >>> from grainforge.segment import SegmentConfig, train_segmenter
    >>> rows, cols = np.indices((64, 64)) // 16
    >>> boundary = boundary_from_ids(4 * rows + cols)
    >>> image = np.where(boundary, 0.2, 0.8).astype(np.float32)
    >>> config = SegmentConfig(width=4, depth=2, iters=1, batch_size=2, crop=32, tile=32)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> model = train_segmenter(None, Path(tmp.name) / "unet", config, real_pairs=[Pair("a", image, boundary)],
    ...                         device="cpu", progress=False)
    >>> sorted(path.name for path in model.iterdir())
    ['best.pt', 'checkpoint.pt', 'config.yaml', 'log.csv', 'run.json']
    >>> tmp.cleanup()
    """
    from grainforge import checkpoint
    from grainforge.config import config_to_dict, save_config
    from grainforge.data.io import ensure_writable_dir, read_csv, write_csv
    from grainforge.data.pairs import load_pairs
    from grainforge.data.torchdata import PairCropDataset
    from grainforge.progress import progress_bar
    from grainforge.runinfo import RunRecord
    from grainforge.segment.inference import tiled_probability
    from grainforge.segment.network import build_network, load_model, read_model_file, save_model
    from grainforge.segment.postprocess import missing_boundary_warnings
    from grainforge.torchutil import resolve_device, seed_everything
    from rich.progress import TextColumn

    if iters is not None:
        if iters < 1:
            raise UserError(f"iters {iters}: must be >= 1")
        config = dataclasses.replace(config, iters=iters)
    config.validate()
    out = ensure_writable_dir(out)
    checkpoint_path = out / "checkpoint.pt"
    checkpoint.check_start(checkpoint_path, resume)
    torch_device = resolve_device(device)
    record = RunRecord(out, command="segment train", config=config_to_dict(config), seed=seed)

    with record.phase("load data"):
        hold_out = val is None and real_pairs is None
        if real_pairs is None and real is not None:
            real_pairs = load_pairs(real, ignore_value=config.ignore_value)
        val_pairs = load_pairs(val, ignore_value=config.ignore_value) if val is not None else None
        sparse_val = [pair.name for pair in val_pairs or [] if pair.ignore is not None]
        if sparse_val:
            raise UserError(f"{val}: {sparse_val[0]} is a sparse label (pixels of the ignore value {config.ignore_value} "
                            f"are untraced); validation scores MAP, which needs every boundary traced: pass fully traced --val pairs")
        train_real, held_out = split_real(real_pairs or [], config, real_fraction, seed, hold_out)
        val_pairs = val_pairs if val_pairs is not None else held_out
        extra_sources: dict[str, list] = {}
        for folder in extras:
            extra_sources[source_name(Path(folder), set(extra_sources))] = load_pairs(folder, ignore_value=config.ignore_value)
    counts = source_counts(config.batch_size, bool(train_real), list(extra_sources), config.real_share)
    pools = {"real": train_real, **extra_sources}
    datasets = {name: PairCropDataset(pools[name], config.crop, length=config.iters * count,
                                      augment=config.augment, seed=seed + 1000 * k,
                                      photometric=config.photometric)
                for k, (name, count) in enumerate(counts.items())}

    seed_everything(seed)
    network = build_network(config).to(torch_device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: learning_rate_factor(config, it))
    start, best_map, log_rows = 0, -1.0, []
    if resume:
        state = read_model_file(checkpoint_path)
        if state["config"] != config_to_dict(config):
            raise UserError(f"{checkpoint_path}: was trained with another config; resume with the same config and iters")
        network.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, best_map = state["iteration"], state["best_map"]
        log_rows = read_csv(out / "log.csv") if (out / "log.csv").is_file() else []
    save_config(config, out / "config.yaml")

    batches = _training_batches(datasets, counts, train_real, config, seed, start)
    network.train()
    losses: list[float] = []
    val_map = val_ari = float("nan")
    t0 = time.perf_counter()

    def save_checkpoint(iteration: int) -> None:
        save_model(checkpoint_path, network, config, iteration=iteration, best_map=best_map,
                   optimizer=optimizer.state_dict(), schedule=schedule.state_dict())

    columns = TextColumn("{task.fields[speed]:.2f} it/s  loss {task.fields[loss]:.4f}  val MAP {task.fields[val_map]:.3f}")
    with progress_bar(columns, disable=not progress) as bar, record.phase("train"):
        task = bar.add_task("segment train", total=config.iters, completed=start, speed=0.0, loss=float("nan"), val_map=val_map)
        for iteration in range(start + 1, config.iters + 1):
            images, boundaries = next(batches)
            images, boundaries = images.to(torch_device), boundaries.to(torch_device)
            loss = segmentation_loss(network(images), boundaries, config.boundary_weight, config.dice_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_value = loss.item()
            losses.append(loss_value)
            last = iteration == config.iters
            if iteration % config.val_every == 0 or last:
                if val_pairs:
                    val_map, val_ari = score_on(network, val_pairs, config)
                if not val_pairs or val_map > best_map:
                    best_map = val_map if val_pairs else best_map
                    save_model(out / "best.pt", network, config, iteration=iteration, val_map=val_map, val_ari=val_ari)
                log_rows.append({"iteration": iteration, "loss": float(np.mean(losses)), "lr": schedule.get_last_lr()[0],
                                 "val_map": val_map, "val_ari": val_ari, "wall_time_s": time.perf_counter() - t0})
                losses.clear()
                write_csv(out / "log.csv", log_rows, LOG_COLUMNS)
            if iteration % config.checkpoint_every == 0 or last:
                save_checkpoint(iteration)
            bar.update(task, advance=1, loss=loss_value, val_map=val_map,
                       speed=(iteration - start) / (time.perf_counter() - t0))
    with record.phase("check"):
        model, _, _ = load_model(out, torch_device)  # best.pt: what `segment predict` will use
        found_warnings = missing_boundary_warnings(
            [pair for name in counts for pair in pools[name]],
            lambda image: tiled_probability(model, image, config.tile, config.overlap), config)
    record.write(method="unet", warnings=found_warnings,
                 sources={"real": str(real) if real is not None else None, "extras": [str(e) for e in extras],
                          "val": str(val) if val is not None else "held out of --real"},
                 real_fraction=real_fraction, batch_counts=counts, device=str(torch_device),
                 train_images={name: [p.name for p in pool] for name, pool in pools.items() if name in counts},
                 val_images=[p.name for p in val_pairs], best_val_map=best_map if val_pairs else None,
                 final_val_map=val_map, final_val_ari=val_ari)
    return out
