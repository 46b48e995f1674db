"""The Potts engine: the kernel against brute force and two independent references (a numpy
vectorised sweep and a pure-Python sequential one), determinism, stop rules, checkpoints and
bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numba
import numpy as np
import pytest
from conftest import assert_user_error, load_benchmark, run_cli
from test_potts_distinct import distinct_proposal
from scipy import ndimage

from grainforge.errors import UserError
from grainforge.potts import LOG_COLUMNS, kernel, load_volume, parse_size, simulate
from grainforge.potts.driver import check_memory, equivalent_diameter, mean_section_area



@pytest.fixture(scope="module")
def numpy_reference():
    """The numpy vectorised sweep of ``benchmarks/potts_throughput.py``."""
    return load_benchmark("potts_throughput").numpy_sweep


def brute_energy(ids: np.ndarray) -> int:
    """Unlike neighbour pairs over all 26 periodic neighbours, each pair counted once."""
    unlike = 0
    for offset in kernel.ALL_OFFSETS:
        unlike += int((ids != np.roll(ids, tuple(-offset), axis=(0, 1, 2))).sum())
    return unlike // 2


def random_ids(shape, n_ids, seed) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_ids, size=shape).astype(np.uint32)


def sweep_all(ids, mcs_range, kT, distinct=False):
    thresholds = kernel.acceptance_thresholds(kT)
    return [kernel.sweep(ids, 7, mcs, thresholds, distinct) for mcs in mcs_range]


# ---------------------------------------------------------------- kernel against brute force


@pytest.mark.parametrize("shape", [(4, 6, 8), (6, 6, 6)])
def test_delta_energy_of_single_flips_equals_brute_force_difference(shape):
    rng = np.random.default_rng(1)
    ids = random_ids(shape, 4, 2)
    assert kernel.total_energy(ids, kernel.FORWARD_OFFSETS) == brute_energy(ids)
    for _ in range(40):
        x, y, z = (int(rng.integers(n)) for n in shape)
        new = np.uint32(rng.integers(0, 5))
        before = brute_energy(ids)
        delta = kernel.delta_energy(ids, x, y, z, new)
        ids[x, y, z] = new
        assert delta == brute_energy(ids) - before


def test_acceptance_thresholds_follow_metropolis():
    thresholds = kernel.acceptance_thresholds(0.5)
    assert (thresholds[: kernel.MAX_DELTA + 1] == 2**32).all()  # ΔE <= 0: always
    for delta in (1, 2, 5):
        assert thresholds[kernel.MAX_DELTA + delta] / 2**32 == pytest.approx(math.exp(-delta / 0.5), abs=1e-9)
    assert (kernel.acceptance_thresholds(0.0)[kernel.MAX_DELTA + 1:] == 0).all()


@pytest.mark.parametrize("start", ["unique", "random"])
def test_numba_sweep_equals_numpy_vectorised_reference(numpy_reference, start):
    shape = (8, 6, 10)
    ids = np.arange(math.prod(shape), dtype=np.uint32).reshape(shape) if start == "unique" else random_ids(shape, 6, 3)
    reference = ids.copy()
    energy = kernel.total_energy(ids, kernel.FORWARD_OFFSETS)
    thresholds = kernel.acceptance_thresholds(0.5)
    for mcs in range(4):
        got = kernel.sweep(ids, 7, mcs, thresholds)
        assert got == numpy_reference(reference, 7, mcs, thresholds)
        assert np.array_equal(ids, reference)
        assert got[1] > 0
        energy += got[0]
    assert energy == brute_energy(ids)


def sequential_pass(ids, seed, mcs, sub, kT, distinct, order_seed):
    """One sub-lattice pass of the rule written site by site, visiting the sites in a random order."""
    lx, ly, lz = ids.shape
    thresholds = kernel.acceptance_thresholds(kT)
    key = np.uint64(kernel.sublattice_key(seed, mcs, sub))
    sites = [(x, y, z) for x in range(lx) for y in range(ly) for z in range(lz)
             if 4 * (x % 2) + 2 * (y % 2) + z % 2 == sub]
    np.random.default_rng(order_seed).shuffle(sites)
    for x, y, z in sites:
        r = int(kernel.mix(key, np.uint64((x * ly + y) * lz + z)))
        hi, lo = r >> 32, r & 0xFFFFFFFF
        old = ids[x, y, z]
        around = [ids[(x + dx) % lx, (y + dy) % ly, (z + dz) % lz] for dx, dy, dz in kernel.ALL_OFFSETS]
        if distinct:
            new = distinct_proposal(around, old, r, thresholds)[0]
        else:
            dx, dy, dz = kernel.TRIAL_OFFSETS[(hi * 18) >> 32]
            new = ids[(x + dx) % lx, (y + dy) % ly, (z + dz) % lz]
        if new == old:
            continue
        delta = sum(v == old for v in around) - sum(v == new for v in around)
        if delta <= 0 or lo < thresholds[delta + kernel.MAX_DELTA]:
            ids[x, y, z] = new


@pytest.mark.parametrize("distinct", [False, True])
def test_sublattice_pass_equals_sequential_updates_in_any_order(distinct):
    """Synchronous == sequential in any order holds only if no two sites of a pass are neighbours."""
    shape = (6, 4, 8)
    start = random_ids(shape, 5, 4)
    for sub in range(8):
        fast = start.copy()
        kernel.sweep_sublattice(fast, 7, 3, sub, kernel.acceptance_thresholds(1.5), distinct)
        changed = np.argwhere(fast != start)
        assert len(changed) > 0
        assert all(4 * (x % 2) + 2 * (y % 2) + z % 2 == sub for x, y, z in changed)
        for order_seed in (0, 1):
            slow = start.copy()
            sequential_pass(slow, 7, 3, sub, 1.5, distinct, order_seed)
            assert np.array_equal(fast, slow)


def test_no_two_sites_of_a_sublattice_are_neighbours():
    shape = (4, 6, 4)
    coords = np.argwhere(np.ones(shape, dtype=bool))
    sub = 4 * (coords[:, 0] % 2) + 2 * (coords[:, 1] % 2) + coords[:, 2] % 2
    for s in range(8):
        members = coords[sub == s]
        gap = np.abs(members[:, None, :] - members[None, :, :])
        gap = np.minimum(gap, np.array(shape) - gap)  # periodic distance per axis
        neighbours = (gap.max(axis=2) == 1)
        assert not neighbours.any()


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize("distinct", [False, True])
def test_zero_temperature_never_raises_the_energy(distinct):
    ids = random_ids((10, 10, 10), 4, 5)
    energies = [brute_energy(ids)]
    thresholds = kernel.acceptance_thresholds(0.0)
    for mcs in range(3):
        for sub in range(8):
            change, _ = kernel.sweep_sublattice(ids, 1, mcs, sub, thresholds, distinct)
            assert change <= 0
            energies.append(brute_energy(ids))
            assert energies[-1] == energies[-2] + change
    assert all(b <= a for a, b in zip(energies, energies[1:]))
    assert energies[-1] < energies[0]


@pytest.mark.parametrize("distinct", [False, True])
@pytest.mark.parametrize("kT", [0.5, 50.0])
def test_single_grain_volume_never_changes(kT, distinct):
    ids = np.full((6, 8, 4), 7, dtype=np.uint32)
    moves = sweep_all(ids, range(5), kT, distinct)
    assert (ids == 7).all() and all(change == (0, 0) for change in moves)


def periodic_component_count(mask: np.ndarray) -> int:
    """Face-connected components of a bool volume with periodic wrap."""
    labels, n = ndimage.label(mask)
    parent = list(range(n + 1))

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for axis in range(3):
        first, last = np.take(labels, 0, axis=axis), np.take(labels, -1, axis=axis)
        for a, b in zip(first[(first > 0) & (last > 0)], last[(first > 0) & (last > 0)]):
            parent[find(a)] = find(b)
    return len({find(a) for a in range(1, n + 1)})


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_grain_crossing_the_periodic_faces(axis):
    """A slab across the faces of ``axis`` (planes L-2, L-1, 0, 1): flat, so frozen at kT = 0, and
    still one grain after growth at kT = 0.5 (an unwrapped kernel would eat it at the faces)."""
    shape = [12, 12, 12]
    index = np.arange(12)
    slab = np.isin(index, [10, 11, 0, 1]).reshape([-1 if a == axis else 1 for a in range(3)])
    ids = np.where(np.broadcast_to(slab, shape), 3, 9).astype(np.uint32)
    frozen = ids.copy()
    assert all(change == (0, 0) for change in sweep_all(frozen, range(4), 0.0))
    assert np.array_equal(frozen, ids)
    sweep_all(ids, range(10), 0.5)
    grain = ids == 3
    assert grain.sum() > 0.5 * 4 * 144
    assert periodic_component_count(grain) == 1
    assert (np.take(grain, 0, axis=axis) | np.take(grain, -1, axis=axis)).mean() > 0.9


# ---------------------------------------------------------------- the run loop


def test_same_seed_same_volume_whatever_the_thread_count():
    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    one = simulate(16, 8, seed=5, threads=1, progress=False)
    many = simulate(16, 8, seed=5, threads=threads, progress=False)
    assert np.array_equal(one.ids, many.ids)
    assert [r["n_grains"] for r in one.log] == [r["n_grains"] for r in many.log]
    assert not np.array_equal(one.ids, simulate(16, 8, seed=6, progress=False).ids)
    distinct = [simulate(16, 4, seed=5, proposal="distinct", threads=t, progress=False).ids for t in (1, threads)]
    assert np.array_equal(*distinct)


def read_log_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_directory_log_and_volume(tmp_path):
    out = tmp_path / "run"
    result = simulate((12, 8, 10), 6, seed=2, out=out, progress=False)
    rows = read_log_csv(out / "log.csv")
    assert tuple(rows[0]) == LOG_COLUMNS
    assert [int(r["mcs"]) for r in rows] == list(range(7))
    sites = 12 * 8 * 10
    assert int(rows[0]["n_grains"]) == sites and int(rows[0]["energy"]) == 13 * sites
    n_grains = [int(r["n_grains"]) for r in rows]
    assert all(b <= a for a, b in zip(n_grains, n_grains[1:]))
    assert float(rows[-1]["mean_grain_volume"]) == pytest.approx(sites / n_grains[-1])
    assert int(rows[-1]["energy"]) == brute_energy(result.ids)
    assert n_grains[-1] == len(np.unique(result.ids))
    volume = load_volume(out)
    assert volume.dtype == np.uint32 and np.array_equal(volume, result.ids)
    record = json.loads((out / "run.json").read_text())
    assert record["seed"] == 2 and record["config"]["size"] == [12, 8, 10]
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary files left


def test_resume_from_a_checkpoint_gives_the_straight_run(tmp_path):
    straight = simulate(12, 9, seed=4, progress=False)
    out = tmp_path / "run"
    simulate(12, 5, seed=4, out=out, checkpoint_every=2, progress=False)  # checkpoints at 2, 4 and the end (5)
    with np.load(out / "checkpoint.npz") as data:
        assert int(data["mcs"]) == 5
    resumed = simulate(12, 9, seed=4, out=out, checkpoint_every=2, resume=True, progress=False)
    assert resumed.mcs_done == 9 and np.array_equal(resumed.ids, straight.ids)
    strip = [{k: v for k, v in r.items() if k != "wall_time_s"} for r in straight.log]
    assert [{k: v for k, v in r.items() if k != "wall_time_s"} for r in resumed.log] == strip
    assert [int(r["mcs"]) for r in read_log_csv(out / "log.csv")] == list(range(10))


def test_stop_at_target_grain_size():
    log = simulate(16, 100, seed=1, target_grain_size=4.0, progress=False).log
    diameters = [equivalent_diameter(r["mean_grain_volume"]) for r in log]
    assert diameters[-1] >= 4.0 > diameters[-2] and log[-1]["mcs"] < 100
    capped = simulate(16, 3, seed=1, target_grain_size=100.0, progress=False)
    assert capped.mcs_done == 3 and capped.target_reached is False
    by_area = simulate(16, None, seed=1, target_grain_size=20.0, target_kind="area", progress=False)
    assert by_area.target_reached and mean_section_area(by_area.ids) >= 20.0
    one_less = simulate(16, by_area.mcs_done - 1, seed=1, progress=False)
    assert mean_section_area(one_less.ids) < 20.0


def test_mean_section_area_counts_regions_with_periodic_wrap():
    ids = np.zeros((8, 8, 8), dtype=np.uint32)
    ids[:, :, 2:6] = 1  # two slabs along z; the id-0 slab wraps around the z faces
    # x and y sections: 2 stripes of 32 pixels each (the wrapped stripe counted once); z sections: 1 region
    assert mean_section_area(ids) == pytest.approx((24 * 64) / (16 * 2 + 8 * 1))  # 24 sections of 64 pixels


# ---------------------------------------------------------------- input checks


def test_parse_size():
    assert parse_size("64") == (64, 64, 64)
    assert parse_size("64,64,32") == parse_size("64 64 32") == parse_size((64, 64, 32)) == (64, 64, 32)
    for bad in ("63", "0", "64,64", "abc", 2, (64, 64, 30, 2)):
        with pytest.raises(UserError, match="^size "):
            parse_size(bad)
    with pytest.raises(UserError, match="uint32"):
        parse_size(1626)


def test_memory_check():
    assert check_memory((400, 400, 400), available=int(1.5 * 2**30)) <= 1.5 * 2**30  # the paper's lattice fits
    with pytest.raises(UserError, match=r"size 400x400x400: needs about .* GiB"):
        check_memory((400, 400, 400), available=2**28)


@pytest.mark.parametrize("options, fragment", [
    ({"kT": -1.0}, "^kT -1.0: "), ({"mcs": -1}, "^mcs -1: "), ({"mcs": None}, "^mcs: "), ({"threads": 0}, "^threads 0: "),
    ({"proposal": "any"}, "^proposal 'any': "), ({"target_grain_size": -2.0}, "^target_grain_size -2.0: "),
    ({"target_kind": "volume"}, "^target_kind 'volume': "),
    ({"checkpoint_every": 2}, r"^checkpoint_every: needs an output folder \(out\)"),
    ({"resume": True}, "^resume: needs the out folder"),
])
def test_bad_options_are_user_errors(options, fragment):
    kwargs = {"size": 8, "mcs": 2, **options}
    with pytest.raises(UserError, match=fragment):
        simulate(progress=False, **kwargs)


def test_cli_runs_and_writes_the_run_directory(tmp_path):
    result = run_cli("simulate", "--size", "8,8,12", "--mcs", "3", "--seed", "1", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert load_volume(tmp_path / "run" / "volume.zarr").shape == (8, 8, 12)
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"volume.zarr", "log.csv", "run.json"}


@pytest.mark.parametrize("args, fragment", [
    (["--size", "15"], "size '15': every side must be even"), (["--size", "0"], "size '0': every side must be even"),
    (["--kT", "-0.5"], "kT -0.5: must be a finite number >= 0"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, args, fragment):
    out = tmp_path / "run"
    result = run_cli("simulate", "--mcs", "2", "--out", out, *args)
    assert_user_error(result, fragment)
    assert not out.exists()


def test_cli_unwritable_output(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    assert_user_error(run_cli("simulate", "--size", "8", "--mcs", "2", "--out", tmp_path / "file" / "run"), "file")


def test_cli_refuses_a_checkpoint_of_another_size(tmp_path):
    out = tmp_path / "run"
    simulate(8, 2, out=out, checkpoint_every=1, progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}  # volume.zarr is a folder
    result = run_cli("simulate", "--size", "12", "--mcs", "4", "--out", out, "--resume")
    assert_user_error(result, "checkpoint.npz", "size 8x8x8", "size 12x12x12")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
