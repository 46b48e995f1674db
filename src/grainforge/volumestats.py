"""Per-grain statistics of a 3D grain-id volume: volume, equivalent sphere diameter, neighbours (docs/design.md §5.9).

A grain is all voxels of one id (numbered 1..n in the order of the ids, as the exports number
them). Its volume is its voxel count (times the voxel volume in µm³ when the volume has a voxel
size); its equivalent diameter is that of the sphere of the same volume, (6 V / π)^(1/3). Two
grains are neighbours when they share at least one voxel face (6-connectivity, as DREAM.3D's
"Find Feature Neighbors" counts them): grains that meet only along an edge or at a corner are not.
In a periodic volume (a Potts lattice) faces wrap around and no grain touches the border; otherwise
grains with a voxel on a face of the box touch the border, and the distributions use the other
(interior) grains only, as the 2D statistics do (§3.4).

The volume is read one slab at a time and measured a few planes at a time, so statistics of a
volume larger than memory need memory for one slab and the per-grain tables only.
"""

from __future__ import annotations

import os

import numpy as np

from grainforge.data.io import ensure_writable_dir, save_figure, write_csv, write_json
from grainforge.grainstats import lognormal_fit, lognormal_pdf
from grainforge.potts.driver import equivalent_diameter
from grainforge.progress import progress_bar
from grainforge.runinfo import RunRecord
from grainforge.volume import Volume, as_volume, grain_numbers, grain_voxel_counts, open_volume

CONNECTIVITY = 6  # neighbours share a voxel face
DIAMETER_BINS = np.linspace(0.0, 3.0, 31)  # bins of equivalent diameter / mean diameter


