"""The experiment config: real data, simulation, style/segment settings, fractions, seeds, tables.

Shipped configs live in ``grainforge/configs/<name>.yaml`` (``demo``, ``laptop``, ``paper``, ``tbm``)
and are the presets a user YAML may start from with ``base: NAME``. Relative paths in a config
are taken from the current working directory. Every check runs in :func:`load_experiment_config`,
before any work starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from grainforge.config import config_from_dict, load_config
from grainforge.errors import UserError

#: Tables the runner knows, in report order.
TABLES = ("table1", "table3", "table4", "beyond", "supplement")
#: Source name meaning "generate the built-in demo micrographs into the run folder".
BUILTIN_DEMO = "builtin-demo"
DEFAULT_FRACTIONS = [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 1.0]


@dataclass(frozen=True)
class RealDataConfig:
    """Where the real (image, label) pairs come from and how they are split into train and test.

    ``source``: ``builtin-demo``; a folder with ``train/`` and ``test/`` (each ``images/`` + ``labels/``);
    a folder with ``images/`` + ``labels/`` (split by the name prefixes ``train_``/``test_`` when every
    name has one, else at random with ``test_fraction``); or an HDF5 file (split likewise).
    """

    source: str = BUILTIN_DEMO
    test_fraction: float = 0.25      # share of test images when the source has no split of its own
    split_seed: int = 0              # fixes the train/test split and the nested real fractions
    boundary_value: int | str = "auto"   # label value of boundary pixels: auto, 0 or 255
    threshold: int = 127             # label images: grey level above which a pixel is "bright"
    thin: bool = False               # thin thick label lines to 1 pixel when reading
    test_tile: int | None = None     # cut test images into non-overlapping tiles of this side (paper: 400)
    demo_images: int = 16            # builtin-demo: number of generated micrographs
    demo_size: int = 256             # builtin-demo: image side in pixels
    demo_preset: str = "hard"        # builtin-demo: microscope style preset, hard | easy | random (grainforge.microscope.STYLE_PRESETS)
    patches: int | None = None       # fixed training patch set (paper: 2800), fractions are shares of it; None = crops anywhere
    patch: int = 400                 # side of those patches in px (paper: 400)

    def validate(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise UserError(f"real.test_fraction: {self.test_fraction} must be in (0, 1)")
        if self.boundary_value not in ("auto", 0, 255):
            raise UserError(f"real.boundary_value: {self.boundary_value!r} must be auto, 0 or 255")
        if self.test_tile is not None and self.test_tile < 16:
            raise UserError(f"real.test_tile: {self.test_tile} must be >= 16 pixels (or null for whole images)")
        if self.patches is not None and (self.patches < 1 or self.patch < 16):
            raise UserError(f"real.patches / patch: {self.patches} patches of {self.patch} px; need >= 1 patch of >= 16 px "
                            "(or patches: null for random crops anywhere)")
        if self.demo_images < 4 or self.demo_size < 64:
            raise UserError("real.demo_images / demo_size: need at least 4 images of at least 64 pixels")
        from grainforge.microscope import STYLE_PRESETS

        if self.demo_preset not in STYLE_PRESETS:
            raise UserError(f"real.demo_preset: {self.demo_preset!r} must be one of {', '.join(STYLE_PRESETS)}")


@dataclass(frozen=True)
class SimulationConfig:
    """The 3D Potts run and its sections. Sizes in lattice sites; sections are zoomed so that their
    mean grain area equals the real training labels' (``match_mean_area``)."""

    size: int = 64                   # cubic lattice side (even)
    mcs: int = 200                   # Monte Carlo steps (upper bound when target_grain_size is set)
    kT: float = 0.5
    target_grain_size: float | None = None   # stop at this mean grain diameter (lattice sites)
    seed: int = 0
    axes: str = "xyz"                # section normals
    stride: int = 4                  # every stride-th section along each axis
    match_mean_area: bool = True     # zoom sections to the real labels' mean grain area
    zoom: float | None = None        # fixed zoom instead (match_mean_area false): the section count is then known in advance
    crop: int | None = None          # crop sections to this side after zooming (None = whole)
    match_boundary_width: bool = True  # draw section labels as wide as the real training labels' lines

    def validate(self) -> None:
        if self.size < 8 or self.size % 2:
            raise UserError(f"simulation.size: {self.size} must be an even number >= 8")
        if self.mcs < 1 or self.stride < 1:
            raise UserError("simulation.mcs and simulation.stride must be >= 1")
        if not self.axes or set(self.axes) - set("xyz"):
            raise UserError(f"simulation.axes: {self.axes!r} must be letters of 'xyz'")
        if self.zoom is not None and (self.match_mean_area or not self.zoom > 0):
            raise UserError(f"simulation.zoom: {self.zoom} needs match_mean_area: false and must be > 0")


