"""The torch Potts kernel (docs/design.md §5.10) on the CPU: the numba kernel's volume bit for bit.

No test needs a GPU: the CUDA path runs the same torch operations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_cli

from grainforge.errors import UserError
from grainforge.potts import kernel, load_volume, simulate
from grainforge.potts.torch_kernel import TorchLattice, mix

CPU = torch.device("cpu")


def test_int64_splitmix_equals_the_uint64_one():
    counters = np.array([0, 1, 2**31, 2**32 + 7, 2**63 - 1, 2**63, 2**64 - 2], dtype=np.uint64)
    for key in (kernel.sublattice_key(0, 0, 0), kernel.sublattice_key(np.uint64(2**64 - 1), 123, 7), np.uint64(0)):
        expected = np.array([kernel.mix(np.uint64(key), c) for c in counters], dtype=np.uint64)
        got = mix(int(key), torch.from_numpy(counters.view(np.int64)))
        assert np.array_equal(got.numpy().view(np.uint64), expected)
    keys = torch.from_numpy(counters.view(np.int64))  # tensor keys and counters (the distinct rule's priorities)
    ids = np.array([0, 1, 2**31, 2**32 - 1, 12345, 7, 2**16], dtype=np.uint64)
    expected = np.array([kernel.mix(k, v) for k, v in zip(counters, ids)], dtype=np.uint64)
    assert np.array_equal(mix(keys, torch.from_numpy(ids.view(np.int64))).numpy().view(np.uint64), expected)


@pytest.mark.parametrize("distinct", [False, True], ids=["neighbour", "distinct"])
@pytest.mark.parametrize("shape, start, kT", [
    ((32, 32, 32), "unique", 0.5),   # the first MCS: every id distinct
    ((32, 32, 32), "few", 1.5),      # three ids (two >= 2**31), hot: many ΔE > 0 flips
    ((4, 6, 8), "few", 0.5),         # the smallest sides: every neighbour wraps
])
def test_torch_sweep_is_the_numba_sweep_bit_for_bit(shape, start, kT, distinct):
    n = int(np.prod(shape))
    ids = (np.arange(n, dtype=np.uint32).reshape(shape) if start == "unique"
           else np.random.default_rng(5).integers(0, 3, size=shape).astype(np.uint32) * np.uint32(2**31 + 1))
    lattice = TorchLattice(ids, kT, CPU, distinct)
    thresholds = kernel.acceptance_thresholds(kT)
    for mcs in range(4):
        expected = kernel.sweep(ids, 9, mcs, thresholds, distinct)
        energy_change, flips = lattice.sweep(9, mcs)
        assert (int(energy_change), int(flips)) == expected
        assert expected[1] > 0
        assert np.array_equal(lattice.to_numpy(), ids)
    if start == "unique":  # count_ids needs ids < sites, as in a run; "few" has ids >= 2**31 (negative as int32)
        assert lattice.count_ids() == len(np.unique(ids))


def test_count_ids_slab_by_slab(monkeypatch):
    ids = np.random.default_rng(0).integers(0, 1000, size=(10, 12, 14)).astype(np.uint32)
    monkeypatch.setattr("grainforge.potts.torch_kernel.COUNT_CHUNK_SITES", 300)  # slabs of 1 x-plane (168 sites)
    assert TorchLattice(ids, 0.5, CPU).count_ids() == len(np.unique(ids)) == kernel.count_ids(ids, np.zeros(1000, np.uint8))


def test_grain_growth_at_64_cubed_is_the_numba_run():
    """The run loop on the torch backend: the numba run's log and volume, exactly.

    Tolerance zero: both backends draw the same random numbers for the same sites in the same
    order, so any difference in mean grain volume, grain count or energy is a bug. 40 MCS take
    the 262,144 sites to ~1,600 grains of ~170 voxels.
    """
    numba_run = simulate(64, 40, seed=3, progress=False)
    torch_run = simulate(64, 40, seed=3, backend="torch", device="cpu", progress=False)
    strip = [{k: v for k, v in row.items() if k != "wall_time_s"} for row in numba_run.log]
    assert [{k: v for k, v in row.items() if k != "wall_time_s"} for row in torch_run.log] == strip
    assert np.array_equal(torch_run.ids, numba_run.ids)
    assert 100 < numba_run.log[-1]["mean_grain_volume"] < 400


def test_resume_a_numba_checkpoint_on_torch(tmp_path):
    straight = simulate(16, 6, seed=1, progress=False)
    simulate(16, 3, seed=1, out=tmp_path, checkpoint_every=3, progress=False)
    resumed = simulate(16, 6, seed=1, out=tmp_path, checkpoint_every=3, resume=True, backend="torch", device="cpu",
                       progress=False)
    assert np.array_equal(resumed.ids, straight.ids)
    assert resumed.log[-1]["energy"] == straight.log[-1]["energy"]


def test_area_target_and_checkpoint_read_the_device_lattice(tmp_path):
    expected = simulate(16, None, seed=2, target_grain_size=20.0, target_kind="area", progress=False)
    got = simulate(16, None, seed=2, target_grain_size=20.0, target_kind="area", backend="torch", device="cpu",
                   out=tmp_path, checkpoint_every=2, progress=False)
    assert got.mcs_done == expected.mcs_done and got.target_reached
    assert np.array_equal(load_volume(tmp_path), expected.ids)
    with np.load(tmp_path / "checkpoint.npz") as checkpoint:
        assert np.array_equal(checkpoint["ids"], expected.ids)


@pytest.mark.parametrize("options, fragment", [
    ({"backend": "jax"}, "^backend 'jax': use one of numba, torch"),
    ({"device": "tpu"}, "^device 'tpu': use one of auto, cpu, cuda"),
    ({"device": "cuda"}, "^device cuda: the numba backend runs on the CPU"),
])
def test_bad_backend_options_are_user_errors(options, fragment):
    with pytest.raises(UserError, match=fragment):
        simulate(8, 2, progress=False, **options)


def test_torch_memory_check_names_the_size(monkeypatch, tmp_path):
    monkeypatch.setattr("grainforge.potts.driver.available_memory_bytes", lambda: 2**30)
    simulate(16, 1, backend="torch", device="cpu", progress=False)  # 4096 sites: far below 1 GiB
    with pytest.raises(UserError, match=r"^size 320x320x320: the torch backend needs about 1.7 GiB on cpu but 1.0 GiB"):
        simulate(320, 1, backend="torch", device="cpu", out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="device cuda asked for, but torch sees no CUDA GPU"):
        simulate(8, 2, backend="torch", device="cuda", out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_bad_backend_is_one_line(tmp_path):
    result = run_cli("simulate", "--size", "8", "--mcs", "2", "--backend", "numba", "--device", "cuda",
                     "--out", tmp_path / "run")
    assert_user_error(result, "device cuda: the numba backend runs on the CPU; use backend torch")
    assert not (tmp_path / "run").exists()


def test_cli_torch_backend_writes_the_numba_volume(tmp_path):
    result = run_cli("simulate", "--size", "8,8,12", "--mcs", "3", "--seed", "4", "--backend", "torch",
                     "--device", "cpu", "--proposal", "distinct", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    expected = simulate((8, 8, 12), 3, seed=4, proposal="distinct", progress=False).ids
    assert np.array_equal(load_volume(tmp_path / "run"), expected)
