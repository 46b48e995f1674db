"""Chunked volume storage, streamed sections, the memory check and 3D grain statistics (docs/design.md §5.8, §5.9)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage.graph import RAG

from conftest import assert_user_error, run_cli
from grainforge import sections, volume as volume_module, volumestats
from grainforge.data.io import write_npz
from grainforge.errors import UserError
from grainforge.potts import driver, load_volume, simulate
from grainforge.volume import Volume, create_volume, open_volume, read_volume, write_volume


def voronoi_volume(shape: tuple[int, int, int], n_grains: int, seed: int = 0) -> np.ndarray:
    """uint32 Voronoi grain ids (sparse ids, multiples of 3 plus 5, so numbering is tested)."""
    points = np.random.default_rng(seed).uniform(0, 1, (n_grains, 3)) * shape
    grid = np.stack(np.meshgrid(*[np.arange(n) + 0.5 for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    return (cKDTree(points).query(grid)[1].reshape(shape) * 3 + 5).astype(np.uint32)


def cube_grid(side: int, per_axis: int) -> np.ndarray:
    """``per_axis``^3 cubes of ``side`` voxels, one grain each."""
    index = np.arange(side * per_axis) // side
    return (index[:, None, None] * per_axis**2 + index[None, :, None] * per_axis + index[None, None, :]).astype(np.uint32)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 5 voxels and blocks of 2 planes, so that small test volumes span several slabs and blocks."""
    monkeypatch.setattr(volume_module, "CHUNK_SIDE", 5)
    monkeypatch.setattr(volume_module, "BLOCK_PLANES", 2)


def test_write_open_read_round_trip_with_attributes(tmp_path, small_chunks):
    ids = voronoi_volume((12, 7, 11), 20)
    path = write_volume(tmp_path / "run", ids, voxel_size_um=(0.5, 0.5, 2.0), periodic=True, metadata={"mcs": 7})
    assert path == tmp_path / "run" / "volume.zarr"
    volume = open_volume(tmp_path / "run")
    assert volume.shape == (12, 7, 11) and volume.ids.chunks == (5, 5, 5)
    assert volume.voxel_size_um == (0.5, 0.5, 2.0) and volume.periodic and volume.attrs["mcs"] == 7
    assert np.array_equal(read_volume(tmp_path / "run"), ids) and read_volume(path).dtype == np.uint32
    # planes come slab by slab, in order, equal to the array's planes, along every axis
    for axis in range(3):
        wanted = [0, 3, 4, 5, ids.shape[axis] - 1]
        got = list(volume.planes(axis, [4, 0, 5, 3, ids.shape[axis] - 1, 3]))
        assert [i for i, _ in got] == wanted
        assert all(np.array_equal(plane, np.take(ids, i, axis=axis)) for i, plane in got)
    assert not any(p.name.startswith(".") for p in (tmp_path / "run").iterdir())  # no temporary folders left


def test_failed_write_leaves_the_old_volume(tmp_path):
    write_volume(tmp_path, np.ones((4, 4, 4), np.uint32))
    with pytest.raises(RuntimeError), create_volume(tmp_path, (4, 4, 4)) as array:
        array[:2] = 7
        raise RuntimeError("interrupted")
    assert np.array_equal(read_volume(tmp_path), np.ones((4, 4, 4), np.uint32))
    assert [p.name for p in tmp_path.iterdir()] == ["volume.zarr"]


def test_legacy_npz_still_loads_and_a_new_write_replaces_it(tmp_path):
    ids = voronoi_volume((6, 6, 6), 5)
    write_npz(tmp_path / "volume.npz", ids=ids, mcs=np.int64(3))
    volume = open_volume(tmp_path)
    assert volume.path.name == "volume.npz" and volume.periodic and volume.attrs["mcs"] == 3
    assert np.array_equal(load_volume(tmp_path), ids)
    write_volume(tmp_path, ids + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume.zarr"]
    assert np.array_equal(load_volume(tmp_path), ids + 1)


def test_bad_volumes_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="holds no volume.zarr"):
        open_volume(tmp_path)
    (tmp_path / "volume.zarr").mkdir()
    (tmp_path / "volume.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable volume"):
        open_volume(tmp_path)
    import zarr

    zarr.open_group(store=str(tmp_path / "foreign.zarr"), mode="w").create_array("ids", shape=(2, 2), dtype="uint32")
    with pytest.raises(UserError, match="not a grainforge volume"):
        open_volume(tmp_path / "foreign.zarr")
    with pytest.raises(UserError, match="voxel_size_um"):
        write_volume(tmp_path / "v", np.zeros((2, 2, 2), np.uint32), voxel_size_um=-1)


def test_simulate_writes_a_zarr_volume_with_the_runs_metadata(tmp_path):
    result = simulate(8, 3, seed=4, out=tmp_path / "run", progress=False)
    volume = open_volume(tmp_path / "run")
    assert volume.path.name == "volume.zarr" and volume.periodic and volume.voxel_size_um is None
    assert volume.attrs["mcs"] == 3 and volume.attrs["simulation"] == {"size": [8, 8, 8], "kT": 0.5, "seed": 4,
                                                                       "proposal": "neighbour"}
    assert "numpy" in volume.attrs["versions"]
    assert np.array_equal(read_volume(tmp_path / "run"), result.ids)


