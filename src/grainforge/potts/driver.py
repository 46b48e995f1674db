"""Run loop of the Potts simulation: validation, memory check, stop rules, log, checkpoints, resume.

A run directory holds:

- ``volume.zarr``: the grain id of every voxel (uint32, shape (Lx, Ly, Lz), axes x, y, z), chunked,
  with the steps done (``mcs``), the options and versions as attributes (:mod:`grainforge.volume`;
  runs of earlier versions hold ``volume.npz`` and still load).
- ``log.csv``: one row per logged MCS (:data:`LOG_COLUMNS`): ``mcs``, ``n_grains`` (distinct ids),
  ``mean_grain_volume`` (voxels = sites / n_grains), ``energy`` (unlike 26-neighbour pairs,
  each once, units of J), ``wall_time_s`` (seconds since the run started, summed over resumes).
- ``checkpoint.npz`` (with ``checkpoint_every``): ids, mcs, energy, log and the run's options.
- ``run.json``: options, seed, versions, timings (:class:`grainforge.runinfo.RunRecord`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from grainforge.data.io import ensure_writable_dir, write_csv, write_npz
from grainforge.errors import UserError
from grainforge.volume import write_volume

LOG_COLUMNS = ("mcs", "n_grains", "mean_grain_volume", "energy", "wall_time_s")
PROPOSALS = ("neighbour", "distinct")
BACKENDS = ("numba", "torch")
DEVICES = ("auto", "cpu", "cuda")
TARGET_KINDS = ("diameter", "area")
MAX_SITES = 2**32  # ids are uint32 and site i starts with id i
MCS_CAP_FOR_TARGET = 1_000_000  # the step limit when only a target grain size stops the run
BYTES_PER_SITE = 5  # uint32 ids + a uint8 scratch for counting grains
FIXED_OVERHEAD_BYTES = 256 * 2**20  # interpreter, numba, numpy and buffers
SECTIONS_PER_AXIS = 8  # sections measured per axis for the "area" target


@dataclass
class SimulationResult:
    """``ids``: uint32 (Lx, Ly, Lz) grain ids; ``log``: rows with :data:`LOG_COLUMNS`; ``mcs_done``."""

    ids: np.ndarray
    log: list[dict] = field(default_factory=list)
    mcs_done: int = 0
    target_reached: bool | None = None


def parse_size(size: int | str | tuple | list) -> tuple[int, int, int]:
    """Parse a lattice shape from one L (cubic) or three values.

    Strings may be ``"64"``, ``"64,64,32"`` or ``"64 64 32"``. Each side must be even and at least 4
    (UserError otherwise).
    """
    if isinstance(size, str):
        parts = size.replace(",", " ").replace("x", " ").split()
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise UserError(f"size {size!r}: not integers; give one even L or three, e.g. 64 or 64,64,32") from None
    elif isinstance(size, (int, np.integer)):
        values = [int(size)]
    else:
        values = [int(v) for v in size]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise UserError(f"size {size!r}: give one even L or three values Lx,Ly,Lz")
    for value in values:
        if value < 4 or value % 2:
            raise UserError(
                f"size {size!r}: every side must be even and at least 4 (the 2x2x2 checkerboard sweep "
                f"needs even sides); got {value}"
            )
    if math.prod(values) > MAX_SITES:
        raise UserError(
            f"size {size!r}: {math.prod(values):,} sites overflow the uint32 grain ids (at most {MAX_SITES:,}, "
            "about 1625^3); use a smaller size"
        )
    return tuple(values)


def estimate_memory_bytes(shape: tuple[int, int, int]) -> int:
    """Peak memory (bytes) a run of this lattice shape needs."""
    return BYTES_PER_SITE * math.prod(shape) + FIXED_OVERHEAD_BYTES


def available_memory_bytes() -> int | None:
    """Memory this process may still use: MemAvailable, capped by a cgroup limit; None if unknown."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            room = int(limit) - used
            available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available


