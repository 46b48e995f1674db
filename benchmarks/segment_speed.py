"""U-Net segmentation speed on this machine: training iterations/s (batch 8 of 256 x 256 crops),
prediction time for one 2800 x 1600 micrograph (the paper's image size: tiled inference and
post-processing), and the process's peak memory; or (``--command``) the whole ``grainforge segment
predict`` command on such a micrograph.

    .venv/bin/python benchmarks/segment_speed.py [--config cpu-small|paper|FILE.yaml] [--device cpu]
                                                 [--iters 5] [--model MODEL_DIR] [--post-repeats 2]
    .venv/bin/python benchmarks/segment_speed.py --command --model MODEL_DIR [--repeats 3] [--before OLD_SRC]

``--command``: renders the hard-preset 2800 x 1600 micrograph of benchmarks/RESULTS.md
(``render(voronoi_grains((1600, 2800), mean_area_px=1600, seed=0), preset_params("hard", rng(1)), seed=1)``,
8-bit PNG) and runs ``python -m grainforge segment predict MODEL big.png --out OUT --device cpu`` in child
processes, after one untimed run (numba's cache); per run it prints the wall, the child's CPU time
(user + sys), the load average and the phases of ``run.json`` (model loading, reading, inference,
post-processing, grain table, writing left at the end), and as "start-up" the wall outside them
(interpreter, imports, command line, run record). ``--before OLD_SRC`` alternates with the package in
OLD_SRC (e.g. ``git archive COMMIT src | tar -x -C /tmp/old``) and checks that both write the same
outputs (PNG pixels, other files byte for byte).

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
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import watershed

from grainforge.config import load_config
from grainforge.grains import boundary_from_ids
from grainforge.microscope import preset_params, render, voronoi_grains
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


def write_hard_micrograph(path: Path) -> None:
    """The hard-preset HEIGHT x WIDTH micrograph of benchmarks/RESULTS.md as an 8-bit PNG."""
    from grainforge.data.io import to_uint8, write_png

    grains = voronoi_grains((HEIGHT, WIDTH), mean_area_px=1600, seed=0)
    write_png(path, to_uint8(render(grains, preset_params("hard", np.random.default_rng(1)), seed=1)))


def run_predict(src: str, model: str, image: Path, out: Path) -> dict:
    """One ``grainforge segment predict`` in a child process with ``src`` first on PYTHONPATH: wall and CPU
    (s), load average before it, run.json's phases."""
    env = {**os.environ, "PYTHONPATH": src}
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grainforge", "segment", "predict", model, str(image), "--out", str(out),
                    "--device", "cpu"], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    phases = json.loads((out / "run.json").read_text())["timings_s"]
    return {"wall": wall, "cpu": cpu, "load": load, "phases": phases, "start-up": wall - sum(phases.values())}


def same_outputs(first: Path, second: Path) -> bool:
    """Whether two prediction folders hold the same outputs: PNG pixels, other files (not run.json) byte for byte."""
    from grainforge.data.io import read_image

    for path in sorted(p for p in first.rglob("*") if p.is_file() and p.name != "run.json"):
        other = second / path.relative_to(first)
        same = (np.array_equal(read_image(path), read_image(other)) if path.suffix == ".png"
                else path.read_bytes() == other.read_bytes())
        if not same:
            print(f"  differs: {path.relative_to(first)}")
            return False
    return True


def command_benchmark(model: str, repeats: int, before: str | None) -> None:
    """Time the whole ``segment predict`` command (see the module docstring)."""
    sources = {"after": str(Path(__file__).resolve().parents[1] / "src")}
    if before:
        sources = {"before": str(Path(before).resolve()), **sources}
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "big.png"
        write_hard_micrograph(image)
        for name, src in sources.items():  # untimed: numba compiles into the source tree's cache once
            run_predict(src, model, image, Path(tmp) / name)
        if before:
            print(f"same outputs before and after: {'yes' if same_outputs(Path(tmp) / 'before', Path(tmp) / 'after') else 'NO'}")
        runs = {name: [] for name in sources}
        for round_ in range(repeats):
            for name, src in sources.items():
                run = run_predict(src, model, image, Path(tmp) / name)
                runs[name].append(run)
                split = ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in run["phases"].items())
                print(f"{name} run {round_ + 1}: wall {run['wall']:.2f} s, CPU {run['cpu']:.2f} s, load {run['load']:.1f}; "
                      f"start-up {run['start-up']:.2f}, {split}")
    for name, found in runs.items():
        median = {key: statistics.median(run[key] for run in found) for key in ("wall", "cpu", "start-up")}
        phases = {phase: statistics.median(run["phases"].get(phase, 0.0) for run in found) for phase in found[0]["phases"]}
        split = ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in phases.items())
        print(f"segment_predict_{WIDTH}x{HEIGHT} {name} (median of {repeats}): wall {median['wall']:.2f} s, "
              f"CPU {median['cpu']:.2f} s; start-up {median['start-up']:.2f}, {split}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", action="store_true", help="time the whole segment predict command (needs --model)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the command (--command)")
    parser.add_argument("--before", default=None, help="a src folder of older code to alternate with (--command)")
    parser.add_argument("--config", default="cpu-small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=5, help="timed training iterations (after one warm-up)")
    parser.add_argument("--model", default=None, help="a trained model folder instead of random weights")
    parser.add_argument("--post-repeats", type=int, default=2, help="timed rounds of post-processing (after one warm-up)")
    args = parser.parse_args()
    if args.command:
        if not args.model:
            parser.error("--command needs --model")
        command_benchmark(args.model, args.repeats, args.before)
        return
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
    table_s = seconds(lambda: grain_rows(labels, 0.2), 1)
    print(f"grain_table_{WIDTH}x{HEIGHT}_s (segment predict's grains/*.csv): {table_s:.2f}")
    print(f"predict_{WIDTH}x{HEIGHT}_total_s (tiled inference + post-processing + grain table): "
          f"{tiled_s + post['ours'] + table_s:.2f}")
    print(f"peak_rss_mib (after the single full pass and post-processing): {peak_rss_mib():.0f}")
    if device.type == "cuda":
        print(f"peak_cuda_mib: {torch.cuda.max_memory_allocated() / 2**20:.0f}")


if __name__ == "__main__":
    main()
