"""Storage of 3D grain-id volumes: one chunked zarr store per run, read slab by slab (docs/design.md §5.8).

A run folder holds ``volume.zarr``: a zarr array ``ids`` of uint32 grain ids, shape (Lx, Ly, Lz),
axes x, y, z, in cubic chunks of :data:`CHUNK_SIDE` voxels (zstd-compressed by zarr), with the
attributes

- ``format`` (``"grainforge-volume"``), ``version`` (1), ``axes`` (``"xyz"``);
- ``voxel_size_um``: the voxel pitch along x, y, z in micrometres, or null when the volume has no
  physical size (a Potts lattice: lengths are then in voxels);
- ``periodic``: whether opposite faces touch (a Potts lattice is periodic), which decides whether
  grains can touch the border and how neighbours are counted;
- the writer's metadata, e.g. ``mcs``, ``simulation`` (size, kT, seed, proposal) and ``versions``.

Runs written before zarr hold ``volume.npz`` (key ``ids``, and ``mcs`` when ``simulate`` wrote it);
they still open, read whole into memory. A volume that does not fit in memory is only ever read
one slab of planes at a time (:meth:`Volume.slabs`, :meth:`Volume.planes`), so ``slice``,
``export`` and ``stats --volume`` hold about one chunk-thick slab at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grainforge.data.io import atomic_dir
from grainforge.errors import UserError

VOLUME_NAME = "volume.zarr"
LEGACY_NAME = "volume.npz"
ARRAY_NAME = "ids"
FORMAT = "grainforge-volume"
VERSION = 1
CHUNK_SIDE = 64  # voxels per chunk side: 1 MiB of uint32 per chunk
BLOCK_PLANES = 8  # planes processed at once by readers that make temporaries of their input (Volume.blocks)
AXES = "xyz"


@dataclass
class Volume:
    """An open grain-id volume.

    ``ids`` is the uint32 (Lx, Ly, Lz) array: a zarr array read chunk by chunk, or a numpy array (a
    legacy ``volume.npz``, or an array passed in memory). ``attrs`` are the stored attributes
    (see the module docstring); ``path`` is the store or file, None for an in-memory array.
    """

    ids: object
    attrs: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Lx, Ly, Lz) in voxels."""
        return tuple(int(n) for n in self.ids.shape)

    @property
    def voxel_size_um(self) -> tuple[float, float, float] | None:
        """Voxel pitch along x, y, z in micrometres, or None when the volume has no physical size."""
        size = self.attrs.get("voxel_size_um")
        return None if size is None else tuple(float(v) for v in size)

    @property
    def periodic(self) -> bool:
        """True when opposite faces of the volume touch (a Potts lattice)."""
        return bool(self.attrs.get("periodic", False))

    @property
    def slab_thickness(self) -> int:
        """Planes read at once by :meth:`slabs`: the chunk side (the whole volume's largest side in memory)."""
        chunks = getattr(self.ids, "chunks", None)
        return int(chunks[0]) if chunks else CHUNK_SIDE

    def slab(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Planes ``start:stop`` normal to ``axis`` (0 = x, 1 = y, 2 = z) as a uint32 numpy array.

        A zarr slab is filled one row of chunks at a time: zarr decodes all the chunks of one
        request at once, so a whole-slab request would hold the decoded chunks beside the slab.
        """
        index = [slice(None)] * 3
        index[axis] = slice(start, stop)
        chunks = getattr(self.ids, "chunks", None)
        if not chunks:
            return np.asarray(self.ids[tuple(index)], dtype=np.uint32)
        shape = list(self.shape)
        shape[axis] = stop - start
        out = np.empty(shape, dtype=np.uint32)
        across = (axis + 1) % 3
        for first in range(0, shape[across], chunks[across]):
            index[across] = part = slice(first, first + chunks[across])
            target = [slice(None)] * 3
            target[across] = part
            out[tuple(target)] = self.ids[tuple(index)]
        return out

    def slabs(self, axis: int, thickness: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first plane, slab) covering the volume along ``axis`` in slabs of ``thickness`` planes."""
        thickness = thickness or self.slab_thickness
        n = self.shape[axis]
        for start in range(0, n, thickness):
            yield start, self.slab(axis, start, min(start + thickness, n))

    def blocks(self, axis: int, planes: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first plane, block of at most ``planes`` planes, default :data:`BLOCK_PLANES`) along ``axis``.

        Blocks are copies cut from one slab read by :meth:`slabs`, so callers that make temporaries
        of their input (sorting, int64 copies) make them of a block, not of a slab, and a block the
        caller still holds does not keep its slab alive while the next slab is read.
        """
        planes = planes or BLOCK_PLANES
        for start, slab in self.slabs(axis):
            for first in range(0, slab.shape[axis], planes):
                index = [slice(None)] * 3
                index[axis] = slice(first, first + planes)
                yield start + first, slab[tuple(index)].copy()
            del slab  # before the next slab is read

    def planes(self, axis: int, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, 2D plane normal to ``axis``) for ``indices`` in increasing order.

        Planes are read one slab at a time (the run of wanted planes within one chunk-thick block),
        so memory holds one slab and one plane, never the volume.
        """
        thickness = self.slab_thickness
        indices = sorted(set(int(i) for i in indices))
        groups: dict[int, list[int]] = {}
        for i in indices:
            groups.setdefault(i // thickness, []).append(i)
        for block in groups.values():
            slab = self.slab(axis, block[0], block[-1] + 1)
            for i in block:
                yield i, np.take(slab, i - block[0], axis=axis)
            del slab


def as_volume(source: Volume | np.ndarray) -> Volume:
    """Wrap a 3D array held in memory as a :class:`Volume` (an open volume is returned as is)."""
    if isinstance(source, Volume):
        return source
    array = np.asarray(source)
    if array.ndim != 3:
        raise UserError(f"volume: shape {array.shape}, expected a 3D grain-id volume (Lx, Ly, Lz)")
    return Volume(ids=array)


def volume_path(source: str | os.PathLike) -> Path:
    """Find the stored volume of a run folder (``volume.zarr``, else a legacy ``volume.npz``) or check a store/file path."""
    path = Path(source)
    if path.is_dir() and path.suffix != ".zarr":
        for name in (VOLUME_NAME, LEGACY_NAME):
            if (path / name).exists():
                return path / name
        raise UserError(f"{path}: holds no {VOLUME_NAME} (or {LEGACY_NAME}); pass a run folder written by "
                        "'grainforge simulate'")
    if not path.exists():
        raise UserError(f"{path}: no such file; pass a run folder written by 'grainforge simulate' or its {VOLUME_NAME}")
    return path


def open_volume(source: str | os.PathLike) -> Volume:
    """Open the grain-id volume of a run folder, a ``volume.zarr`` store or a legacy ``volume.npz``.

    A zarr store is opened lazily (nothing is read until a slab is asked for); a legacy ``.npz`` is
    read whole. UserError for a missing, damaged or foreign volume.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from grainforge.volume import open_volume, write_volume
    >>> tmp = tempfile.TemporaryDirectory()
    >>> ids = np.arange(6 * 4 * 2, dtype=np.uint32).reshape(6, 4, 2) // 8
    >>> _ = write_volume(tmp.name, ids, voxel_size_um=0.25, metadata={"mcs": 10})
    >>> volume = open_volume(tmp.name)
    >>> volume.shape, volume.voxel_size_um, volume.periodic, volume.attrs["mcs"]
    ((6, 4, 2), (0.25, 0.25, 0.25), False, 10)
    >>> [(index, plane.shape) for index, plane in volume.planes(2, [1])]
    [(1, (6, 4))]
    >>> tmp.cleanup()
    """
    path = volume_path(source)
    if path.suffix == ".npz":
        return _open_npz(path)
    import zarr

    try:
        ids = zarr.open_array(store=str(path), mode="r", path=ARRAY_NAME)
        attrs = dict(ids.attrs.asdict())
    except Exception as err:  # a damaged or foreign store
        raise UserError(f"{path}: unreadable volume ({type(err).__name__}: {err}); rerun 'grainforge simulate'") from err
    if attrs.get("format") != FORMAT or ids.ndim != 3 or ids.dtype != np.uint32:
        raise UserError(f"{path}: not a grainforge volume (format {attrs.get('format')!r}, shape {ids.shape}, "
                        f"dtype {ids.dtype}); pass a run folder written by 'grainforge simulate'")
    return Volume(ids=ids, attrs=attrs, path=path)


def _open_npz(path: Path) -> Volume:
    try:
        with np.load(path) as data:
            ids = data[ARRAY_NAME]
            attrs = {"mcs": int(data["mcs"]), "periodic": True} if "mcs" in data else {}
    except KeyError:
        raise UserError(f"{path}: has no 'ids' array; pass a volume.npz written by 'grainforge simulate'") from None
    except Exception as err:  # a damaged or foreign file
        raise UserError(f"{path}: unreadable volume ({type(err).__name__}: {err}); rerun 'grainforge simulate'") from err
    if ids.ndim != 3:
        raise UserError(f"{path}: 'ids' has shape {ids.shape}, expected a 3D volume")
    return Volume(ids=ids.astype(np.uint32, copy=False), attrs=attrs, path=path)


def read_volume(source: str | os.PathLike) -> np.ndarray:
    """Read the whole uint32 (Lx, Ly, Lz) grain-id volume of a run folder, store or ``volume.npz`` into memory."""
    volume = open_volume(source)
    return volume.slab(0, 0, volume.shape[0])


def _attributes(voxel_size_um, periodic: bool, metadata: dict | None) -> dict:
    if voxel_size_um is not None:
        voxel_size_um = [float(v) for v in np.broadcast_to(np.asarray(voxel_size_um, dtype=float), 3)]
        if not all(np.isfinite(v) and v > 0 for v in voxel_size_um):
            raise UserError(f"voxel_size_um {voxel_size_um}: must be positive lengths in micrometres")
    return {**(metadata or {}), "format": FORMAT, "version": VERSION, "axes": AXES,
            "voxel_size_um": voxel_size_um, "periodic": bool(periodic)}


@contextlib.contextmanager
def create_volume(run_dir: str | os.PathLike, shape: tuple[int, int, int], *, voxel_size_um=None,
                  periodic: bool = False, metadata: dict | None = None) -> Iterator[object]:
    """Create ``run_dir/volume.zarr`` and yield its empty zarr array to fill slab by slab.

    Assign slabs (``array[x0:x1] = slab``); the store appears under its name only when the block
    ends without an error (written beside it, then renamed), and replaces a legacy ``volume.npz``.

    Parameters
    ----------
    run_dir : str or path-like
        The run folder.
    shape : tuple of 3 int
        (Lx, Ly, Lz) in voxels.
    voxel_size_um : float or 3 floats, optional
        Voxel pitch in micrometres (one for all axes, or x, y, z); None: no physical size.
    periodic : bool, optional
        Whether opposite faces touch (True for a Potts lattice).
    metadata : dict, optional
        JSON-serialisable attributes to store beside the format's own.
    """
    import zarr

    shape = tuple(int(n) for n in shape)
    attrs = _attributes(voxel_size_um, periodic, metadata)
    target = Path(run_dir) / VOLUME_NAME
    with atomic_dir(target) as tmp:
        group = zarr.open_group(store=str(tmp), mode="w")
        array = group.create_array(ARRAY_NAME, shape=shape, chunks=tuple(min(CHUNK_SIDE, n) for n in shape),
                                   dtype="uint32", fill_value=0, attributes=attrs)
        yield array
    (Path(run_dir) / LEGACY_NAME).unlink(missing_ok=True)  # one volume per run: the old format would go stale


def write_volume(run_dir: str | os.PathLike, ids: np.ndarray, *, voxel_size_um=None, periodic: bool = False,
                 metadata: dict | None = None) -> Path:
    """Write a uint32 (Lx, Ly, Lz) grain-id array to ``run_dir/volume.zarr`` (see :func:`create_volume`); returns its path."""
    ids = np.asarray(ids)
    if ids.ndim != 3:
        raise UserError(f"volume: shape {ids.shape}, expected a 3D grain-id volume (Lx, Ly, Lz)")
    with create_volume(run_dir, ids.shape, voxel_size_um=voxel_size_um, periodic=periodic, metadata=metadata) as array:
        for start in range(0, ids.shape[0], CHUNK_SIDE):
            array[start:start + CHUNK_SIDE] = ids[start:start + CHUNK_SIDE].astype(np.uint32, copy=False)
    return Path(run_dir) / VOLUME_NAME


def grain_voxel_counts(volume: Volume | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct grain ids, voxels per grain), counted slab by slab.

    Grain number g (1..n) of the exports and of ``stats --volume`` is the g-th of these ids.
    """
    volume = as_volume(volume)
    ids, counts = [], []
    for _, block in volume.blocks(0):
        found, found_counts = np.unique(block, return_counts=True)
        ids.append(found)
        counts.append(found_counts)
    ids, counts = np.concatenate(ids), np.concatenate(counts).astype(np.int64)
    unique, inverse = np.unique(ids, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=unique.size).astype(np.int64)


def grain_numbers(slab: np.ndarray, grain_ids: np.ndarray) -> np.ndarray:
    """Grain numbers 1..n (int32) of a slab of ids, ``grain_ids`` being the sorted distinct ids of the volume."""
    return (np.searchsorted(grain_ids, slab) + 1).astype(np.int32)
