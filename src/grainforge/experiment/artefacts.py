"""Shared artefacts of an experiment, built once in the run folder and reused on resume: the real
split, the simulation and its sections, grain-ID, plain and microscope images, one pix2pix per real
fraction and the supplement's splits (paths and done markers: :mod:`grainforge.experiment.layout`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from grainforge.data.io import atomic_path, list_images, read_image, write_pair
from grainforge.errors import UserError
from grainforge.experiment.config import BUILTIN_DEMO, ExperimentConfig, style_config
from grainforge.experiment.layout import (FULL, RunLayout, format_fraction, is_done, mark_done, real_subset,
                                          start_fresh)
from grainforge.labelwidth import ONE_PIXEL_WIDTH_PX, mean_line_width, same_width
from grainforge.progress import console, progress_bar

#: Grey levels of the "plain" simulated images (paper Table 3): bright background, dark 1-px lines.
PLAIN_BACKGROUND = 0.85
PLAIN_LINE = 0.15


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


# ---------------------------------------------------------------- real data


def _split_by_source(config: ExperimentConfig, source: Path) -> tuple[list, list]:
    """(train pairs, test pairs) of a real-data source (see RealDataConfig)."""
    from grainforge.data.pairs import load_pairs
    from grainforge.data.split import train_test_split

    real = config.real
    options = dict(boundary_value=real.boundary_value, threshold=real.threshold, thin=real.thin)
    if (source / "train").is_dir() and (source / "test").is_dir():
        return load_pairs(source / "train", **options), load_pairs(source / "test", **options)
    pairs = load_pairs(source, **options)
    names = [pair.name for pair in pairs]
    if all(n.startswith(("train_", "test_")) for n in names) and any(n.startswith("test_") for n in names) \
            and any(n.startswith("train_") for n in names):
        test_names = {n for n in names if n.startswith("test_")}
    else:
        test_names = set(train_test_split(names, real.test_fraction, real.split_seed)[1])
    return [p for p in pairs if p.name not in test_names], [p for p in pairs if p.name in test_names]


def prepare_real(config: ExperimentConfig, layout: RunLayout, progress: bool = True) -> None:
    """Write the real train/test pairs into ``real/`` (generating the demo micrographs if asked)."""
    from grainforge.data.split import tile_pairs
    from grainforge.grainstats import mean_grain_area

    folder = layout.real
    if is_done(folder):
        return
    start_fresh(folder)
    real = config.real
    source = Path(real.source)
    if real.source == BUILTIN_DEMO:
        from grainforge.microscope import make_demo_data

        console.print(f"generating {real.demo_images} demo micrographs ({real.demo_size} px, preset {real.demo_preset})")
        source = folder / "generated"
        make_demo_data(source, n=real.demo_images, size=real.demo_size, seed=real.split_seed,
                       test_fraction=real.test_fraction, preset=real.demo_preset, progress=progress)
    train, test = _split_by_source(config, source)
    if not train or not test:
        raise UserError(f"real.source: {real.source} gives {len(train)} train and {len(test)} test images; "
                        "need both (check the names or real.test_fraction)")
    if real.test_tile is not None:
        test = tile_pairs(test, real.test_tile)
    for split, pairs in (("train", train), ("test", test)):
        for pair in pairs:
            write_pair(folder / split, pair.name, pair.image, pair.boundary)
    area = mean_grain_area(layout.real_train / "labels")
    width = mean_line_width(pair.boundary for pair in train)
    mark_done(folder, n_train=len(train), n_test=len(test))
    layout.add_timings(real_train_images=len(train), real_test_images=len(test), real_mean_area_px=area,
                       real_label_width_px=width)


# ---------------------------------------------------------------- simulation


def prepare_sections(config: ExperimentConfig, layout: RunLayout, progress: bool = True) -> None:
    """Run (or resume) the Potts simulation and cut its sections, zoomed to the real mean grain area."""
    from grainforge.potts import simulate
    from grainforge.sections import slice_run

    sim = config.simulation
    if not is_done(layout.simulation):
        console.print(f"simulating {sim.size}^3 Potts grain growth, {sim.mcs} MCS")
        t0 = time.perf_counter()
        simulate(sim.size, sim.mcs, kT=sim.kT, seed=sim.seed, out=layout.simulation,
                 checkpoint_every=max(1, sim.mcs // 10), resume=(layout.simulation / "checkpoint.npz").is_file(),
                 target_grain_size=sim.target_grain_size, progress=progress)
        mark_done(layout.simulation)
        layout.add_timings(simulation_s=time.perf_counter() - t0)
    if is_done(layout.sections):
        return
    start_fresh(layout.sections)
    area = layout.read_timings()["real_mean_area_px"] if sim.match_mean_area else None
    width = layout.read_timings().get("real_label_width_px") if sim.match_boundary_width else None
    width = None if width is None or same_width(width, ONE_PIXEL_WIDTH_PX) else width
    t0 = time.perf_counter()
    manifest = slice_run(layout.simulation, layout.sections, axes=sim.axes, stride=sim.stride, zoom=sim.zoom,
                         match_mean_area=area, crop=sim.crop, boundary_width=width, progress=progress)
    seconds = time.perf_counter() - t0
    labels = list_images(layout.sections / "labels")
    height, width = read_image(labels[0]).shape
    mark_done(layout.sections, n_sections=len(manifest))
    layout.add_timings(slicing_s=seconds, n_sections=len(labels), section_pixels=height * width)


def _section_boundaries(layout: RunLayout) -> list[tuple[str, np.ndarray]]:
    from grainforge.data.pairs import load_boundaries

    return load_boundaries(layout.sections / "labels")


def _draw_sections(layout: RunLayout, folder: Path, description: str, draw, progress: bool) -> None:
    """Write every section label with the image ``draw(name, boundary)`` (H, W in [0, 1]) into ``folder``."""
    if is_done(folder):
        return
    start_fresh(folder)
    boundaries = _section_boundaries(layout)
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task(description, total=len(boundaries))
        for name, boundary in boundaries:
            write_pair(folder, name, draw(name, boundary), boundary)
            bar.update(task, advance=1)
    mark_done(folder, n=len(boundaries))


def prepare_simulated_ids(layout: RunLayout, progress: bool = True) -> None:
    """Every section as the paper's "simulated" image (its Fig. 1d): pixel value = grain id, boundary
    pixels 0, scaled by the section's largest id N from [0, N] to [0, 1] (stored as 8-bit grey)."""
    def grain_ids(name: str, boundary: np.ndarray) -> np.ndarray:
        ids = read_image(layout.sections / "ids" / f"{name}.tif").astype(np.float64)
        return np.where(boundary, 0.0, ids) / max(ids.max(), 1.0)

    _draw_sections(layout, layout.simulated_ids, "grain-ID images", grain_ids, progress)


