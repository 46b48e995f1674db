"""pix2pix training on real (label, image) pairs, with checkpoints, resume, loss log and sample grids.

Model directory layout (``out``):
  generator.pt     final generator: {"config": dict, "state": state_dict} (what ``apply_style`` loads)
  checkpoint.pt    iteration, both networks, both optimisers, RNG states (for ``resume``)
  config.yaml      the StyleConfig used
  losses.csv       iter, lr, loss_D, loss_G_GAN, loss_G_L1, wall_time_s
  samples/iter_NNNNNN.png   label | real | generated rows on the sample pairs
  reference_stats.json      the real pairs' style statistics (``grainforge.style.fidelity``)
  fidelity.json             the final samples' statistics against them, and the verdict
  run.json
Batches are drawn from ``PairCropDataset`` items ``[k*B, (k+1)*B)`` at iteration k, so a resumed
run sees the same crops as an uninterrupted one; with the RNG states restored it is bit-identical
on CPU.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from grainforge import checkpoint
from grainforge.config import config_to_dict, save_config
from grainforge.data.io import ensure_writable_dir, read_csv, to_uint8, write_csv, write_png
from grainforge.errors import UserError
from grainforge.labelwidth import mean_line_width
from grainforge.progress import progress_bar
from grainforge.runinfo import RunRecord
from grainforge.style.apply import GENERATOR_FILE, paint, stored_config
from grainforge.style.config import StyleConfig
from grainforge.style.fidelity import check_training
from grainforge.style.networks import PatchDiscriminator, UnetGenerator, init_weights, to_signed

LOSS_COLUMNS = ("iter", "lr", "loss_D", "loss_G_GAN", "loss_G_L1", "wall_time_s")
CHECKPOINT_FILE = "checkpoint.pt"


def _numpy_rng_state() -> list:
    """NumPy's global RNG state with the key array as a tensor, so ``torch.load(weights_only=True)`` reads it."""
    name, keys, *rest = np.random.get_state()
    return [name, torch.from_numpy(keys.astype(np.int64)), *rest]


class Pix2Pix:
    """Generator, discriminator and their Adam optimisers, with one training step and state (de)serialisation."""

    def __init__(self, config: StyleConfig, device: torch.device):
        self.config = config
        self.device = device
        self.generator = init_weights(UnetGenerator(config.depth, config.ngf, config.dropout, upsample=config.upsample)).to(device)
        self.discriminator = init_weights(PatchDiscriminator(config.ndf)).to(device)
        betas = (config.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=betas)
        self.gan_loss = nn.BCEWithLogitsLoss()

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of both optimisers."""
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self, label: torch.Tensor, image: torch.Tensor) -> dict[str, float]:
        """One D then one G update on a batch (B, 1, c, c) of labels and images in [-1, 1]; returns the losses."""
        self.generator.train()
        self.discriminator.train()
        fake = self.generator(label)

        self.opt_d.zero_grad(set_to_none=True)
        logits_fake = self.discriminator(label, fake.detach())
        logits_real = self.discriminator(label, image)
        loss_d = 0.5 * (self.gan_loss(logits_fake, torch.zeros_like(logits_fake))
                        + self.gan_loss(logits_real, torch.ones_like(logits_real)))
        loss_d.backward()
        self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        logits_fake = self.discriminator(label, fake)
        loss_gan = self.gan_loss(logits_fake, torch.ones_like(logits_fake))
        loss_l1 = torch.mean(torch.abs(fake - image))
        (loss_gan + self.config.lambda_l1 * loss_l1).backward()
        self.opt_g.step()
        return {"loss_D": loss_d.item(), "loss_G_GAN": loss_gan.item(), "loss_G_L1": loss_l1.item()}

    def state(self, iteration: int) -> dict:
        """Everything a resumed run needs, including the RNG states."""
        return {
            "iteration": iteration,
            "config": config_to_dict(self.config),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": _numpy_rng_state(),
                "python": random.getstate(),
            },
        }

    def load_state(self, state: dict) -> int:
        """Restore networks, optimisers and RNG states; returns the iteration count to continue from."""
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        random.setstate(rng["python"])
        return int(state["iteration"])


def _batch(dataset, iteration: int, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Items [iteration*B, (iteration+1)*B) of a PairCropDataset as (label, image) in [-1, 1] on ``device``."""
    items = [dataset[iteration * batch_size + j] for j in range(batch_size)]
    image = torch.stack([item[0] for item in items]).to(device)
    boundary = torch.stack([item[1] for item in items]).to(device)
    return to_signed(boundary), to_signed(image)