@dataclass(frozen=True)
class StageConfig:
    """A style or segment stage: a preset name, field overrides, and the iteration count (None = preset's)."""

    preset: str = "cpu-small"
    iters: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.iters is not None and self.iters < 1:
            raise UserError(f"iters: {self.iters} must be >= 1 (or null for the preset's)")


@dataclass(frozen=True)
class ClusterConfig:
    """Where ``experiment --cluster slurm`` runs: a ``dask_jobqueue.SLURMCluster`` of ``jobs`` Slurm jobs,
    one dask worker per job running one task (a row or an artefact) at a time with ``cores`` threads.
    ``cores`` also sets the threads of a task under ``--jobs N`` (default: the machine's cores // N),
    ``--cluster ADDRESS`` (default: the CPUs the worker may use) and ``--jobs 1`` (default: torch's
    threads when the run starts). Sizes as dask writes them (16GB, 64GiB),
    walltime as Slurm does (HH:MM:SS, D-HH:MM:SS)."""

    jobs: int = 4                    # Slurm jobs (= dask workers) kept running
    cores: int | None = None         # CPU cores per job and threads per task; required by --cluster slurm
    memory: str = "16GB"             # memory per job
    walltime: str = "04:00:00"       # time limit per job, quoted in YAML (a job that ends loses its task: retried)
    gpus: int = 0                    # GPUs per job: 0 or 1 (a task uses one device)
    queue: str | None = None         # Slurm partition (sbatch -p)
    account: str | None = None       # Slurm account (sbatch -A)
    interface: str | None = None     # network interface the workers listen on, e.g. ib0 (null: dask's choice)
    job_extra: list[str] = field(default_factory=list)   # more sbatch options, e.g. ["--constraint=h200"]
    prologue: list[str] = field(default_factory=list)    # shell lines before the worker starts, e.g. module load

    def validate(self) -> None:
        from dask.utils import parse_bytes

        if self.jobs < 1 or (self.cores is not None and self.cores < 1):
            raise UserError(f"cluster.jobs / cluster.cores: {self.jobs} / {self.cores} must be >= 1")
        if self.gpus not in (0, 1):
            raise UserError(f"cluster.gpus: {self.gpus} must be 0 or 1 (a row uses one GPU; ask for more jobs instead)")
        try:
            parse_bytes(self.memory)
        except ValueError as err:
            raise UserError(f"cluster.memory: {self.memory!r} is not a size; write it like 16GB or 64GiB") from err
        if not re.fullmatch(r"(\d+-)?\d+(:\d{2}){1,2}", self.walltime):
            raise UserError(f"cluster.walltime: {self.walltime!r} is not a Slurm time; write it like \"04:00:00\" or "
                            "\"1-12:00:00\", in quotes (YAML reads an unquoted 12:00:00 as 43200 seconds)")


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: what to compare, on what data, how long to train, and how many seeds."""

    real: RealDataConfig = field(default_factory=RealDataConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    style: StageConfig = field(default_factory=StageConfig)
    segment: StageConfig = field(default_factory=StageConfig)
    fractions: list[float] = field(default_factory=lambda: list(DEFAULT_FRACTIONS))
    seeds: list[int] = field(default_factory=lambda: [0])
    tables: list[str] = field(default_factory=lambda: list(TABLES))
    supplement_ratio: float = 2.8    # simulated train : test images of the supplement
    device: str = "auto"
    no_data_images: bool = False     # omit every figure that shows the data (for data not ours to publish)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)   # --cluster slurm; threads per task

    def validate(self) -> None:
        if not self.fractions:
            raise UserError("fractions: empty; list real fractions in (0, 1], e.g. [0.25, 1.0]")
        for fraction in self.fractions:
            if not 0.0 < fraction <= 1.0:
                raise UserError(f"fractions: {fraction} is impossible; every real fraction must be in (0, 1]")
        if len(set(self.fractions)) != len(self.fractions):
            raise UserError(f"fractions: {self.fractions} lists a fraction twice")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds: {self.seeds} must be a non-empty list of distinct integers")
        unknown = sorted(set(self.tables) - set(TABLES))
        if unknown or not self.tables:
            raise UserError(f"tables: unknown or none {unknown}; choose from {', '.join(TABLES)}")
        if self.supplement_ratio <= 0:
            raise UserError(f"supplement_ratio: {self.supplement_ratio} must be > 0 (train : test)")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise UserError(f"device: {self.device!r} is not one of auto, cpu, cuda")

    @property
    def table4_fractions(self) -> list[float]:
        """The fractions of Table 4 and the beyond-the-paper rows, ascending."""
        return sorted(self.fractions)


def _configs_dir() -> Path:
    return Path(str(resources.files("grainforge") / "configs"))


@cache
def shipped_configs() -> dict[str, ExperimentConfig]:
    """The configs shipped with the package, by name (``demo``, ``laptop``, ``paper``, ``tbm``)."""
    return {path.stem: load_config(ExperimentConfig, path, {}) for path in sorted(_configs_dir().glob("*.yaml"))}


def stage_config(stage: StageConfig, presets: dict, where: str):
    """The stage's dataclass: its preset with ``overrides`` and ``iters`` applied (UserError on a bad key)."""
    if stage.preset not in presets:
        raise UserError(f"{where}.preset: {stage.preset!r} is not one of {', '.join(presets)}")
    values = dict(stage.overrides)
    if stage.iters is not None:
        values["iters"] = stage.iters
        if getattr(presets[stage.preset], "epochs", None) is not None:
            values.setdefault("epochs", None)  # an explicit iteration count replaces an epoch-based schedule
    return config_from_dict(type(presets[stage.preset]), values, f"{where}.overrides", base=presets[stage.preset])


def style_config(config: ExperimentConfig):
    """The resolved :class:`grainforge.style.StyleConfig` of an experiment."""
    from grainforge.style import STYLE_PRESETS

    return stage_config(config.style, STYLE_PRESETS, "style")


def segment_config(config: ExperimentConfig):
    """The resolved :class:`grainforge.segment.SegmentConfig` of an experiment."""
    from grainforge.segment import SEGMENT_PRESETS

    return stage_config(config.segment, SEGMENT_PRESETS, "segment")


def load_experiment_config(spec: str | Path) -> ExperimentConfig:
    """A shipped config by name or a YAML file (optionally ``base: NAME``), fully checked: keys,
    fractions, stage presets and overrides, and that the real data source exists. Errors name the file."""
    try:
        config = load_config(ExperimentConfig, spec, shipped_configs())
        style_config(config)
        segment_config(config)
        source = config.real.source
        if source != BUILTIN_DEMO and not Path(source).exists():
            raise UserError(f"real.source: {source} does not exist; give a folder, an .h5 file or {BUILTIN_DEMO}")
    except UserError as err:
        if str(spec) in str(err):
            raise
        raise UserError(f"{spec}: {err}") from err
    return config