def check_memory(shape: tuple[int, int, int], available: int | None = None) -> int:
    """Refuse (UserError) a lattice whose estimated peak memory exceeds what is available; returns the estimate."""
    needed = estimate_memory_bytes(shape)
    available = available_memory_bytes() if available is None else available
    if available is not None and needed > available:
        size = "x".join(map(str, shape))
        largest = largest_cubic_size(available)
        advice = f"the largest cubic lattice that fits is --size {largest}" if largest else "free some memory first"
        raise UserError(
            f"size {size}: needs about {needed / 2**30:.1f} GiB of memory but only "
            f"{available / 2**30:.1f} GiB is available; {advice}"
        )
    return needed


def largest_cubic_size(available: int) -> int | None:
    """Largest even side L whose L^3 lattice fits in ``available`` bytes (:func:`estimate_memory_bytes`); None if none."""
    side = int(((available - FIXED_OVERHEAD_BYTES) / BYTES_PER_SITE) ** (1 / 3)) if available > FIXED_OVERHEAD_BYTES else 0
    side += 2  # the float cube root may fall short by one; step down to the exact answer
    while side >= 4 and (side % 2 or estimate_memory_bytes((side,) * 3) > available):
        side -= 1
    return side if side >= 4 else None


def equivalent_diameter(mean_volume: float) -> float:
    """Diameter (voxels) of the sphere of volume ``mean_volume`` (voxels)."""
    return (6.0 * mean_volume / math.pi) ** (1.0 / 3.0)


def mean_section_area(ids: np.ndarray, sections_per_axis: int = SECTIONS_PER_AXIS) -> float:
    """Mean 2D grain area (pixels) over evenly spaced normal sections along x, y and z.

    Pixels divided by 4-connected equal-id regions, counted with periodic wrap (no border bias).
    """
    from grainforge.potts.kernel import count_periodic_components

    pixels = regions = 0
    for axis in range(3):
        n = ids.shape[axis]
        for index in np.unique(np.linspace(0, n - 1, min(sections_per_axis, n)).astype(int)):
            section = np.ascontiguousarray(np.take(ids, index, axis=axis))
            pixels += section.size
            regions += count_periodic_components(section)
    return pixels / regions