def test_streamed_slice_equals_the_in_memory_slice(tmp_path, small_chunks):
    ids = voronoi_volume((14, 12, 10), 25)
    write_volume(tmp_path / "zarr", ids)
    write_npz(tmp_path / "npz" / "volume.npz", ids=ids)
    options = dict(axes="xz", stride=3, match_mean_area=60.0, progress=False)
    rows = sections.slice_run(tmp_path / "zarr", tmp_path / "a", **options)
    legacy = sections.slice_run(tmp_path / "npz", tmp_path / "b", **options)
    assert len(rows) == len(legacy) == 5 + 4
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()
    for row in rows:
        for kind, suffix in (("labels", "png"), ("ids", "tif")):
            a = (tmp_path / "a" / kind / f"{row['stem']}.{suffix}").read_bytes()
            assert a == (tmp_path / "b" / kind / f"{row['stem']}.{suffix}").read_bytes()


def test_largest_cubic_size_is_exact():
    overhead, per_site = driver.FIXED_OVERHEAD_BYTES, driver.BYTES_PER_SITE
    assert driver.largest_cubic_size(overhead + per_site * 100**3) == 100
    assert driver.largest_cubic_size(overhead + per_site * 100**3 - 1) == 98  # odd sides are not allowed
    assert driver.largest_cubic_size(overhead + per_site * 63) is None


def test_simulate_refuses_a_lattice_larger_than_free_memory_and_names_the_size_that_fits(monkeypatch, capsys):
    from grainforge.cli import main

    monkeypatch.setattr(driver, "available_memory_bytes", lambda: driver.FIXED_OVERHEAD_BYTES + driver.BYTES_PER_SITE * 208**3)
    monkeypatch.setattr(driver.np, "arange", None)  # allocating the lattice would fail with a TypeError
    with pytest.raises(SystemExit) as stop:
        main(["simulate", "--size", "256", "--mcs", "1", "--out", "/nonexistent/never-created"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grainforge: error: size 256x256x256: needs about")
    assert err.endswith("the largest cubic lattice that fits is --size 208") and "\n" not in err


def test_cube_grid_grains_have_known_volumes_diameters_and_six_face_neighbours(small_chunks):
    side, per_axis = 3, 4
    rows = volumestats.grain_table(cube_grid(side, per_axis))
    assert len(rows) == per_axis**3
    assert {r["volume_voxels"] for r in rows} == {27}
    assert all(r["equivalent_diameter_voxels"] == pytest.approx((6 * 27 / np.pi) ** (1 / 3)) for r in rows)
    inner = [r for r in rows if not r["touches_border"]]
    assert len(inner) == (per_axis - 2) ** 3 and {r["n_neighbours"] for r in inner} == {6}  # 26 with edges and corners
    # a box corner cube has 3 face neighbours, an edge cube 4, a face cube 5
    counts = np.bincount([r["n_neighbours"] for r in rows])
    assert counts[3] == 8 and counts[4] == 12 * (per_axis - 2) and counts[5] == 6 * (per_axis - 2) ** 2
    periodic = volumestats.grain_table(Volume(cube_grid(side, per_axis), {"periodic": True, "voxel_size_um": [2, 2, 2]}))
    assert {r["n_neighbours"] for r in periodic} == {6} and not any(r["touches_border"] for r in periodic)
    assert periodic[0]["volume_um3"] == 27 * 8 and periodic[0]["equivalent_diameter_um"] == pytest.approx(
        2 * rows[0]["equivalent_diameter_voxels"])


@pytest.mark.parametrize("periodic", [False, True])
def test_neighbours_match_scikit_image_region_adjacency(tmp_path, small_chunks, periodic):
    ids = voronoi_volume((13, 11, 9), 30, seed=2)
    write_volume(tmp_path, ids, periodic=periodic)
    rows = volumestats.grain_table(open_volume(tmp_path))
    numbers = np.searchsorted(np.unique(ids), ids) + 1
    graph = RAG(np.pad(numbers, 1, mode="wrap") if periodic else numbers, connectivity=1)  # faces only
    assert [r["n_neighbours"] for r in rows] == [len(set(graph.neighbors(g)) - {g}) for g in range(1, len(rows) + 1)]
    assert [r["potts_id"] for r in rows] == list(np.unique(ids))
    assert [r["volume_voxels"] for r in rows] == list(np.bincount(numbers.ravel())[1:])
    faces = np.unique(np.concatenate([numbers[[0, -1]].ravel(), numbers[:, [0, -1]].ravel(), numbers[:, :, [0, -1]].ravel()]))
    assert [r["touches_border"] for r in rows] == [(not periodic) and g in faces for g in range(1, len(rows) + 1)]


def test_stats_volume_cli_writes_csv_summary_and_plot(tmp_path):
    write_volume(tmp_path / "run", cube_grid(2, 4), voxel_size_um=0.5)
    result = run_cli("stats", "--volume", tmp_path / "run", "--out", tmp_path / "stats")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "stats" / "volume_grains.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 64 and rows[0]["volume_um3"] == "1.0" and rows[0]["n_neighbours"] == "3"
    summary = json.loads((tmp_path / "stats" / "volume_summary.json").read_text())
    assert summary["n_interior_grains"] == 8 and summary["mean_neighbours"] == 6.0 and summary["connectivity"] == 6
    assert summary["mean_equivalent_diameter_um"] == pytest.approx((6 / np.pi) ** (1 / 3))
    assert (tmp_path / "stats" / "volume_distributions.png").stat().st_size > 0
    assert (tmp_path / "stats" / "run.json").is_file()
    assert_user_error(run_cli("stats", tmp_path, "--volume", tmp_path / "run", "--out", tmp_path / "o"), "--volume")
