"""U-Net segmentation speed on this machine: training iterations/s (batch 8 of 256 x 256 crops),
prediction time for one 2800 x 1600 micrograph (the paper's image size: tiled inference and
post-processing), and the process's peak memory.

    .venv/bin/python benchmarks/segment_speed.py [--config cpu-small|paper|FILE.yaml] [--device cpu]
                                                 [--iters 5] [--model MODEL_DIR] [--post-repeats 2]

Prints one figure per line. Weights are random unless ``--model`` is given (speed does not depend on
them). Post-processing runs on a realistic probability map: with ``--model``, the model's own
prediction of the rendered demo micrograph (made in a child process so that its memory is not
counted); with random weights, whose output has no grain structure, the micrograph's true
boundaries blurred (sigma 1 px, x 2.5, clipped) times 0.97 plus uniform noise of 0.03 (so that
the grain cores are not all exactly 0, which no network outputs). The tiled prediction is set
beside one full-image forward pass measured in the same run (ratio = tiling overhead);
post-processing (docs/design.md §8.5.1) beside the same steps with
``skimage.segmentation.watershed`` as the flooding (the code before §8.5.1), timed in alternation,
with whether their boundaries agree. Reads no data.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import watershed

from grainforge.config import load_config
from grainforge.grains import boundary_from_ids
from grainforge.microscope import render, voronoi_grains
from grainforge.segment.config import SEGMENT_PRESETS, SegmentConfig
from grainforge.segment.inference import full_probability, tiled_probability
from grainforge.segment.network import build_network, load_model
from grainforge.segment import postprocess as postprocess_module
from grainforge.segment.postprocess import postprocess
from grainforge.segment.predict import grain_rows
from grainforge.segment.train import segmentation_loss
from grainforge.torchutil import resolve_device

HEIGHT, WIDTH = 1600, 2800
TRAIN_CROP, TRAIN_BATCH = 256, 8


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def demo_micrograph() -> tuple[np.ndarray, np.ndarray]:
    """(grain ids, rendered micrograph) of HEIGHT x WIDTH px, demo-data style (mean grain area 1600 px)."""
    grains = voronoi_grains((HEIGHT, WIDTH), mean_area_px=1600.0, seed=0)
    return grains, render(grains, seed=0)


def seconds(run, repeats: int) -> float:
    """Mean wall time (s) of ``run()`` over ``repeats`` calls after one warm-up call (CUDA-synchronised)."""
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def alternating_seconds(runs: dict, repeats: int) -> dict:
    """Mean wall time (s) of each ``runs[name]()`` over ``repeats`` rounds that call each once in turn
    (after one warm-up round), so that a shared machine's load falls on all alike."""
    totals = dict.fromkeys(runs, 0.0)
    for round_ in range(repeats + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            totals[name] += (time.perf_counter() - start) if round_ else 0.0
    return {name: total / repeats for name, total in totals.items()}


def skimage_flood(probability: np.ndarray, markers: np.ndarray, watershed_line: bool = False) -> np.ndarray:
    """The flooding before docs/design.md §8.5.1: scikit-image's watershed of the whole image."""
    return watershed(probability, markers, watershed_line=watershed_line).astype(np.int32)


def reference_postprocess(probability: np.ndarray, config) -> tuple[np.ndarray, np.ndarray]:
    """:func:`postprocess` with :func:`skimage_flood` as its flooding."""
    flood = postprocess_module.flood
    postprocess_module.flood = skimage_flood
    try:
        return postprocess(probability, config)
    finally:
        postprocess_module.flood = flood


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu-small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=5, help="timed training iterations (after one warm-up)")
    parser.add_argument("--model", default=None, help="a trained model folder instead of random weights")
    parser.add_argument("--post-repeats", type=int, default=2, help="timed rounds of post-processing (after one warm-up)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    if args.model:
        network, config, _ = load_model(args.model, device)
    else:
        config = load_config(SegmentConfig, args.config, SEGMENT_PRESETS)
        network = build_network(config).to(device)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, config: {args.model or args.config} "
          f"(width {config.width}, depth {config.depth}, tile {config.tile}, overlap {config.overlap})")

    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)

    def train_step_seconds(crop: int) -> float:
        images = torch.rand(TRAIN_BATCH, 1, crop, crop, device=device)
        boundaries = (torch.rand_like(images) < 0.07).float()

        def train_step() -> None:
            loss = segmentation_loss(network(images), boundaries, config.boundary_weight, config.dice_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return seconds(train_step, args.iters)

    step_s = train_step_seconds(TRAIN_CROP)
    print(f"train_iters_per_s (batch {TRAIN_BATCH} x {TRAIN_CROP} px): {1.0 / step_s:.3f}")
    if config.crop != TRAIN_CROP:
        step_s = train_step_seconds(config.crop)
        print(f"train_iters_per_s (batch {config.batch_size} x {config.crop} px, the config's crop): {1.0 / step_s:.3f}")
    print(f"train_s_for_{config.iters}_iters (the config's schedule, validation not included): {config.iters * step_s:.0f}")
    print(f"peak_rss_mib_after_training: {peak_rss_mib():.0f}")

    with ProcessPoolExecutor(1) as pool:  # in a child process: its memory must not count as ours
        grains, micrograph = pool.submit(demo_micrograph).result()
    truth = boundary_from_ids(grains)
    network.eval()
    tiled_s = seconds(lambda: tiled_probability(network, micrograph, config.tile, config.overlap), 1)
    print(f"predict_{WIDTH}x{HEIGHT}_tiled_inference_s: {tiled_s:.2f}")
    print(f"peak_rss_mib_after_tiled_inference: {peak_rss_mib():.0f}")
    full_s = seconds(lambda: full_probability(network, micrograph), 1)
    print(f"predict_{WIDTH}x{HEIGHT}_single_full_pass_s: {full_s:.2f}  (tiled / full: {tiled_s / full_s:.2f})")
    if args.model:  # reloaded: the timed training steps above changed the weights
        probability = tiled_probability(load_model(args.model, device)[0], micrograph, config.tile, config.overlap)
    else:
        noise = np.random.default_rng(0).random(truth.shape, dtype=np.float32)
        probability = np.clip(ndimage.gaussian_filter(truth.astype(np.float32), 1.0) * 2.5, 0.0, 1.0) * 0.97 + 0.03 * noise
    post = alternating_seconds({"ours": lambda: postprocess(probability, config),
                                "skimage": lambda: reference_postprocess(probability, config)}, args.post_repeats)
    boundary, labels = postprocess(probability, config)
    same = np.array_equal(boundary, reference_postprocess(probability, config)[0])
    print(f"postprocess_{WIDTH}x{HEIGHT}_s (watershed closing, {int(labels.max())} grains of {int(grains.max())}): "
          f"{post['ours']:.2f}")
    print(f"postprocess_{WIDTH}x{HEIGHT}_skimage_watershed_s: {post['skimage']:.2f}  (skimage / ours: "
          f"{post['skimage'] / post['ours']:.1f}; same boundaries: {'yes' if same else 'NO'})")
    table_s = seconds(lambda: grain_rows(boundary, labels, 0.2), 1)
    print(f"grain_table_{WIDTH}x{HEIGHT}_s (segment predict's grains/*.csv): {table_s:.2f}")
    print(f"predict_{WIDTH}x{HEIGHT}_total_s (tiled inference + post-processing + grain table): "
          f"{tiled_s + post['ours'] + table_s:.2f}")
    print(f"peak_rss_mib (after the single full pass and post-processing): {peak_rss_mib():.0f}")
    if device.type == "cuda":
        print(f"peak_cuda_mib: {torch.cuda.max_memory_allocated() / 2**20:.0f}")


if __name__ == "__main__":
    main()