def _face_pairs(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Distinct unordered pairs (encoded lo * (n + 1) + hi, int64) of different grain numbers facing each other in a, b."""
    differ = a != b
    a, b = a[differ].astype(np.int64), b[differ].astype(np.int64)
    return np.unique(np.minimum(a, b) * (n + 1) + np.maximum(a, b))


def grain_table(volume: Volume | np.ndarray, progress: bool = False) -> list[dict]:
    """One row per grain of a grain-id volume (array (Lx, Ly, Lz) or an opened :class:`~grainforge.volume.Volume`).

    Columns: ``grain`` (1..n), ``potts_id``, ``volume_voxels``, ``equivalent_diameter_voxels``,
    ``n_neighbours`` (face-sharing grains, 6-connectivity), ``touches_border`` (always False in a
    periodic volume), and with a voxel size ``volume_um3`` and ``equivalent_diameter_um``.
    """
    volume = as_volume(volume)
    grain_ids, counts = grain_voxel_counts(volume)
    n = grain_ids.size
    pairs, border = [], []
    first = previous = None
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("grain neighbours", total=volume.shape[0])
        for _, block in volume.blocks(0):
            g = grain_numbers(block, grain_ids)
            pairs += [_face_pairs(g[1:], g[:-1], n), _face_pairs(g[:, 1:], g[:, :-1], n), _face_pairs(g[:, :, 1:], g[:, :, :-1], n)]
            if previous is not None:
                pairs.append(_face_pairs(previous, g[0], n))
            if volume.periodic:
                pairs += [_face_pairs(g[:, 0], g[:, -1], n), _face_pairs(g[:, :, 0], g[:, :, -1], n)]
            else:
                border += [g[:, 0], g[:, -1], g[:, :, 0], g[:, :, -1]]
                border = [np.unique(np.concatenate([b.ravel() for b in border]))]
            pairs = [np.unique(np.concatenate(pairs))]  # keep one short list of distinct pairs, not one per block
            first = g[0].copy() if first is None else first
            previous = g[-1].copy()
            bar.update(task, advance=block.shape[0])
    if volume.periodic:
        pairs.append(_face_pairs(previous, first, n))
    else:
        border.append(np.unique(np.concatenate([first.ravel(), previous.ravel()])))
    pairs = np.unique(np.concatenate(pairs))
    neighbours = np.bincount(np.concatenate([pairs // (n + 1), pairs % (n + 1)]), minlength=n + 1)[1:]
    on_border = np.zeros(n + 1, dtype=bool)
    if border:
        on_border[np.concatenate(border)] = True
    voxel = volume.voxel_size_um
    rows = []
    for k in range(n):
        row = {"grain": k + 1, "potts_id": int(grain_ids[k]), "volume_voxels": int(counts[k]),
               "equivalent_diameter_voxels": float(equivalent_diameter(counts[k])),
               "n_neighbours": int(neighbours[k]), "touches_border": bool(on_border[k + 1])}
        if voxel is not None:
            row["volume_um3"] = float(counts[k] * np.prod(voxel))
            row["equivalent_diameter_um"] = float(equivalent_diameter(row["volume_um3"]))
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    """Summarise the interior grains of :func:`grain_table` rows.

    Counts, mean/median volume and equivalent diameter, mean neighbours and the log-normal fit
    (mu, sigma of ln(diameter / mean diameter)).
    """
    inner = [r for r in rows if not r["touches_border"]]
    summary = {"n_grains": len(rows), "n_interior_grains": len(inner), "connectivity": CONNECTIVITY}
    if not inner:
        return summary
    volumes = np.array([r["volume_voxels"] for r in inner], dtype=np.float64)
    diameters = np.array([r["equivalent_diameter_voxels"] for r in inner])
    mu, sigma = lognormal_fit(diameters / diameters.mean())
    summary.update(mean_volume_voxels=float(volumes.mean()), median_volume_voxels=float(np.median(volumes)),
                   mean_equivalent_diameter_voxels=float(diameters.mean()),
                   mean_neighbours=float(np.mean([r["n_neighbours"] for r in inner])),
                   lognormal_mu=mu, lognormal_sigma=sigma)
    if "equivalent_diameter_um" in inner[0]:
        summary["mean_equivalent_diameter_um"] = float(np.mean([r["equivalent_diameter_um"] for r in inner]))
        summary["mean_volume_um3"] = float(np.mean([r["volume_um3"] for r in inner]))
    return summary


def plot_distributions(rows: list[dict], summary: dict, path: str | os.PathLike) -> None:
    """PNG: histogram of equivalent diameter / mean with its log-normal fit, and of the number of neighbours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inner = [r for r in rows if not r["touches_border"]]
    diameters = np.array([r["equivalent_diameter_voxels"] for r in inner])
    neighbours = np.array([r["n_neighbours"] for r in inner], dtype=np.int64)
    fig, (ax_d, ax_n) = plt.subplots(1, 2, figsize=(11, 4))
    ax_d.set(xlabel="equivalent sphere diameter / mean", ylabel="probability density", title="Grain size (3D)")
    ax_n.set(xlabel=f"number of neighbours (face-sharing, {CONNECTIVITY}-connectivity)", ylabel="fraction of grains",
             title="Neighbours per grain")
    if diameters.size:  # else: empty axes (every grain touches the border)
        ax_d.hist(diameters / diameters.mean(), bins=DIAMETER_BINS, density=True, histtype="step",
                  label=f"interior grains (n={diameters.size})")
        if summary["lognormal_sigma"] > 0:  # no fit to grains all of one size
            fine = np.linspace(0.01, DIAMETER_BINS[-1], 300)
            ax_d.plot(fine, lognormal_pdf(fine, summary["lognormal_mu"], summary["lognormal_sigma"]), "--",
                      label=f"log-normal σ={summary['lognormal_sigma']:.2f}")
        ax_n.bar(np.arange(neighbours.max() + 1), np.bincount(neighbours) / neighbours.size,
                 label=f"mean {neighbours.mean():.2f}")
        ax_d.legend(fontsize=8)
        ax_n.legend(fontsize=8)
    save_figure(fig, path)


def stats_volume(run_dir: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> dict:
    """Measure every grain of a run's volume: the ``grainforge stats --volume`` job (docs/design.md §5.9).

    Parameters
    ----------
    run_dir : str or path-like
        Simulation run folder (``volume.zarr`` or a legacy ``volume.npz``), or the store itself.
        Read one slab at a time.
    out : str or path-like
        Output folder: ``volume_grains.csv`` (one row per grain, :func:`grain_table`),
        ``volume_summary.json`` (:func:`summarize`, plus shape, periodic, voxel size),
        ``volume_distributions.png`` (equivalent diameter / mean with a log-normal fit; number of
        face-sharing neighbours) and ``run.json``.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    summary : dict
        ``n_grains``, ``n_interior_grains``, ``connectivity`` (6), ``mean_volume_voxels``,
        ``median_volume_voxels``, ``mean_equivalent_diameter_voxels``, ``mean_neighbours``,
        ``lognormal_mu``, ``lognormal_sigma`` (and ``mean_volume_um3``,
        ``mean_equivalent_diameter_um`` with a voxel size), ``shape``, ``periodic``, ``voxel_size_um``.

    Examples
    --------
    A periodic 8^3 volume of 2^3-voxel cubes: every grain has 6 face neighbours.

    >>> import tempfile
    >>> import numpy as np
    >>> from grainforge.volume import write_volume
    >>> from grainforge.volumestats import stats_volume
    >>> tmp = tempfile.TemporaryDirectory()
    >>> cube = np.arange(8) // 2
    >>> ids = cube[:, None, None] * 16 + cube[None, :, None] * 4 + cube[None, None, :]
    >>> _ = write_volume(tmp.name, ids, periodic=True)
    >>> summary = stats_volume(tmp.name, tmp.name + "/stats", progress=False)
    >>> summary["n_grains"], summary["mean_volume_voxels"], summary["mean_neighbours"]
    (64, 8.0, 6.0)
    >>> tmp.cleanup()
    """
    volume = open_volume(run_dir)
    out = ensure_writable_dir(out)
    record = RunRecord(out, command="stats --volume", seed=None, config={"volume": str(volume.path)})
    with record.phase("grains"):
        rows = grain_table(volume, progress=progress)
    summary = {**summarize(rows), "shape": list(volume.shape), "periodic": volume.periodic,
               "voxel_size_um": volume.voxel_size_um}
    columns = ("grain", "potts_id", "volume_voxels", "equivalent_diameter_voxels", "n_neighbours", "touches_border")
    write_csv(out / "volume_grains.csv", rows, columns + (("volume_um3", "equivalent_diameter_um") if volume.voxel_size_um else ()))
    write_json(out / "volume_summary.json", summary)
    plot_distributions(rows, summary, out / "volume_distributions.png")
    record.write(summary=summary)
    return summary
