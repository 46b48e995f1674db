"""Export a grain-id volume for ParaView and DREAM.3D (docs/design.md §5.9).

Two formats, both with the grains numbered 1..n in the order of their Potts ids
(:func:`grainforge.volume.grain_voxel_counts`) as cell data (one value per voxel) on an image grid
whose spacing is the voxel size (micrometres when the volume has one, else 1 = one voxel):

- ``vti``: a VTK XML ImageData file, cell array ``GrainIds`` (Int32), zlib-compressed appended
  data with one block per z plane.
- ``xdmf``: the layout DREAM.3D's "Write DREAM.3D Data File" writes: an HDF5 ``.dream3d`` file
  with ``/DataContainers/ImageDataContainer`` holding ``_SIMPL_GEOMETRY`` (DIMENSIONS, ORIGIN,
  SPACING), ``CellData/FeatureIds`` (int32, shape (Lz, Ly, Lx, 1)) and
  ``CellFeatureData/{Active, PottsIds}`` (n+1 features, feature 0 unused), and beside it an
  ``.xdmf`` file (3DCoRectMesh, ORIGIN_DXDYDZ) that points ParaView at ``FeatureIds``.

Both are written a few z planes at a time, so a volume larger than memory exports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from grainforge.data.io import atomic_path
from grainforge.errors import UserError
from grainforge.progress import progress_bar
from grainforge.volume import Volume, grain_numbers, grain_voxel_counts, open_volume

FORMATS = ("vti", "xdmf")
VTI_ARRAY = "GrainIds"
DREAM3D_CONTAINER = "/DataContainers/ImageDataContainer"
DREAM3D_FILE_VERSION = "7.0"


def _z_planes(volume: Volume, grain_ids: np.ndarray, bar, task):
    """Yield (z0, grain numbers of a block of z planes as (k, Ly, Lx) int32, x fastest) over the volume."""
    for z0, block in volume.blocks(2):
        yield z0, np.ascontiguousarray(grain_numbers(block, grain_ids).transpose(2, 1, 0))
        bar.update(task, advance=block.shape[2])


def write_vti(volume: Volume, path: Path, spacing: tuple[float, float, float], grain_ids: np.ndarray, bar, task) -> None:
    """Write the grain numbers as a VTK XML ImageData file (cell array ``GrainIds``, zlib blocks of one z plane)."""
    import zlib

    lx, ly, lz = volume.shape
    extent = f"0 {lx} 0 {ly} 0 {lz}"
    head = (
        '<?xml version="1.0"?>\n'
        '<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian" header_type="UInt64" '
        'compressor="vtkZLibDataCompressor">\n'
        f'  <ImageData WholeExtent="{extent}" Origin="0 0 0" Spacing="{" ".join(repr(float(s)) for s in spacing)}">\n'
        f'    <Piece Extent="{extent}">\n'
        f'      <CellData Scalars="{VTI_ARRAY}">\n'
        f'        <DataArray type="Int32" Name="{VTI_ARRAY}" NumberOfComponents="1" format="appended" offset="0" '
        f'RangeMin="1" RangeMax="{grain_ids.size}"/>\n'
        '      </CellData>\n    </Piece>\n  </ImageData>\n  <AppendedData encoding="raw">\n   _'
    ).encode()
    block = lx * ly * 4  # one z plane of int32
    sizes = np.zeros(3 + lz, dtype="<u8")
    sizes[:3] = lz, block, 0  # blocks, bytes per block, bytes of a partial last block (none)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(head)
        header_at = fh.tell()
        fh.write(sizes.tobytes())  # placeholder: the compressed sizes are known only after writing
        for z0, planes in _z_planes(volume, grain_ids, bar, task):
            for k, plane in enumerate(planes):
                compressed = zlib.compress(plane.astype("<i4", copy=False).tobytes(), 6)
                sizes[3 + z0 + k] = len(compressed)
                fh.write(compressed)
        fh.write(b"\n  </AppendedData>\n</VTKFile>\n")
        fh.seek(header_at)
        fh.write(sizes.tobytes())


def _ascii(text: str) -> np.bytes_:
    """Encode a fixed-length ASCII string attribute, as DREAM.3D writes them."""
    return np.bytes_(text.encode("ascii"))


def _data_array(group, name: str, object_type: str, tuple_dims, **create):
    """Create a DREAM.3D DataArray dataset (tuples x 1 component) with the attributes SIMPL writes.

    ``create`` holds h5py's ``data`` or ``shape``, ``dtype`` and storage options.
    """
    dataset = group.create_dataset(name, **create)
    dataset.attrs["ComponentDimensions"] = np.array([1], dtype=np.uint64)
    dataset.attrs["DataArrayVersion"] = np.int32(2)
    dataset.attrs["ObjectType"] = _ascii(object_type)
    dataset.attrs["TupleDimensions"] = np.array(tuple_dims, dtype=np.uint64)
    dataset.attrs["Tuple Axis Dimensions"] = _ascii(",".join(f"{a}={n}" for a, n in zip("xyz", tuple_dims)))
    return dataset


def write_dream3d(volume: Volume, h5_path: Path, xdmf_path: Path, spacing: tuple[float, float, float],
                  grain_ids: np.ndarray, bar, task) -> None:
    """Write the grain numbers as a DREAM.3D ``.dream3d`` (HDF5) file and the ``.xdmf`` that ParaView opens."""
    import h5py

    from grainforge import __version__

    lx, ly, lz = volume.shape
    n = grain_ids.size
    with atomic_path(h5_path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["FileVersion"] = _ascii(DREAM3D_FILE_VERSION)
        f.attrs["DREAM3D Version"] = _ascii(f"grainforge {__version__}")
        container = f.create_group(DREAM3D_CONTAINER)
        geometry = container.create_group("_SIMPL_GEOMETRY")
        for key, value in (("GeometryName", _ascii("ImageGeometry")), ("GeometryTypeName", _ascii("ImageGeometry")),
                           ("GeometryType", np.uint32(0)), ("SpatialDimensionality", np.uint32(3)),
                           ("UnitDimensionality", np.uint32(3))):
            geometry.attrs[key] = value
        geometry.create_dataset("DIMENSIONS", data=np.array([lx, ly, lz], dtype=np.int64))
        geometry.create_dataset("ORIGIN", data=np.zeros(3, dtype=np.float32))
        geometry.create_dataset("SPACING", data=np.array(spacing, dtype=np.float32))
        cells = container.create_group("CellData")
        cells.attrs["AttributeMatrixType"] = np.uint32(3)  # Cell
        cells.attrs["TupleDimensions"] = np.array([lx, ly, lz], dtype=np.uint64)
        feature_ids = _data_array(cells, "FeatureIds", "DataArray<int32_t>", (lx, ly, lz), shape=(lz, ly, lx, 1),
                                  dtype=np.int32, chunks=(1, ly, lx, 1), compression="gzip", compression_opts=4)
        for z0, planes in _z_planes(volume, grain_ids, bar, task):
            feature_ids[z0:z0 + planes.shape[0], :, :, 0] = planes
        features = container.create_group("CellFeatureData")
        features.attrs["AttributeMatrixType"] = np.uint32(7)  # CellFeature
        features.attrs["TupleDimensions"] = np.array([n + 1], dtype=np.uint64)
        active = np.ones((n + 1, 1), dtype=np.uint8)
        active[0] = 0
        _data_array(features, "Active", "DataArray<bool>", (n + 1,), data=active)
        _data_array(features, "PottsIds", "DataArray<uint32_t>", (n + 1,),
                    data=np.concatenate([[0], grain_ids]).astype(np.uint32)[:, None])
        f.create_group("DataContainerBundles")
        pipeline = f.create_group("Pipeline")
        pipeline.attrs["Pipeline Version"] = np.int32(2)
        pipeline.create_dataset("Pipeline", data=_ascii(json.dumps({"PipelineBuilder": {
            "Name": "grainforge export", "Number_Filters": 0, "Version": 6}})))
    point_dims = f"{lz + 1} {ly + 1} {lx + 1}"
    xdmf = f"""<?xml version="1.0"?>
