"""2D sections of a 3D grain-id volume, their boundary labels and id maps (docs/design.md §6).

A section is one plane of the volume normal to x, y or z. Its 2D grains are the 4-connected
components of equal id (a 3D grain can be cut into several pieces), relabelled 1..n. Sections
can be zoomed to match the mean grain area of real images: the id map is resampled by a
Gaussian-weighted vote (each output pixel takes the id with the largest summed Gaussian weight of
the source pixels around it = the argmax of per-grain Gaussian-smoothed indicators), which gives
smooth boundaries instead of nearest-neighbour staircases. The 1-pixel boundary is drawn last
with :func:`grainforge.grains.boundary_from_ids`.

Output folder of :func:`slice_run`: ``labels/<stem>.png`` (uint8, 255 = boundary, 0 = grain),
``ids/<stem>.tif`` (4-connected relabelled ids, uint16 when they fit, else uint32),
``manifest.csv`` (one row per image) and ``run.json``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numba
import numpy as np
from skimage.measure import label as _cc_label

from grainforge.data.io import ensure_writable_dir, write_boundary_png, write_csv, write_tiff
from grainforge.data.split import grid_tiles
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids
from grainforge.grainstats import grain_areas, interior_areas, label_grains_min_area
from grainforge.labelwidth import draw_at_width
from grainforge.progress import progress_bar
from grainforge.runinfo import RunRecord
from grainforge.volume import Volume, as_volume, open_volume

AXES = "xyz"
MANIFEST_COLUMNS = ("stem", "axis", "index", "tile_row", "tile_col", "height", "width", "n_grains", "mean_area_px")
SMOOTHING_PX = 0.8  # Gaussian sigma of the zoom vote, in source (unzoomed) pixels


def iter_sections(volume: Volume | np.ndarray, axes: str = AXES, stride: int = 1) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, 2D id map) for every ``stride``-th plane normal to each axis in ``axes``.

    Names are the axis letter and the zero-padded plane index, e.g. ``x0012``. A stored volume
    (:func:`grainforge.volume.open_volume`) is read one chunk-thick slab at a time, so only that
    slab is in memory, not the volume.
    """
    volume = as_volume(volume)
    for axis in axes:
        dim = AXES.index(axis)
        for index, plane in volume.planes(dim, range(0, volume.shape[dim], stride)):
            yield f"{axis}{index:04d}", plane


def relabel(ids2d: np.ndarray) -> np.ndarray:
    """4-connected components of equal id, numbered 1..n (int32, H x W, no zeros)."""
    return _cc_label(np.asarray(ids2d, dtype=np.int64) + 1, connectivity=1, background=0).astype(np.int32)


def zoom_ids(ids2d: np.ndarray, zoom: float, smoothing: float = SMOOTHING_PX) -> np.ndarray:
    """Resample an id map (H, W) by ``zoom`` to (round(H*zoom), round(W*zoom)) with smooth boundaries.

    Each output pixel takes the id whose source pixels carry the largest summed Gaussian weight
    (sigma = ``smoothing`` source pixels, widened to 0.5/zoom when shrinking) around its centre.
    Ids are kept (not relabelled); ties go to the first id met in raster order.
    """
    ids2d = np.asarray(ids2d)
    if zoom <= 0:
        raise UserError(f"zoom {zoom}: must be > 0")
    out_shape = (max(1, round(ids2d.shape[0] * zoom)), max(1, round(ids2d.shape[1] * zoom)))
    sigma = max(smoothing, 0.5 / zoom)
    return _vote_zoom(np.ascontiguousarray(ids2d), out_shape[0], out_shape[1], float(zoom), float(sigma),
                     max(1, math.ceil(2.5 * sigma)))


@numba.njit(cache=True)
def _vote_zoom(ids, out_h, out_w, zoom, sigma, radius):  # pragma: no cover - compiled
    """Gaussian-weighted id vote at each output pixel centre (see :func:`zoom_ids`)."""
    h, w = ids.shape
    out = np.empty((out_h, out_w), dtype=ids.dtype)
    size = 2 * radius  # source pixels within radius of the output centre, per axis
    candidates = np.empty(size * size, dtype=ids.dtype)
    weights = np.empty(size * size, dtype=np.float64)
    col_weights = np.empty((out_w, size), dtype=np.float64)
    col_start = np.empty(out_w, dtype=np.int64)
    for c in range(out_w):
        v = (c + 0.5) / zoom - 0.5
        col_start[c] = int(np.floor(v)) - radius + 1
        for k in range(size):
            col_weights[c, k] = np.exp(-((col_start[c] + k - v) ** 2) / (2.0 * sigma * sigma))
    row_weights = np.empty(size, dtype=np.float64)
    for r in range(out_h):
        u = (r + 0.5) / zoom - 0.5
        row_start = int(np.floor(u)) - radius + 1
        for k in range(size):
            row_weights[k] = np.exp(-((row_start + k - u) ** 2) / (2.0 * sigma * sigma))
        for c in range(out_w):
            n = 0
            for di in range(size):
                i = row_start + di
                if i < 0 or i >= h:
                    continue
                wi = row_weights[di]
                for dj in range(size):
                    j = col_start[c] + dj
                    if j < 0 or j >= w:
                        continue
                    value = ids[i, j]
                    k = 0
                    while k < n and candidates[k] != value:
                        k += 1
                    if k == n:
                        candidates[n] = value
                        weights[n] = 0.0
                        n += 1
                    weights[k] += wi * col_weights[c, dj]
            best = 0
            for k in range(1, n):
                if weights[k] > weights[best]:
                    best = k
            out[r, c] = candidates[best]
    return out