def _validate_backend(backend: str, device: str):
    """Return the torch device of the run (None for numba).

    UserError for an unknown backend or device, a CUDA device for numba, or CUDA where torch sees none.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise UserError(f"device {device!r}: use one of {', '.join(DEVICES)}")
    if backend == "numba":
        if device == "cuda":
            raise UserError("device cuda: the numba backend runs on the CPU; use backend torch for CUDA")
        return None
    from grainforge.torchutil import resolve_device

    return resolve_device(device)


def _validate(mcs, kT, seed, proposal, threads, checkpoint_every, target_grain_size, target_kind, log_every,
              out, resume) -> None:
    import numba

    if mcs is None and target_grain_size is None:
        raise UserError("mcs: give the number of Monte Carlo steps (or a target_grain_size to stop at)")
    if mcs is not None and mcs < 0:
        raise UserError(f"mcs {mcs}: must be >= 0")
    if not (math.isfinite(kT) and kT >= 0.0):
        raise UserError(f"kT {kT}: must be a finite number >= 0 (the paper uses 0.5)")
    if not 0 <= seed < 2**64:
        raise UserError(f"seed {seed}: must be an integer in [0, 2**64)")
    if proposal not in PROPOSALS:
        raise UserError(f"proposal {proposal!r}: use one of {', '.join(PROPOSALS)}")
    if threads is not None and not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise UserError(f"threads {threads}: use 1 to {numba.config.NUMBA_NUM_THREADS} (the cores numba may use)")
    if checkpoint_every < 0:
        raise UserError(f"checkpoint_every {checkpoint_every}: must be >= 0 (0 = no checkpoints)")
    if checkpoint_every and out is None:
        raise UserError("checkpoint_every: needs an output folder (out) to write checkpoint.npz into")
    if resume and out is None:
        raise UserError("resume: needs the out folder of the run to resume")
    if target_grain_size is not None and not (math.isfinite(target_grain_size) and target_grain_size > 0):
        raise UserError(f"target_grain_size {target_grain_size}: must be a positive number")
    if target_kind not in TARGET_KINDS:
        raise UserError(f"target_kind {target_kind!r}: use one of {', '.join(TARGET_KINDS)}")
    if log_every < 1:
        raise UserError(f"log_every {log_every}: must be >= 1")


def _options(shape, kT, seed, proposal) -> dict:
    """Return the options a checkpoint must share with a run that resumes it."""
    return {"size": list(shape), "kT": float(kT), "seed": int(seed), "proposal": proposal}


def _write_checkpoint(path: Path, ids, mcs: int, energy: int, log: list[dict], options: dict) -> None:
    write_npz(path, ids=ids, mcs=np.int64(mcs), energy=np.int64(energy), log=np.array(json.dumps(log)),
              options=np.array(json.dumps(options)))


def _read_checkpoint(path: Path, options: dict) -> tuple[np.ndarray, int, int, list[dict]]:
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint to resume; start without resume (or with checkpoint_every N)")
    try:
        with np.load(path) as data:
            saved = json.loads(str(data["options"]))
            if saved != options:
                def describe(o):
                    return f"size {'x'.join(map(str, o['size']))}, kT {o['kT']}, seed {o['seed']}, proposal {o['proposal']}"

                raise UserError(
                    f"{path}: checkpoint is for {describe(saved)} but this run asks for {describe(options)}; "
                    "resume with the checkpoint's options or use another out folder"
                )
            ids, mcs, energy = data["ids"], int(data["mcs"]), int(data["energy"])
            log = json.loads(str(data["log"]))
    except UserError:
        raise
    except Exception as err:  # a damaged or foreign file
        raise UserError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); delete it and rerun") from err
    if ids.dtype != np.uint32 or ids.shape != tuple(options["size"]) or ids.max() >= ids.size:
        raise UserError(f"{path}: checkpoint volume is damaged; delete it and start again without resume")
    return ids, mcs, energy, log


def simulate(
    size: int | str | tuple[int, int, int],
    mcs: int | None,
    kT: float = 0.5,
    seed: int = 0,
    *,
    proposal: Literal["neighbour", "distinct"] = "neighbour",
    backend: Literal["numba", "torch"] = "numba",
    device: Literal["auto", "cpu", "cuda"] = "auto",
    threads: int | None = None,
    out: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    target_grain_size: float | None = None,
    target_kind: Literal["diameter", "area"] = "diameter",
    log_every: int = 1,
    progress: bool = True,
) -> SimulationResult:
    """Grow grains by 3D Monte Carlo Potts, from one grain per site (docs/design.md §5).

    The library function behind ``grainforge simulate``: a periodic cubic lattice, 26-neighbour
    energy, Metropolis acceptance at ``kT``, the 8 sub-lattices of a 2x2x2 checkerboard updated in
    turn, counter-based random numbers (see :mod:`grainforge.potts.kernel`). The result is the
    same for any ``threads``.

    Parameters
    ----------
    size : int, str or tuple of 3 int
        Lattice side L (cubic) or (Lx, Ly, Lz) in sites, every side even and >= 4
        (:func:`parse_size`); at most 2**32 sites.
    mcs : int or None
        Monte Carlo steps to run (1 MCS = one attempt per site). None: up to
        :data:`MCS_CAP_FOR_TARGET`, for a run stopped by ``target_grain_size``.
    kT : float, optional
        Temperature in units of J, >= 0 (the paper: 0.5). ΔE > 0 is accepted with
        probability exp(-ΔE / kT), never at kT = 0.
    seed : int, optional
        Seed in [0, 2**64); fixes the volume.
    proposal : {"neighbour", "distinct"}, optional
        "neighbour": the id of a random one of the 18 first and second neighbours (the paper's
        rule). "distinct": a random distinct other id among the 26 neighbours (SPPARKS potts/neigh).
    backend : {"numba", "torch"}, optional
        The sweep: the numba kernel (CPU) or the same rule in torch (:mod:`grainforge.potts.torch_kernel`,
        docs/design.md §5.10); both give the same volume bit for bit.
    device : {"auto", "cpu", "cuda"}, optional
        torch device; "auto": CUDA when torch sees one, else the CPU. numba: "auto" or "cpu".
    threads : int, optional
        CPU threads of numba or torch (default: all).
    out : str or path-like, optional
        Run directory to write: ``volume.zarr``, ``log.csv``, ``run.json`` (and ``checkpoint.npz``).
        None: nothing is written.
    checkpoint_every : int, optional
        Write ``out/checkpoint.npz`` every N MCS (0: never).
    resume : bool, optional
        Continue from ``out/checkpoint.npz``; it must have the same size, kT, seed and proposal.
    target_grain_size : float, optional
        Stop once the mean grain size reaches this; checked at logged steps.
    target_kind : {"diameter", "area"}, optional
        What ``target_grain_size`` measures: the equivalent-sphere diameter of the mean grain
        volume (voxels) or the mean 2D section grain area (pixels, :func:`mean_section_area`).
    log_every : int, optional
        Log (and check the target) every N MCS; the last step is always logged.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    result : SimulationResult
        ``ids``: uint32 (Lx, Ly, Lz) grain ids; ``log``: rows of :data:`LOG_COLUMNS` (``mcs``,
        ``n_grains``, ``mean_grain_volume`` in voxels, ``energy`` in J = unlike 26-neighbour pairs,
        ``wall_time_s``); ``mcs_done``; ``target_reached`` (None without a target).

    Raises
    ------
    grainforge.errors.UserError
        On an invalid option, a lattice too large for the ids or the free memory, or a checkpoint
        that does not fit.

    References
    ----------
    .. [1] Anderson, M. P., Srolovitz, D. J., Grest, G. S. and Sahni, P. S. (1984). Computer
           simulation of grain growth - I. Kinetics. Acta Metallurgica 32, 783-791.

    Examples
    --------
    >>> from grainforge.potts import simulate
    >>> result = simulate(16, 20, seed=0, progress=False)
    >>> result.ids.shape, result.ids.dtype, result.mcs_done
    ((16, 16, 16), dtype('uint32'), 20)
    >>> result.log[0]["n_grains"], result.log[-1]["n_grains"]
    (4096, 64)

    Stopping at a mean grain diameter of 3 voxels instead:

    >>> result = simulate(16, None, seed=0, target_grain_size=3.0, progress=False)
    >>> result.mcs_done, result.target_reached
    (4, True)
    """
    import time

    import numba

    from grainforge.potts import kernel
    from grainforge.progress import progress_bar
    from grainforge.runinfo import RunRecord

    shape = parse_size(size)
    _validate(mcs, kT, seed, proposal, threads, checkpoint_every, target_grain_size, target_kind, log_every,
              out, resume)
    torch_device = _validate_backend(backend, device)
    check_memory(shape)
    if torch_device is not None:
        from grainforge.potts import torch_kernel

        torch_kernel.check_memory(shape, torch_device)
    out = ensure_writable_dir(out) if out is not None else None
    n_sites = math.prod(shape)
    options = _options(shape, kT, seed, proposal)
    record = RunRecord(out, "simulate", dict(options, mcs=mcs, threads=threads, checkpoint_every=checkpoint_every,
                                             target_grain_size=target_grain_size, target_kind=target_kind,
                                             log_every=log_every, backend=backend, device=device), seed) if out is not None else None

    if resume:
        ids, mcs_done, energy, log = _read_checkpoint(out / "checkpoint.npz", options)
    else:
        ids = np.arange(n_sites, dtype=np.uint32).reshape(shape)
        mcs_done, energy, log = 0, None, []
    marker = np.zeros(n_sites, dtype=np.uint8)
    thresholds = kernel.acceptance_thresholds(kT)
    distinct = proposal == "distinct"
    mcs_limit = MCS_CAP_FOR_TARGET if mcs is None else mcs
    wall_offset = log[-1]["wall_time_s"] if log else 0.0

    # starting numba's OpenMP pool (its first call) also sets torch's threads in this thread, and torch does not
    # re-read its own setting: keep torch's count to put it back (docs/design.md §9.6)
    torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    previous_threads = numba.get_num_threads()
    numba.set_num_threads(threads or numba.config.NUMBA_NUM_THREADS)
    lattice = None  # numba sweeps ``ids`` in place; torch keeps its own copy on the device
    if torch_device is not None:
        import torch

        from grainforge.potts.torch_kernel import TorchLattice

        torch_threads = torch_threads or torch.get_num_threads()
        torch.set_num_threads(threads or torch_threads)
        lattice = TorchLattice(ids, kT, torch_device, distinct)
    t0 = time.perf_counter()

    def current_ids() -> np.ndarray:
        return ids if lattice is None else lattice.to_numpy()

    def measure(append: bool = True) -> bool:
        """Log the current state (when ``append``); True when the target grain size is reached."""
        n_grains = kernel.count_ids(ids, marker) if lattice is None else lattice.count_ids()
        mean_volume = n_sites / n_grains
        if append:
            log.append({"mcs": mcs_done, "n_grains": n_grains, "mean_grain_volume": mean_volume, "energy": int(energy),
                        "wall_time_s": round(wall_offset + time.perf_counter() - t0, 4)})
        if target_grain_size is None:
            return False
        size_now = equivalent_diameter(mean_volume) if target_kind == "diameter" else mean_section_area(current_ids())
        return size_now >= target_grain_size

    try:
        if energy is None:
            energy = int(kernel.total_energy(ids, kernel.FORWARD_OFFSETS))
        # the stop rule is checked at logged steps only, so a resumed run stops where a straight run would
        reached = measure(append=not resume) if not resume or log[-1]["mcs"] == mcs_done else False
        with progress_bar(disable=not progress) as bar:
            task = bar.add_task("simulate", total=None if mcs is None else mcs_limit, completed=mcs_done)
            while mcs_done < mcs_limit and not reached:
                if lattice is None:
                    energy_change, _ = kernel.sweep(ids, seed, mcs_done, thresholds, distinct)
                else:
                    energy_change, _ = lattice.sweep(seed, mcs_done)  # a device scalar: no host sync per step
                energy += energy_change
                mcs_done += 1
                bar.update(task, advance=1)
                if mcs_done % log_every == 0 or mcs_done == mcs_limit:
                    reached = measure()
                if out is not None and checkpoint_every and mcs_done % checkpoint_every == 0:
                    _write_checkpoint(out / "checkpoint.npz", current_ids(), mcs_done, int(energy), log, options)
        if log[-1]["mcs"] != mcs_done:
            reached = measure()
        ids = current_ids()
        energy = int(energy)
    finally:
        numba.set_num_threads(previous_threads)
        if torch_threads is not None:
            sys.modules["torch"].set_num_threads(torch_threads)

    result = SimulationResult(ids=ids, log=log, mcs_done=mcs_done,
                              target_reached=None if target_grain_size is None else bool(reached))
    if out is not None:
        if checkpoint_every and mcs_done % checkpoint_every:  # the final state, unless just written
            _write_checkpoint(out / "checkpoint.npz", ids, mcs_done, energy, log, options)
        write_volume(out, ids, periodic=True, metadata={"mcs": mcs_done, "simulation": options,
                                                        "versions": record.data["versions"]})
        write_csv(out / "log.csv", log, LOG_COLUMNS)
        record.data["timings_s"]["simulate"] = time.perf_counter() - t0
        record.write(mcs_done=mcs_done, n_grains=log[-1]["n_grains"], target_reached=result.target_reached,
                     resumed=bool(resume))
    return result