<!DOCTYPE Xdmf SYSTEM "Xdmf.dtd"[]>
<Xdmf xmlns:xi="http://www.w3.org/2003/XInclude" Version="2.2">
 <Domain>
  <!-- *************** START OF ImageDataContainer *************** -->
  <Grid Name="ImageDataContainer" GridType="Uniform">
    <Topology TopologyType="3DCoRectMesh" Dimensions="{point_dims} "></Topology>
    <Geometry Type="ORIGIN_DXDYDZ">
      <!-- Origin  Z, Y, X -->
      <DataItem Format="XML" Dimensions="3">0 0 0</DataItem>
      <!-- DxDyDz (Spacing/Resolution) Z, Y, X -->
      <DataItem Format="XML" Dimensions="3">{spacing[2]!r} {spacing[1]!r} {spacing[0]!r}</DataItem>
    </Geometry>
    <Attribute Name="FeatureIds" AttributeType="Scalar" Center="Cell">
      <DataItem Format="HDF" Dimensions="{lz} {ly} {lx} 1" NumberType="Int" Precision="4" >
        {h5_path.name}:{DREAM3D_CONTAINER}/CellData/FeatureIds
      </DataItem>
    </Attribute>
  </Grid>
  <!-- *************** END OF ImageDataContainer *************** -->
 </Domain>