def section_labels(ids2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(relabelled ids int32, bool 1-pixel boundary) of a 2D id map."""
    ids = relabel(ids2d)
    return ids, boundary_from_ids(ids)


def zoom_for_mean_area(sections: Iterable[np.ndarray], target_area_px: float) -> float:
    """Zoom that makes the mean interior grain area of the zoomed sections equal ``target_area_px``.

    The area is in pixels, boundary excluded, as ``grainforge stats`` measures it. Measured once
    on the unzoomed sections: the mean id-region area a (grows as zoom^2) and the pixels the
    1-pixel boundary takes from it, d = a - (mean label area) (a perimeter: grows as zoom).
    Solves a z^2 - d z = target for z > 0.
    """
    region_areas, label_areas = [], []
    for ids2d in sections:
        ids, boundary = section_labels(ids2d)
        region_areas.append(interior_areas(ids))
        label_areas.append(interior_areas(label_grains_min_area(boundary)))
    regions, labels = np.concatenate(region_areas), np.concatenate(label_areas)
    if regions.size == 0 or labels.size == 0:
        raise UserError("match_mean_area: no grain lies inside a section (all touch the border); give a zoom instead")
    a = float(regions.mean())
    d = max(a - float(labels.mean()), 0.0)
    return (d + math.sqrt(d * d + 4.0 * a * target_area_px)) / (2.0 * a)


def slice_run(run_dir: str | os.PathLike, out: str | os.PathLike, axes: str = AXES, stride: int = 1,
              zoom: float | None = None, match_mean_area: float | None = None, crop: int | None = None,
              boundary_width: float | None = None, progress: bool = True) -> list[dict]:
    """Cut a run's volume into 2D sections and write their boundary labels (docs/design.md §6).

    The library function behind ``grainforge slice``. In each section the 4-connected regions of
    equal id are the 2D grains; the boundary is drawn with
    :func:`grainforge.grains.boundary_from_ids` after any zoom, so zoomed boundaries are smooth
    and still one pixel wide.

    Parameters
    ----------
    run_dir : str or path-like
        Simulation run folder holding ``volume.zarr`` (from :func:`grainforge.potts.simulate`) or
        a legacy ``volume.npz``, or that store or file itself. A zarr volume is read one
        chunk-thick slab at a time (twice with ``match_mean_area``), never whole.
    out : str or path-like
        Output folder: ``labels/<stem>.png`` (uint8, 255 = boundary, 0 = grain),
        ``ids/<stem>.tif`` (relabelled 2D grain ids, uint16 when they fit, else uint32),
        ``manifest.csv`` (one row per image) and ``run.json``.
    axes : str, optional
        Section normals: one or more distinct letters of "xyz".
    stride : int, optional
        Take every ``stride``-th plane along each axis.
    zoom : float, optional
        Resample the sections by this factor (> 0) with a Gaussian-weighted id vote
        (:func:`zoom_ids`).
    match_mean_area : float, optional
        Choose the zoom so that the mean interior grain area equals this many pixels (measured on
        the whole sections, before cropping; e.g. the mean area of the real labels). Exclusive
        with ``zoom``.
    crop : int, optional
        Cut each (zoomed) section into non-overlapping ``crop`` x ``crop`` pixel tiles, row-major,
        partial tiles dropped; stems get ``_rRR_cCC``.
    boundary_width : float, optional
        Draw the label lines this many pixels wide (>= 1; :func:`grainforge.labelwidth.draw_at_width`),
        to match hand-traced real labels. None keeps the 1-px boundaries.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    rows : list of dict
        The manifest rows, one per image written, with the keys of :data:`MANIFEST_COLUMNS`:
        ``stem``, ``axis``, ``index`` (plane), ``tile_row``, ``tile_col``, ``height`` and ``width``
        (pixels), ``n_grains`` and ``mean_area_px`` (mean interior grain area in pixels, NaN when
        every grain touches the border).

    Raises
    ------
    grainforge.errors.UserError
        On invalid options, a missing or unreadable volume, or a crop larger than the sections.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from grainforge.potts import simulate
    >>> from grainforge.sections import slice_run
    >>> tmp = tempfile.TemporaryDirectory()
    >>> run = Path(tmp.name) / "sim"
    >>> _ = simulate(16, 20, seed=0, out=run, progress=False)
    >>> rows = slice_run(run, Path(tmp.name) / "sections", axes="z", stride=8, progress=False)
    >>> [(row["stem"], row["height"], row["width"]) for row in rows]
    [('z0000', 16, 16), ('z0008', 16, 16)]
    >>> sorted(path.name for path in (Path(tmp.name) / "sections").iterdir())
    ['ids', 'labels', 'manifest.csv', 'run.json']

    Zoomed by 2 and cut into 16-pixel tiles:

    >>> rows = slice_run(run, Path(tmp.name) / "tiles", axes="z", stride=8, zoom=2, crop=16, progress=False)
    >>> [row["stem"] for row in rows[:4]]
    ['z0000_r00_c00', 'z0000_r00_c01', 'z0000_r01_c00', 'z0000_r01_c01']
    >>> tmp.cleanup()
    """
    _check_options(axes, stride, zoom, match_mean_area, crop)
    if boundary_width is not None and not boundary_width >= 1.0:
        raise UserError(f"boundary_width {boundary_width}: must be a line width of at least 1 px")
    volume = open_volume(run_dir)
    out = ensure_writable_dir(out)
    record = RunRecord(out, command="slice", seed=None, config={
        "run_dir": str(run_dir), "axes": axes, "stride": stride, "zoom": zoom,
        "match_mean_area": match_mean_area, "crop": crop, "boundary_width": boundary_width})
    if match_mean_area is not None:
        with record.phase("match_mean_area"):
            zoom = zoom_for_mean_area((ids for _, ids in iter_sections(volume, axes, stride)), match_mean_area)
    zoomed = [round(n * (zoom or 1.0)) for n in volume.shape]
    smallest_side = min(zoomed[d] for a in axes for d in range(3) if d != AXES.index(a))
    if crop is not None and crop > smallest_side:
        raise UserError(f"crop {crop}: larger than the sections ({smallest_side} pixels on a side after zoom); "
                        "use a smaller crop or a larger zoom")
    rows = []
    with record.phase("slice"), progress_bar(disable=not progress) as bar:
        task = bar.add_task("slicing", total=sum(len(range(0, volume.shape[AXES.index(a)], stride)) for a in axes))
        for name, ids2d in iter_sections(volume, axes, stride):
            if zoom is not None:
                ids2d = zoom_ids(relabel(ids2d), zoom)
            tiles = [ids2d] if crop is None else grid_tiles(ids2d, crop)
            for number, tile in enumerate(tiles):
                row, col = divmod(number, ids2d.shape[1] // crop) if crop else (0, 0)
                stem = name if crop is None else f"{name}_r{row:02d}_c{col:02d}"
                rows.append(_write_image(out, stem, name[0], int(name[1:]), row, col, tile, boundary_width))
            bar.update(task, advance=1)
    write_csv(out / "manifest.csv", rows, MANIFEST_COLUMNS)
    record.write(zoom_used=zoom, n_images=len(rows), volume_shape=list(volume.shape))
    return rows


def _write_image(out: Path, stem: str, axis: str, index: int, row: int, col: int, ids2d: np.ndarray,
                 boundary_width: float | None) -> dict:
    ids, boundary = section_labels(ids2d)
    if boundary_width is not None:
        boundary = draw_at_width(boundary, boundary_width)
    write_boundary_png(out / "labels" / f"{stem}.png", boundary)
    write_tiff(out / "ids" / f"{stem}.tif", ids.astype(np.uint16 if ids.max(initial=0) < 2**16 else np.uint32))
    labels = label_grains_min_area(boundary)
    areas = interior_areas(labels)
    return {
        "stem": stem, "axis": axis, "index": index, "tile_row": row, "tile_col": col,
        "height": ids.shape[0], "width": ids.shape[1], "n_grains": int(np.count_nonzero(grain_areas(labels)[1:])),
        "mean_area_px": float(areas.mean()) if areas.size else float("nan"),
    }


def _check_options(axes: str, stride: int, zoom: float | None, match_mean_area: float | None, crop: int | None) -> None:
    if not axes or set(axes) - set(AXES) or len(set(axes)) != len(axes):
        raise UserError(f"axes {axes!r}: use one or more distinct letters of 'xyz', e.g. 'xy'")
    if stride < 1:
        raise UserError(f"stride {stride}: must be >= 1")
    if zoom is not None and match_mean_area is not None:
        raise UserError("zoom and match_mean_area both given; pass only one")
    if zoom is not None and not zoom > 0:
        raise UserError(f"zoom {zoom}: must be > 0")
    if match_mean_area is not None and not match_mean_area > 0:
        raise UserError(f"match_mean_area {match_mean_area}: must be a positive area in pixels")
    if crop is not None and crop < 1:
        raise UserError(f"crop {crop}: must be a tile size of at least 1 pixel")
