"""`grainforge export`: VTK ImageData and XDMF + DREAM.3D HDF5, read back with VTK (ParaView's readers) (docs/design.md §5.9)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from vtkmodules.util import numpy_support as vtk_numpy  # VTK, the library ParaView reads with (test extra)

from conftest import assert_user_error, run_cli
from grainforge import volume as volume_module
from grainforge.data.io import write_npz
from grainforge.errors import UserError
from grainforge.export import export_volume
from grainforge.volume import write_volume



def read_with_vtk(path: Path, array: str) -> tuple[np.ndarray, tuple, tuple]:
    """(cell array as (Lx, Ly, Lz), point dimensions, spacing) of a .vti or .xdmf file, read by VTK."""
    if path.suffix == ".vti":
        from vtkmodules.vtkIOXML import vtkXMLImageDataReader as Reader
    else:
        from vtkmodules.vtkIOXdmf2 import vtkXdmfReader as Reader
    reader = Reader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutputDataObject(0)
    dims = image.GetDimensions()
    values = vtk_numpy.vtk_to_numpy(image.GetCellData().GetArray(array))
    return values.reshape(dims[2] - 1, dims[1] - 1, dims[0] - 1).transpose(2, 1, 0), dims, image.GetSpacing()


@pytest.fixture
def run(tmp_path, monkeypatch) -> tuple[Path, np.ndarray]:
    """A run with a 9 x 6 x 13 volume of sparse ids in chunks of 4 and blocks of 3 planes (so every export crosses both)."""
    monkeypatch.setattr(volume_module, "CHUNK_SIDE", 4)
    monkeypatch.setattr(volume_module, "BLOCK_PLANES", 3)
    ids = (np.random.default_rng(0).integers(0, 40, (9, 6, 13)) * 1000 + 17).astype(np.uint32)
    write_volume(tmp_path / "run", ids, voxel_size_um=(0.5, 0.25, 2.0))
    return tmp_path / "run", ids


def numbered(ids: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.unique(ids), ids) + 1


def test_vti_reads_back_in_vtk_with_the_grain_numbers_and_spacing(run):
    run_dir, ids = run
    (path,) = export_volume(run_dir, "vti", progress=False)
    assert path == run_dir / "volume.vti"
    values, dims, spacing = read_with_vtk(path, "GrainIds")
    assert dims == (10, 7, 14) and spacing == (0.5, 0.25, 2.0)
    assert np.array_equal(values, numbered(ids))


def test_xdmf_and_dream3d_read_back_in_vtk_and_have_dream3ds_layout(run):
    run_dir, ids = run
    xdmf, h5 = export_volume(run_dir, "xdmf", voxel_size_um=1.5, progress=False)
    assert (xdmf.name, h5.name) == ("volume.xdmf", "volume.dream3d")
    values, dims, spacing = read_with_vtk(xdmf, "FeatureIds")
    assert dims == (10, 7, 14) and spacing == (1.5, 1.5, 1.5)
    assert np.array_equal(values, numbered(ids))
    with h5py.File(h5, "r") as f:
        container = f["DataContainers/ImageDataContainer"]
        assert list(container["_SIMPL_GEOMETRY/DIMENSIONS"]) == [9, 6, 13]
        assert list(container["_SIMPL_GEOMETRY/SPACING"]) == [1.5, 1.5, 1.5]
        feature_ids = container["CellData/FeatureIds"]
        assert feature_ids.shape == (13, 6, 9, 1) and feature_ids.dtype == np.int32
        assert list(feature_ids.attrs["TupleDimensions"]) == [9, 6, 13]
        potts = container["CellFeatureData/PottsIds"][:, 0]
        assert potts[0] == 0 and np.array_equal(potts[feature_ids[:, :, :, 0]].transpose(2, 1, 0), ids)
        assert container["CellFeatureData/Active"][0, 0] == 0 and container["CellFeatureData/Active"][1:].all()


def test_export_of_a_legacy_npz_run_and_bad_options(tmp_path):
    ids = np.arange(4 * 4 * 6, dtype=np.uint32).reshape(4, 4, 6) // 8
    write_npz(tmp_path / "old" / "volume.npz", ids=ids)
    result = run_cli("export", tmp_path / "old", "--format", "vti", "--out", tmp_path / "grains.vti")
    assert result.returncode == 0, result.stderr
    values, _, spacing = read_with_vtk(tmp_path / "grains.vti", "GrainIds")
    assert np.array_equal(values, ids + 1) and spacing == (1.0, 1.0, 1.0)
    assert_user_error(run_cli("export", tmp_path / "old", "--format", "vtk"), "format 'vtk'")
    assert_user_error(run_cli("export", tmp_path / "old", "--format", "xdmf", "--out", tmp_path / "a.h5"), "must end in .xdmf")
    assert_user_error(run_cli("export", tmp_path / "nowhere", "--format", "vti"), "nowhere")
    with pytest.raises(UserError, match="voxel_size_um 0"):
        export_volume(tmp_path / "old", "vti", voxel_size_um=0)