</Xdmf>
"""
    with atomic_path(xdmf_path) as tmp:
        tmp.write_text(xdmf)


def export_volume(run_dir: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None,
                  voxel_size_um: float | None = None, progress: bool = True) -> list[Path]:
    """Export a run's grain volume as ``vti`` or ``xdmf`` (+ ``.dream3d``) for ParaView / DREAM.3D (docs/design.md §5.9).

    Parameters
    ----------
    run_dir : str or path-like
        Simulation run folder (``volume.zarr`` or a legacy ``volume.npz``), or the store itself.
    fmt : {"vti", "xdmf"}
        File format (see the module docstring).
    out : str or path-like, optional
        The file to write, ending in ``.vti`` or ``.xdmf`` (the ``.dream3d`` file goes beside the
        ``.xdmf`` under the same stem). Default: ``RUN/volume.vti`` or ``RUN/volume.xdmf``.
    voxel_size_um : float, optional
        Voxel pitch in micrometres for the grid spacing; default: the volume's own, else 1 (voxels).
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    paths : list of Path
        The files written.

    Raises
    ------
    grainforge.errors.UserError
        On an unknown format, a bad voxel size or file name, or a missing or unreadable volume.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from grainforge.export import export_volume
    >>> from grainforge.volume import write_volume
    >>> tmp = tempfile.TemporaryDirectory()
    >>> _ = write_volume(tmp.name, np.arange(4 * 4 * 4).reshape(4, 4, 4) // 16, voxel_size_um=0.5)
    >>> [path.name for path in export_volume(tmp.name, "xdmf", progress=False)]
    ['volume.xdmf', 'volume.dream3d']
    >>> tmp.cleanup()
    """
    if fmt not in FORMATS:
        raise UserError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if voxel_size_um is not None and not (np.isfinite(voxel_size_um) and voxel_size_um > 0):
        raise UserError(f"voxel_size_um {voxel_size_um}: must be a positive length in micrometres")
    volume = open_volume(run_dir)
    base = volume.path.parent if volume.path is not None else Path(run_dir)
    out = Path(out) if out is not None else base / f"volume.{fmt}"
    if out.suffix != f".{fmt}":
        raise UserError(f"out {out}: a {fmt} export must end in .{fmt}")
    spacing = (float(voxel_size_um),) * 3 if voxel_size_um is not None else (volume.voxel_size_um or (1.0, 1.0, 1.0))
    with progress_bar(disable=not progress) as bar:
        grain_ids, _ = grain_voxel_counts(volume)
        task = bar.add_task(f"export {fmt}", total=volume.shape[2])
        if fmt == "vti":
            write_vti(volume, out, spacing, grain_ids, bar, task)
            return [out]
        h5_path = out.with_suffix(".dream3d")
        write_dream3d(volume, h5_path, out, spacing, grain_ids, bar, task)
        return [out, h5_path]