def prepare_plain(layout: RunLayout, progress: bool = True) -> None:
    """Every section label drawn as a plain image: dark 1-px lines on a uniform bright background."""
    _draw_sections(layout, layout.plain, "plain images",
                   lambda name, boundary: np.where(boundary, PLAIN_LINE, PLAIN_BACKGROUND), progress)


def prepare_microscope(config: ExperimentConfig, layout: RunLayout, progress: bool = True) -> None:
    """Every section label rendered by the virtual microscope with its own random parameters (no GAN)."""
    from grainforge.microscope import random_params, render

    if is_done(layout.microscope):
        return
    start_fresh(layout.microscope)
    boundaries = _section_boundaries(layout)
    rng = np.random.default_rng(config.simulation.seed)
    t0 = time.perf_counter()
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("microscope renders", total=len(boundaries))
        for k, (name, boundary) in enumerate(boundaries):
            image = render(boundary, random_params(rng), seed=config.simulation.seed * 1_000_003 + k)
            write_pair(layout.microscope, name, image, boundary)
            bar.update(task, advance=1)
    mark_done(layout.microscope, n=len(boundaries))
    layout.add_timings(microscope_s=time.perf_counter() - t0)


def prepare_style(config: ExperimentConfig, layout: RunLayout, fraction: float, progress: bool = True) -> None:
    """pix2pix trained on ``fraction`` of the real training pairs, applied to every section label."""
    from grainforge.style import apply_style, train_style

    out = layout.synthetic(fraction)
    if is_done(out):
        return
    seed = config.real.split_seed
    model = layout.style_model(fraction)
    if not is_done(model):
        pairs = real_subset(layout, fraction, seed, config.real.patches, config.real.patch)
        console.print(f"training pix2pix on {len(pairs)} real {'patches' if config.real.patches else 'pair(s)'} "
                      f"(fraction {format_fraction(fraction)})")
        t0 = time.perf_counter()
        train_style(layout.real_train, style_config(config), model, seed=seed, device=config.device,
                    resume=(model / "checkpoint.pt").is_file(), progress=progress, pairs=pairs)
        mark_done(model)
        layout.add_timings(**{f"style_train_s_f{format_fraction(fraction)}": time.perf_counter() - t0})
    start_fresh(out)
    t0 = time.perf_counter()
    written = apply_style(model, layout.sections / "labels", out, device=config.device, seed=seed, progress=progress)
    mark_done(out, n=len(written))
    layout.add_timings(**{f"style_apply_s_f{format_fraction(fraction)}": time.perf_counter() - t0,
                          f"style_apply_n_f{format_fraction(fraction)}": len(written)})