def sample_grid(generator: UnetGenerator, config: StyleConfig, samples: list[tuple[np.ndarray, np.ndarray]],
                device: torch.device, seed: int) -> np.ndarray:
    """uint8 grid, one row per (boundary, image) sample: label | real | generated, 4 px white gutters."""
    rows = []
    for index, (boundary, image) in enumerate(samples):
        generated = paint(generator, boundary, config, device=device, dropout=config.inference_dropout,
                          seed=seed + index)
        label = np.where(boundary, 0.0, 1.0)  # black lines on white, as a micrograph would show them
        gutter = np.ones((boundary.shape[0], 4), dtype=np.float32)
        rows.append(np.concatenate([label, gutter, image, gutter, generated], axis=1))
    gap = np.ones((4, max(row.shape[1] for row in rows)), dtype=np.float32)
    padded = [np.pad(row, ((0, 0), (0, gap.shape[1] - row.shape[1])), constant_values=1.0) for row in rows]
    grid = np.concatenate([r for row in padded for r in (row, gap)][:-1], axis=0)
    return to_uint8(grid)


def sample_crops(pairs, crop: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Centre crops (at most 2*crop per side) of the first ``n`` pairs: (boundary bool, image float32)."""
    out = []
    for pair in pairs[:n]:
        h, w = pair.boundary.shape
        size_y, size_x = min(h, 2 * crop), min(w, 2 * crop)
        y0, x0 = (h - size_y) // 2, (w - size_x) // 2
        window = (slice(y0, y0 + size_y), slice(x0, x0 + size_x))
        out.append((pair.boundary[window], pair.image[window].astype(np.float32)))
    return out


def train_style(pairs_dir: str | os.PathLike | None, config: StyleConfig, out: str | os.PathLike,
                iters: int | None = None, seed: int = 0, device: str = "auto", resume: bool = False,
                progress: bool = True, *, pairs: list | None = None, val: str | os.PathLike | list | None = None,
                threads: int | None = None) -> Path:
    """Train pix2pix (boundary label -> micrograph) on real pairs (docs/design.md §7).

    The library function behind ``grainforge style train``: a U-Net generator and a 70x70 PatchGAN
    discriminator, loss cGAN + ``lambda_l1`` x L1, Adam, lr constant then decaying linearly to 0.

    Parameters
    ----------
    pairs_dir : str, path-like or None
        Real training pairs: a folder with ``images/`` and ``labels/`` (same stems) or an .h5 file
        (:func:`grainforge.data.pairs.load_pairs`). None when ``pairs`` is given.
    config : StyleConfig
        Networks, optimiser and schedule, e.g. ``STYLE_PRESETS["cpu-small"]``; crop in pixels.
    out : str or path-like
        Model folder to write: ``generator.pt`` (what :func:`apply_style` loads), ``checkpoint.pt``,
        ``config.yaml``, ``losses.csv``, ``samples/iter_NNNNNN.png`` and ``run.json``.
    iters : int, optional
        Training iterations (batches); overrides ``config.iters`` and ``config.epochs``. With
        ``config.epochs`` and no ``iters``, iterations = epochs x ceil(pairs / batch_size).
    seed : int, optional
        Seed of the initial weights, the crops and the dropout.
    device : str, optional
        "auto" (CUDA when torch sees it, else CPU), "cpu" or "cuda".
    resume : bool, optional
        Continue from ``out/checkpoint.pt`` (same config; ``iters`` may grow, which stretches the
        lr schedule). A resumed run is bit-identical to an uninterrupted one on CPU. Without it, an
        ``out`` that already holds a trained model is refused (UserError), not overwritten.
    progress : bool, optional
        Show a progress bar with the losses.
    pairs : list of Pair, optional
        In-memory training pairs instead of ``pairs_dir`` (e.g. a fraction of the real data):
        ``image`` float32 (H, W) in [0, 1], ``boundary`` bool (H, W), each at least ``config.crop``
        pixels on a side.
    val : str, path-like or list of Pair, optional
        Held-out pairs for the sample grids; without it the grids show training pairs.
    threads : int, optional
        torch CPU threads (None: torch's default).

    Returns
    -------
    out : Path
        The model folder.

    Raises
    ------
    grainforge.errors.UserError
        On missing or unreadable pairs, an invalid config, or a checkpoint that does not fit.

    References
    ----------
    .. [1] Isola, P., Zhu, J.-Y., Zhou, T. and Efros, A. A. (2017). Image-to-image translation with
           conditional adversarial networks. CVPR 2017, 1125-1134. :arXiv:`1611.07004`

    Examples
    --------
    One iteration of a tiny network on one 64-pixel pair of 16-pixel square grains:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from grainforge.data.pairs import Pair
    >>> from grainforge.grains import boundary_from_ids
    >>> from grainforge.style import StyleConfig, train_style
    >>> rows, cols = np.indices((64, 64)) // 16
    >>> boundary = boundary_from_ids(4 * rows + cols)
    >>> image = np.where(boundary, 0.2, 0.8).astype(np.float32)
    >>> config = StyleConfig(crop=32, ngf=4, ndf=4, iters=1, sample_every=0, checkpoint_every=0, n_samples=1)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> model = train_style(None, config, Path(tmp.name) / "style", pairs=[Pair("a", image, boundary)],
    ...                     device="cpu", progress=False)
    >>> sorted(path.name for path in model.iterdir())
    ['checkpoint.pt', 'config.yaml', 'fidelity.json', 'generator.pt', 'losses.csv', 'reference_stats.json', 'run.json', 'samples']
    >>> tmp.cleanup()
    """
    from grainforge.data.pairs import load_pairs
    from grainforge.data.torchdata import PairCropDataset
    from grainforge.torchutil import resolve_device, seed_everything

    config = config.with_iters(iters)
    config.validate()
    checkpoint_path = Path(out) / CHECKPOINT_FILE
    checkpoint.check_start(checkpoint_path, resume)
    if pairs is None:
        if pairs_dir is None:
            raise UserError("pairs_dir: no training pairs given; pass a folder with images/ and labels/")
        pairs = load_pairs(pairs_dir)
    if not pairs:
        raise UserError(f"{pairs_dir}: no (image, label) pairs to train on")
    config = config.for_items(len(pairs))
    label_width = mean_line_width(pair.boundary for pair in pairs)  # what apply_style's labels must match
    label_share = float(np.mean([pair.boundary.mean() for pair in pairs]))  # their polarity: a minority of boundary
    held_out = load_pairs(val) if isinstance(val, (str, os.PathLike)) else val
    samples = sample_crops(held_out or pairs, config.crop, config.n_samples)

    torch_device = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    out = ensure_writable_dir(out)
    seed_everything(seed)
    model = Pix2Pix(config, torch_device)
    dataset = PairCropDataset(pairs, crop=config.crop, length=config.iters * config.batch_size,
                              augment=config.augment, seed=seed)

    start, loss_rows = 0, []
    if resume:
        state = checkpoint.load(checkpoint_path, "pix2pix-checkpoint")
        stored = stored_config(state, str(checkpoint_path))
        if dataclasses.replace(stored, iters=config.iters) != config:
            raise UserError(f"{checkpoint_path}: saved with a different config; resume with the same config "
                            "or start again (resume off)")
        start = model.load_state(state)
        if start > config.iters:
            raise UserError(f"iters {config.iters}: the checkpoint in {out} is already at iteration {start}")
        if (out / "losses.csv").is_file():
            loss_rows = [row for row in read_csv(out / "losses.csv") if int(row["iter"]) <= start]

    record = RunRecord(out, command="style train", config=config_to_dict(config), seed=seed)
    save_config(config, out / "config.yaml")
    wall0 = time.perf_counter() - (float(loss_rows[-1]["wall_time_s"]) if loss_rows else 0.0)

    def save_checkpoint(iteration: int) -> None:
        state = model.state(iteration)
        checkpoint.save(checkpoint_path, "pix2pix-checkpoint", state.pop("config"), **state)
        write_csv(out / "losses.csv", loss_rows, LOSS_COLUMNS)

    def save_samples(iteration: int) -> None:
        write_png(out / "samples" / f"iter_{iteration:06d}.png",
                  sample_grid(model.generator, config, samples, torch_device, seed))

    from rich.progress import TextColumn

    losses = {"loss_D": float("nan"), "loss_G_GAN": float("nan"), "loss_G_L1": float("nan")}
    with record.phase("train"), progress_bar(TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[losses]}"),
                                             disable=not progress) as bar:
        task = bar.add_task("pix2pix", total=config.iters, completed=start, rate="", losses="")
        t_rate, n_rate = time.perf_counter(), 0
        for iteration in range(start, config.iters):
            lr = config.lr_at(iteration)
            model.set_lr(lr)
            losses = model.step(*_batch(dataset, iteration, config.batch_size, torch_device))
            done = iteration + 1
            n_rate += 1
            if done % config.log_every == 0 or done == config.iters:
                loss_rows.append({"iter": done, "lr": f"{lr:.6g}", **{k: f"{v:.5f}" for k, v in losses.items()},
                                  "wall_time_s": f"{time.perf_counter() - wall0:.2f}"})
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.iters:
                save_checkpoint(done)
            if config.sample_every and done % config.sample_every == 0 and done < config.iters:
                save_samples(done)
            now = time.perf_counter()
            bar.update(task, advance=1,
                       rate=f"{n_rate / max(now - t_rate, 1e-9):.2f} it/s",
                       losses=f"D {losses['loss_D']:.3f}  G {losses['loss_G_GAN']:.3f}  L1 {losses['loss_G_L1']:.4f}")
            if now - t_rate > 10:
                t_rate, n_rate = now, 0

    with record.phase("save"):
        save_checkpoint(config.iters)
        save_samples(config.iters)
        checkpoint.save(out / GENERATOR_FILE, "pix2pix-generator", config_to_dict(config),
                        state=model.generator.state_dict(), label_width_px=label_width,
                        label_boundary_share=label_share)
    with record.phase("fidelity"):  # reference_stats.json of the real pairs, fidelity.json of the samples
        fidelity = check_training(model.generator, config, pairs, [boundary for boundary, _ in samples], out,
                                  torch_device, seed)
    record.write(iterations=config.iters, resumed_from=start, device=str(torch_device),
                 n_pairs=len(pairs), final_losses=losses, label_width_px=label_width, fidelity=fidelity)
    return out
