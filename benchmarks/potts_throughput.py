"""Potts engine throughput: site-attempts per second (sites x MCS / s) and peak bytes per site.

For each lattice size and trial rule: an early stage (the first 20 MCS from one grain per site)
and a late stage (MCS 200 onwards, after 200 MCS of growth under the same rule), with 1 thread and
with all threads, for the numba kernel and the torch kernel (same volume bit for bit; on the CPU,
or ``--torch-device cuda``), each beside a reference measured in the same run, with the ratio:

- "neighbour" (default rule): a plain numpy vectorised implementation of the same rule
  (8 sub-lattices, same counter-based random numbers, so the same volume);
- "distinct": :func:`slow_distinct_sweep`, the O(26^2) form of the rule as SPPARKS potts/neigh
  does it (one thread, like SPPARKS serial), and the ratio to the neighbour rule's numba rate.
  At 128^3 the numba 1-thread row also gives its ratio to SPPARKS per core through the issue's
  anchors (:data:`SPPARKS_ANCHORS`; no SPPARKS binary runs here). Where gcc exists, a C
  transcription of the same O(26^2) form (``potts_distinct_slow.c``, gcc -O3, serial: a C
  transcription of SPPARKS' rule, not SPPARKS) runs beside it as a compiled same-run reference.

Rates are given per wall second and per CPU second (the per-core rate; on a shared machine the
wall figure understates it). Peak memory is measured in a fresh process as the growth of the
resident set during a run, divided by the sites.

    python benchmarks/potts_throughput.py                  # 128^3 and 256^3
    python benchmarks/potts_throughput.py --quick          # 64^3, fewer steps
    python benchmarks/potts_throughput.py --sizes 96 --late-mcs 10 --rules distinct
"""

from __future__ import annotations

import argparse
import ctypes
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

from grainforge.potts import kernel

C_NAME = "C_O(26^2)_1thread"  # the row of :func:`c_transcription`
SPPARKS_ANCHORS = {"early": 1.01, "late": 1.26}  # issue 11, measured side by side at 128^3, one core each: the
# O(26^2) form's rate over SPPARKS' (serial, -O3) on the distinct rule, early and late



def numpy_mix(key: np.uint64, counters: np.ndarray) -> np.ndarray:
    """:func:`grainforge.potts.kernel.mix` on an array of uint64 counters."""
    with np.errstate(over="ignore"):
        z = key + (counters + np.uint64(1)) * kernel.GOLDEN
        z = (z ^ (z >> kernel.S30)) * kernel.MIX1
        z = (z ^ (z >> kernel.S27)) * kernel.MIX2
    return z ^ (z >> kernel.S31)