def supplement_sources(layout: RunLayout) -> dict[str, Path]:
    """{kind: pair folder} of the supplement's train/test splits: ``simulated`` (the paper's: grain-ID
    sections) and ``synthetic`` (an extra: pix2pix of F = 1)."""
    return {"simulated": layout.simulated_ids, "synthetic": layout.synthetic(FULL)}


def prepare_supplement(config: ExperimentConfig, layout: RunLayout) -> None:
    """Split each supplement source (:func:`supplement_sources`) train : test = ``supplement_ratio`` : 1."""
    from grainforge.data.split import train_test_split

    for kind, source in supplement_sources(layout).items():
        folder = layout.supplement(kind)
        if is_done(folder):
            continue
        start_fresh(folder)
        names = [path.stem for path in list_images(source / "labels")]
        train, test = train_test_split(names, 1.0 / (1.0 + config.supplement_ratio), config.real.split_seed)
        for split, chosen in (("train", train), ("test", test)):
            for name in chosen:
                for sub in ("images", "labels"):
                    _copy(source / sub / f"{name}.png", folder / split / sub / f"{name}.png")
        mark_done(folder, n_train=len(train), n_test=len(test))


def style_fractions(config: ExperimentConfig) -> list[float]:
    """Real fractions whose pix2pix the config's tables need."""
    needed = set()
    if "table4" in config.tables or "beyond" in config.tables:
        needed.update(config.table4_fractions)
    if "supplement" in config.tables or "table1" in config.tables:
        needed.add(FULL)
    return sorted(needed)


def prepare_artefacts(config: ExperimentConfig, layout: RunLayout, progress: bool = True) -> None:
    """Build (or reuse) every artefact the config's tables need, in dependency order."""
    prepare_real(config, layout, progress)
    prepare_sections(config, layout, progress)
    if "table3" in config.tables or "supplement" in config.tables:
        prepare_simulated_ids(layout, progress)
    if "table3" in config.tables:
        prepare_plain(layout, progress)
    if "beyond" in config.tables:
        prepare_microscope(config, layout, progress)
    for fraction in style_fractions(config):
        prepare_style(config, layout, fraction, progress)
    if "supplement" in config.tables:
        prepare_supplement(config, layout)