def numpy_sweep(ids: np.ndarray, seed: int, mcs: int, thresholds: np.ndarray) -> tuple[int, int]:
    """One MCS of the "neighbour" rule, vectorised with numpy over each sub-lattice (in place).

    Reference for the numba kernel: same sub-lattice order, neighbour order and random numbers.
    Returns (ΔE, flips).
    """
    lx, ly, lz = ids.shape
    energy_change = flips = 0
    blocks = {(qx, qy, qz): ids[qx::2, qy::2, qz::2] for qx in (0, 1) for qy in (0, 1) for qz in (0, 1)}
    trial_rows = [int(np.flatnonzero((kernel.ALL_OFFSETS == d).all(axis=1))[0]) for d in kernel.TRIAL_OFFSETS]
    for sub in range(8):
        p = ((sub >> 2) & 1, (sub >> 1) & 1, sub & 1)
        sites = blocks[p]
        neighbours = np.empty((26,) + sites.shape, dtype=ids.dtype)
        for k, offset in enumerate(kernel.ALL_OFFSETS):
            q = tuple((p[a] + offset[a]) % 2 for a in range(3))
            shift = tuple(-((p[a] + offset[a]) // 2) for a in range(3))
            neighbours[k] = np.roll(blocks[q], shift, axis=(0, 1, 2))
        x = np.arange(p[0], lx, 2, dtype=np.uint64)[:, None, None]
        y = np.arange(p[1], ly, 2, dtype=np.uint64)[None, :, None]
        z = np.arange(p[2], lz, 2, dtype=np.uint64)[None, None, :]
        r = numpy_mix(kernel.sublattice_key(seed, mcs, sub), (x * np.uint64(ly) + y) * np.uint64(lz) + z)
        choice = ((r >> kernel.S32) * np.uint64(len(trial_rows))) >> kernel.S32
        proposed = np.take_along_axis(neighbours[trial_rows], choice.astype(np.intp)[None], axis=0)[0]
        old = sites.copy()
        delta = (neighbours == old).sum(axis=0, dtype=np.int64) - (neighbours == proposed).sum(axis=0, dtype=np.int64)
        accept = (proposed != old) & ((delta <= 0) | ((r & kernel.LOW32) < thresholds[delta + kernel.MAX_DELTA]))
        np.copyto(sites, proposed, where=accept)
        energy_change += int(delta[accept].sum())
        flips += int(accept.sum())
    return energy_change, flips


@njit  # not cached: a numba cache of a file run as a script or loaded by a test breaks the other
def _position(values, v, stop):
    """Index of the first ``v`` in ``values[:stop]``; ``stop`` when there is none."""
    for k in range(stop):
        if values[k] == v:
            return k
    return stop


@njit
def _slow_distinct_pass(ids, seed, mcs, sub, thresholds):
    """One sub-lattice pass of the "distinct" rule in its O(26^2) form (SPPARKS potts/neigh); returns (ΔE, flips).

    The distinct other ids in order of first appearance, each neighbour checked against the list
    so far, one of them by ``(hi * n) >> 32``; then ΔE over the 26 neighbours. One thread, like
    SPPARKS serial.
    """
    lx, ly, lz = ids.shape
    flat = ids.reshape(lx * ly * lz)
    px, py, pz = (sub >> 2) & 1, (sub >> 1) & 1, sub & 1
    key = kernel.sublattice_key(seed, mcs, sub)
    energy_change = 0
    flips = 0
    for hx in range(lx // 2):
        x = 2 * hx + px
        bases = np.empty(9, dtype=np.int64)
        distinct = np.empty(26, dtype=ids.dtype)
        for y in range(py, ly, 2):
            kernel._row_bases(bases, x, y, lx, ly, lz)
            for z in range(pz, lz, 2):
                site = bases[4] + z
                old = flat[site]
                r = kernel.mix(key, np.uint64(site))
                zm = z - 1 if z > 0 else lz - 1
                zp = z + 1 if z < lz - 1 else 0
                n = 0
                for row in range(9):
                    for zi in (zm, z, zp):
                        v = flat[bases[row] + zi]
                        if v != old and _position(distinct, v, n) == n:
                            distinct[n] = v
                            n += 1
                if n == 0:
                    continue
                new = distinct[((r >> kernel.S32) * np.uint64(n)) >> kernel.S32]
                delta = kernel._site_delta(flat, bases, zm, z, zp, old, new)
                if delta <= 0 or (r & kernel.LOW32) < thresholds[delta + kernel.MAX_DELTA]:
                    flat[site] = new
                    energy_change += delta
                    flips += 1
    return energy_change, flips


def slow_distinct_sweep(ids: np.ndarray, seed: int, mcs: int, thresholds: np.ndarray) -> tuple[int, int]:
    """One MCS of the "distinct" rule in the O(26^2) form (the reference for the O(26) kernel); returns (ΔE, flips)."""
    energy_change = flips = 0
    for sub in range(8):
        d_e, n = _slow_distinct_pass(ids, seed, mcs, sub, thresholds)
        energy_change += d_e
        flips += n
    return int(energy_change), int(flips)


def c_transcription():
    """``potts_distinct_slow.c`` built with gcc -O3, as a sweep like :func:`slow_distinct_sweep` (same volume); None without gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    with tempfile.TemporaryDirectory() as build:  # the loaded library outlives its file
        library = Path(build) / "potts_distinct_slow.so"
        subprocess.run([gcc, "-O3", "-shared", "-fPIC", "-o", str(library),
                        str(Path(__file__).with_name("potts_distinct_slow.c"))], check=True)
        c_sweep = ctypes.CDLL(str(library)).slow_distinct_sweep
    c_sweep.restype = ctypes.c_int64
    c_sweep.argtypes = [np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")] + [ctypes.c_int64] * 3 + [
        ctypes.c_uint64] * 2 + [np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS"), ctypes.POINTER(ctypes.c_int64)]

    def sweep(ids: np.ndarray, seed: int, mcs: int, thresholds: np.ndarray) -> tuple[int, int]:
        flips = ctypes.c_int64()
        energy_change = c_sweep(ids, *ids.shape, seed, mcs, thresholds, ctypes.byref(flips))
        return int(energy_change), flips.value

    return sweep


def attempts_per_second(step, ids: np.ndarray, first_mcs: int, n_mcs: int) -> tuple[float, float]:
    """Site-attempts per wall second and per CPU second (all threads' CPU time) of ``n_mcs`` steps.

    ``step(ids)`` prepares a run on ``ids`` (not timed) and returns ``run(mcs)``, one MCS that returns
    something ``int()`` can read (reading the last one waits for a GPU). The CPU figure is the
    per-core rate, and stays meaningful on a machine shared with other jobs.
    """
    run = step(ids)
    wall, cpu = time.perf_counter(), time.process_time()
    for mcs in range(first_mcs, first_mcs + n_mcs):
        last = run(mcs)
    int(last)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return ids.size * n_mcs / wall, ids.size * n_mcs / cpu


def peak_bytes_per_site(size: int, mcs: int) -> float:
    """Peak resident-set growth of a ``simulate`` run in a fresh process, per site (Linux): the
    kernels are loaded first, then the peak mark (VmHWM) is reset, so compile-time peaks do not count."""
    code = f"""
import json, re
from pathlib import Path
from grainforge.potts import simulate
simulate(8, 2, progress=False)  # load the compiled kernels
def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
before = status("VmRSS")
simulate({size}, {mcs}, progress=False)
print(json.dumps({{"before": before, "peak": status("VmHWM")}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return (data["peak"] - data["before"]) / size**3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--quick", action="store_true", help="64^3, 5 early + 5 late MCS after 50")
    parser.add_argument("--early-mcs", type=int, default=20)
    parser.add_argument("--grow-mcs", type=int, default=200, help="MCS of growth before the late stage")
    parser.add_argument("--late-mcs", type=int, default=20)
    parser.add_argument("--rules", nargs="+", default=["neighbour", "distinct"], choices=["neighbour", "distinct"])
    parser.add_argument("--torch-device", default="cpu", help="device of the torch rows (cpu, cuda)")
    parser.add_argument("--torch-distinct", action="store_true",
                        help="also time torch on the distinct rule (slow on a CPU: a correctness path there)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.early_mcs, args.grow_mcs, args.late_mcs = [64], 5, 50, 5
    import numba
    import torch

    from grainforge.potts.torch_kernel import TorchLattice

    all_threads = numba.config.NUMBA_NUM_THREADS
    thresholds = kernel.acceptance_thresholds(0.5)
    device = torch.device(args.torch_device)

    def numba_step(threads, distinct):
        def step(ids):
            numba.set_num_threads(threads)
            return lambda mcs: kernel.sweep(ids, 0, mcs, thresholds, distinct)[1]
        return step

    def torch_step(threads, distinct):
        def step(ids):
            torch.set_num_threads(threads)
            lattice = TorchLattice(ids, 0.5, device, distinct)
            return lambda mcs: lattice.sweep(0, mcs)[1]
        return step

    def reference_step(sweep):
        return lambda ids: (lambda mcs: sweep(ids, 0, mcs, thresholds)[1])

    torch_name = "torch_cpu" if device.type == "cpu" else f"torch_{device.type}"
    contenders = {  # rule -> (name, step); the first is the reference of the ratios
        "neighbour": [("numpy", reference_step(numpy_sweep))],
        "distinct": [("O(26^2)_1thread", reference_step(slow_distinct_sweep))],
    }
    c_sweep = c_transcription()
    if c_sweep is not None:
        contenders["distinct"].append((C_NAME, reference_step(c_sweep)))
    for rule, distinct in (("neighbour", False), ("distinct", True)):
        contenders[rule] += [("numba_1thread", numba_step(1, distinct)),
                             (f"numba_{all_threads}threads", numba_step(all_threads, distinct))]
        if not distinct or args.torch_distinct:
            contenders[rule] += [(f"{torch_name}_1thread", torch_step(1, distinct)),
                                 (f"{torch_name}_{all_threads}threads", torch_step(all_threads, distinct))]
    for rule in args.rules:
        for name, step in contenders[rule]:
            attempts_per_second(step, np.zeros((4, 4, 4), np.uint32), 0, 1)  # compile / load caches
    print(f"# Potts throughput, site-attempts/s (M = 1e6), kT 0.5; {all_threads} threads available; "
          f"torch {torch.__version__} on {device}")
    if c_sweep is not None:
        print(f"# {C_NAME}: a C transcription of SPPARKS' rule (potts_distinct_slow.c, gcc -O3), not SPPARKS")
    default_rate = {}
    for size in args.sizes:
        for rule in args.rules:
            distinct = rule == "distinct"
            start = np.arange(size**3, dtype=np.uint32).reshape((size,) * 3)
            grown = start.copy()
            numba.set_num_threads(all_threads)
            for mcs in range(args.grow_mcs):  # each rule grows its own late state
                kernel.sweep(grown, 0, mcs, thresholds, distinct)
            for stage, state, first in (("early", start, 0), ("late", grown, args.grow_mcs)):
                n = args.early_mcs if stage == "early" else args.late_mcs
                rates = {name: attempts_per_second(step, state.copy(), first, n) for name, step in contenders[rule]}
                reference, (ref_wall, ref_cpu) = contenders[rule][0][0], rates[contenders[rule][0][0]]
                for name, (wall, cpu) in rates.items():
                    ratio = "" if name == reference else f"  ratio to {reference} {wall / ref_wall:.1f}x wall, {cpu / ref_cpu:.1f}x CPU"
                    if rule == "neighbour" and name == "numba_1thread":
                        default_rate[size, stage] = cpu
                    elif rule == "distinct" and name == "numba_1thread":
                        if (size, stage) in default_rate:
                            ratio += f"; {cpu / default_rate[size, stage]:.2f}x the neighbour rule's CPU rate"
                        if C_NAME in rates:
                            ratio += f"; {cpu / rates[C_NAME][1]:.1f}x the C transcription's CPU rate"
                        if size == 128:
                            ratio += (f"; ~{cpu / ref_cpu * SPPARKS_ANCHORS[stage]:.1f}x SPPARKS per CPU-second "
                                      "on the issue's anchors")
                    print(f"{size}^3 {rule:9s} {stage:5s} {name:22s} {wall / 1e6:8.1f} M/s wall "
                          f"{cpu / 1e6:8.1f} M/s per CPU-second{ratio}", flush=True)
    numba.set_num_threads(all_threads)
    size = args.sizes[-1]
    print(f"{size}^3 peak memory {peak_bytes_per_site(size, 2):.2f} bytes/site (resident-set growth of a 2-MCS simulate run)")


if __name__ == "__main__":
    main()
