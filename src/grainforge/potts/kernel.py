"""numba kernels of the 3D Monte Carlo Potts model (periodic cubic lattice, 26 neighbours).

Conventions (shared by :mod:`grainforge.potts.driver`, the tests and the numpy reference in
``benchmarks/potts_throughput.py``):

- ``ids`` is a C-ordered uint32 array (Lx, Ly, Lz), axes x, y, z; every L even; site (x, y, z)
  has the flat index ``(x * Ly + y) * Lz + z``.
- Energy (units of J): the number of unlike pairs among the 26-neighbour pairs, each pair
  counted once (docs/design.md §5.2: the brief's double sum over i and j, halved). A flip's ΔE is
  ``#neighbours equal to the old id - #neighbours equal to the new id`` (an integer in [-26, 26]).
- Sub-lattices: the 8 classes of ``(x % 2, y % 2, z % 2)``, numbered ``4 * (x%2) + 2 * (y%2) + z%2``;
  no two sites of one class are 26-neighbours, so a class is updated in parallel safely.
- Random numbers are counter based: site (flat index i) in sub-lattice pass (seed, mcs, sub) uses
  ``r = mix(sublattice_key(seed, mcs, sub), i)`` (splitmix64). The low 32 bits decide acceptance
  (``lo < threshold[ΔE]``); the high 32 bits choose the "neighbour" rule's trial neighbour
  (``(hi * n) >> 32``), and ``mix(r, id)`` ranks the "distinct" rule's candidate ids. No random
  state is carried, so any thread count gives the same volume.
- Threads wait passively at the 8 barriers of a step: ``grainforge/__init__`` sets
  ``OMP_WAIT_POLICY=PASSIVE`` (spinning made a 2-thread sweep ~20x slower on a loaded machine).
- Proposal "neighbour" (the paper's): the id of one of the 18 first+second neighbours
  (:data:`TRIAL_OFFSETS`, in that order). Proposal "distinct" (SPPARKS potts/neigh): one of the
  distinct ids other than the site's own among its 26 neighbours, uniformly: the one with the
  least random priority ``mix(r, id)`` (:func:`least_priority`), O(26) and no rejection loop. A
  proposal equal to the current id, or a site with no other id around, is skipped.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
S27, S30, S31, S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
LOW32 = np.uint64(0xFFFFFFFF)

ALL_OFFSETS = np.array(
    [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1) if (dx, dy, dz) != (0, 0, 0)],
    dtype=np.int64,
)  # (26, 3)
TRIAL_OFFSETS = np.array([d for d in ALL_OFFSETS if np.abs(d).sum() <= 2], dtype=np.int64)  # (18, 3)
FORWARD_OFFSETS = ALL_OFFSETS[13:]  # (13, 3): one of each +/- pair, for counting pairs once
HIGH32 = np.uint64(0xFFFFFFFF00000000)
MAX_DELTA = 26
CENTRE = 13  # the site itself in its 3x3x3 block of 27 (flat order, = ALL_OFFSETS order around it)
NO_PRIORITY = np.uint64(0xFFFFFFFFFFFFFFFF)  # the "distinct" rule's priority of the site's own id
DISTINCT_BATCH = 256  # sites whose "distinct" proposals are computed together: a (27, 256) uint32 block, 27 KiB


@njit(cache=True, inline="always")
def mix(key, counter):
    """splitmix64 output number ``counter`` of the stream ``key`` (both cast to uint64)."""
    z = np.uint64(key) + (np.uint64(counter) + np.uint64(1)) * GOLDEN
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


@njit(cache=True)
def sublattice_key(seed, mcs, sub):
    """Key (uint64) of the random stream of sub-lattice pass ``sub`` (0..7) of step ``mcs``."""
    return mix(mix(np.uint64(seed), np.uint64(mcs)), np.uint64(sub))


def acceptance_thresholds(kT: float) -> np.ndarray:
    """uint64 (53,): index ``ΔE + 26``; accept when the low 32 random bits are < the entry.

    ΔE <= 0 always accepts (2**32); ΔE > 0 accepts with probability exp(-ΔE / kT) (never at kT = 0).
    """
    thresholds = np.empty(2 * MAX_DELTA + 1, dtype=np.uint64)
    for delta in range(-MAX_DELTA, MAX_DELTA + 1):
        if delta <= 0:
            value = 2**32
        elif kT <= 0.0:
            value = 0
        else:
            value = min(int(math.floor(math.exp(-delta / kT) * 2**32)), 2**32)
        thresholds[delta + MAX_DELTA] = value
    return thresholds


@njit(cache=True, inline="always")
def _wrap(i, n):
    if i < 0:
        return i + n
    if i >= n:
        return i - n
    return i


@njit(cache=True, inline="always")
def _row_bases(bases, x, y, lx, ly, lz):
    """Fill ``bases`` (9,) with the flat index of z = 0 of the rows (x + dx, y + dy), dx, dy in -1, 0, 1."""
    for a in range(3):
        xi = _wrap(x + a - 1, lx)
        for b in range(3):
            bases[3 * a + b] = (xi * ly + _wrap(y + b - 1, ly)) * lz


@njit(cache=True, inline="always")
def _site_delta(flat, bases, zm, z, zp, old, new):
    """ΔE of a site (id ``old``, rows ``bases``, z neighbours ``zm``, ``zp``) taking id ``new`` != old."""
    delta = -1  # the site itself is counted once below as equal to ``old``
    for r in range(9):
        base = bases[r]
        v0, v1, v2 = flat[base + zm], flat[base + z], flat[base + zp]
        delta += (np.int64(v0 == old) + np.int64(v1 == old) + np.int64(v2 == old)
                  - np.int64(v0 == new) - np.int64(v1 == new) - np.int64(v2 == new))
    return delta


@njit(cache=True)
def delta_energy(ids, x, y, z, new_id):
    """ΔE (int) of giving site (x, y, z) the id ``new_id``: #neighbours == old - #neighbours == new."""
    lx, ly, lz = ids.shape
    old = ids[x, y, z]
    if new_id == old:
        return 0
    bases = np.empty(9, dtype=np.int64)
    _row_bases(bases, x, y, lx, ly, lz)
    return _site_delta(ids.reshape(lx * ly * lz), bases, _wrap(z - 1, lz), z, _wrap(z + 1, lz), old, new_id)


@njit(cache=True)
def draw_limits(thresholds):
    """uint64 (27,): a site with m neighbours of another id draws a "distinct" proposal when its low 32 random bits are < entry m.

    ``thresholds``: :func:`acceptance_thresholds`. Entry 0 is 0 (nothing to propose); entry m is the
    threshold of the best case ΔE = 26 - 2m (every other neighbour sharing the proposal): at or
    above it Metropolis refuses any proposal, so the site is skipped with the same outcome.
    """
    limits = np.empty(27, dtype=np.uint64)
    limits[0] = 0
    for m in range(1, 27):
        limits[m] = thresholds[2 * MAX_DELTA - 2 * m]
    return limits


@njit(cache=True, inline="always")
def least_priority(blocks, words, n, best, copies):
    """The "distinct" rule's proposals of ``n`` sites at once (loops over sites, which vectorise).

    ``blocks`` (27, >= n) uint32: column j is the 3x3x3 block of ids around site j (flat order, the
    site at :data:`CENTRE`); ``words`` (>= n,) uint64: the sites' random words r. Every id v of the
    block other than the site's own gets the priority ``(hi32(mix(r, v)) << 32) | v``; ``best[:n]``
    receives the least (the proposal is its low 32 bits; :data:`NO_PRIORITY` when there is no
    other id) and ``copies[:n]`` the number of the 27 equal to the proposal. All copies of an id
    share one priority, so each distinct id wins with the same chance: the proposal is uniform over
    the distinct other ids, whatever their multiplicities (docs/design.md §5.3).
    """
    for j in range(n):
        best[j] = NO_PRIORITY
    for k in range(27):
        if k == CENTRE:
            continue
        for j in range(n):
            v = blocks[k, j]
            priority = (mix(words[j], v) & HIGH32) | np.uint64(v)
            best[j] = min(best[j], priority if v != blocks[CENTRE, j] else NO_PRIORITY)
    for j in range(n):
        copies[j] = 0
    for k in range(27):
        for j in range(n):
            copies[j] += np.int32(np.uint64(blocks[k, j]) == (best[j] & LOW32))


@njit(cache=True)
def propose_distinct(neighbourhood, r, thresholds):
    """(proposal, ΔE) of the "distinct" rule for the centre of a (3, 3, 3) id block, random word ``r`` (uint64).

    ``thresholds``: :func:`acceptance_thresholds`; the proposal is the centre's own id when the
    site is skipped (no other id around, or Metropolis would refuse any proposal).
    """
    blocks = np.ascontiguousarray(neighbourhood).reshape(27, 1)
    old = blocks[CENTRE, 0]
    others = 0
    for k in range(27):
        others += np.int64(blocks[k, 0] != old)
    r = np.uint64(r)
    if (r & LOW32) >= draw_limits(thresholds)[others]:
        return old, 0
    words = np.full(1, r, dtype=np.uint64)
    best = np.empty(1, dtype=np.uint64)
    copies = np.empty(1, dtype=np.int32)
    least_priority(blocks, words, 1, best, copies)
    return blocks.dtype.type(best[0] & LOW32), (26 - others) - np.int64(copies[0])


@njit(cache=True, parallel=True)
def _neighbour_pass(ids, seed, mcs, sub, thresholds, trial_offsets):
    """One pass of the "neighbour" rule over sub-lattice ``sub`` (in place); returns (ΔE total, flips) as int64.

    ``trial_offsets`` is :data:`TRIAL_OFFSETS`. Parallel over x planes; sites of one sub-lattice
    never neighbour each other.
    """
    lx, ly, lz = ids.shape
    flat = ids.reshape(lx * ly * lz)
    px, py, pz = (sub >> 2) & 1, (sub >> 1) & 1, sub & 1
    key = sublattice_key(seed, mcs, sub)
    n_trial = np.uint64(trial_offsets.shape[0])
    trial_row = np.empty(trial_offsets.shape[0], dtype=np.int64)  # which of the 9 rows
    trial_dz = np.empty(trial_offsets.shape[0], dtype=np.int64)
    for k in range(trial_offsets.shape[0]):
        trial_row[k] = 3 * (trial_offsets[k, 0] + 1) + trial_offsets[k, 1] + 1
        trial_dz[k] = trial_offsets[k, 2]
    energy_change = 0
    flips = 0
    for hx in prange(lx // 2):
        x = 2 * hx + px
        bases = np.empty(9, dtype=np.int64)
        for y in range(py, ly, 2):
            _row_bases(bases, x, y, lx, ly, lz)
            centre = bases[4]
            for z in range(pz, lz, 2):
                site = centre + z
                old = flat[site]
                r = mix(key, np.uint64(site))
                zm = z - 1 if z > 0 else lz - 1
                zp = z + 1 if z < lz - 1 else 0
                k = ((r >> S32) * n_trial) >> S32
                dz = trial_dz[k]
                new = flat[bases[trial_row[k]] + (zm if dz < 0 else (zp if dz > 0 else z))]
                if new == old:
                    continue
                delta = _site_delta(flat, bases, zm, z, zp, old, new)
                if delta <= 0 or (r & LOW32) < thresholds[delta + MAX_DELTA]:
                    flat[site] = new
                    energy_change += delta
                    flips += 1
    return energy_change, flips


@njit(cache=True, inline="always")
def _apply_batch(flat, n, blocks, words, sites, others, best, copies, thresholds):
    """Propose (:func:`least_priority`) and Metropolis-test ``n`` gathered sites; returns (ΔE, flips).

    ``sites`` (>= n,): flat indices; ``others`` (>= n,): each site's neighbours of another id.
    """
    least_priority(blocks, words, n, best, copies)
    energy_change = 0
    flips = 0
    for j in range(n):
        delta = (26 - others[j]) - copies[j]
        if delta <= 0 or (words[j] & LOW32) < thresholds[delta + MAX_DELTA]:
            flat[sites[j]] = flat.dtype.type(best[j] & LOW32)
            energy_change += delta
            flips += 1
    return energy_change, flips


@njit(cache=True, parallel=True)
def _distinct_pass(ids, seed, mcs, sub, thresholds):
    """One pass of the "distinct" rule over sub-lattice ``sub`` (in place); returns (ΔE total, flips) as int64.

    Parallel over x planes. Row (x, y) by row: the 9 lattice rows around it are copied with their
    periodic z ends, the neighbours of another id are counted for every z at once, and the sites
    that draw (:func:`draw_limits`) are gathered, with their 3x3x3 blocks, into a batch of up to
    :data:`DISTINCT_BATCH` sites, proposed and tested together when it is full or the plane is
    done. Deferring is exact: no two sites of a sub-lattice are neighbours, so no site of a batch
    reads an id that the pass writes.
    """
    lx, ly, lz = ids.shape
    flat = ids.reshape(lx * ly * lz)
    px, py, pz = (sub >> 2) & 1, (sub >> 1) & 1, sub & 1
    key = sublattice_key(seed, mcs, sub)
    limits = draw_limits(thresholds)
    energy_change = 0
    flips = 0
    for hx in prange(lx // 2):
        x = 2 * hx + px
        bases = np.empty(9, dtype=np.int64)
        rows = np.empty((9, lz + 2), dtype=ids.dtype)  # row r's z = -1 .. lz at 0 .. lz + 1
        row_others = np.empty(lz, dtype=np.int32)
        row_words = np.empty(lz // 2, dtype=np.uint64)
        blocks = np.empty((27, DISTINCT_BATCH), dtype=ids.dtype)
        words = np.empty(DISTINCT_BATCH, dtype=np.uint64)
        sites = np.empty(DISTINCT_BATCH, dtype=np.int64)
        others = np.empty(DISTINCT_BATCH, dtype=np.int32)
        best = np.empty(DISTINCT_BATCH, dtype=np.uint64)
        copies = np.empty(DISTINCT_BATCH, dtype=np.int32)
        n = 0
        for y in range(py, ly, 2):
            _row_bases(bases, x, y, lx, ly, lz)
            for row in range(9):
                base = bases[row]
                rows[row, 1:lz + 1] = flat[base:base + lz]
                rows[row, 0] = flat[base + lz - 1]
                rows[row, lz + 1] = flat[base]
            for z in range(lz):  # every z, both parities: unit strides vectorise
                count = 0
                for row in range(9):
                    for d in range(3):
                        count += np.int32(rows[row, z + d] != rows[4, z + 1])
                row_others[z] = count
            first_site = bases[4] + pz
            for i in range(lz // 2):
                row_words[i] = mix(key, np.uint64(first_site + 2 * i))
            for i in range(lz // 2):
                z = pz + 2 * i
                if (row_words[i] & LOW32) >= limits[row_others[z]]:
                    continue
                for row in range(9):
                    for d in range(3):
                        blocks[3 * row + d, n] = rows[row, z + d]
                words[n] = row_words[i]
                sites[n] = first_site + 2 * i
                others[n] = row_others[z]
                n += 1
                if n == DISTINCT_BATCH:
                    d_e, f = _apply_batch(flat, n, blocks, words, sites, others, best, copies, thresholds)
                    energy_change += d_e
                    flips += f
                    n = 0
        d_e, f = _apply_batch(flat, n, blocks, words, sites, others, best, copies, thresholds)
        energy_change += d_e
        flips += f
    return energy_change, flips


def sweep_sublattice(ids: np.ndarray, seed: int, mcs: int, sub: int, thresholds: np.ndarray,
                     distinct: bool = False) -> tuple[int, int]:
    """Update every site of sub-lattice ``sub`` (0..7) once, in place; returns (ΔE, flips).

    ``distinct`` selects the "distinct" trial rule instead of "neighbour".
    """
    if distinct:
        energy_change, flips = _distinct_pass(ids, seed, mcs, sub, thresholds)
    else:
        energy_change, flips = _neighbour_pass(ids, seed, mcs, sub, thresholds, TRIAL_OFFSETS)
    return int(energy_change), int(flips)


def sweep(ids: np.ndarray, seed: int, mcs: int, thresholds: np.ndarray, distinct: bool = False) -> tuple[int, int]:
    """One Monte Carlo step (the 8 sub-lattices in order 0..7), in place; returns (ΔE, flips)."""
    energy_change = flips = 0
    for sub in range(8):
        d_e, n = sweep_sublattice(ids, seed, mcs, sub, thresholds, distinct)
        energy_change += d_e
        flips += n
    return energy_change, flips


@njit(cache=True, parallel=True)
def total_energy(ids, forward_offsets):
    """Number of unlike 26-neighbour pairs (each once) of a periodic volume; ``forward_offsets`` = FORWARD_OFFSETS."""
    lx, ly, lz = ids.shape
    energy = 0
    for x in prange(lx):
        for y in range(ly):
            for z in range(lz):
                v = ids[x, y, z]
                for k in range(forward_offsets.shape[0]):
                    w = ids[_wrap(x + forward_offsets[k, 0], lx), _wrap(y + forward_offsets[k, 1], ly),
                            _wrap(z + forward_offsets[k, 2], lz)]
                    energy += np.int64(v != w)
    return energy


@njit(cache=True, parallel=True)
def count_ids(ids, marker):
    """Number of distinct ids in ``ids``; ``marker`` is a zeroed uint8 scratch of length > max id (left zeroed)."""
    lx, ly, lz = ids.shape
    for x in prange(lx):
        for y in range(ly):
            for z in range(lz):
                marker[ids[x, y, z]] = 1  # concurrent writes store the same value
    count = 0
    for i in prange(marker.shape[0]):
        if marker[i]:
            count += 1
            marker[i] = 0
    return count


@njit(cache=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def count_periodic_components(section):
    """Number of 4-connected regions of equal id in a 2D id map with periodic wrap (union-find)."""
    h, w = section.shape
    parent = np.arange(h * w)
    for i in range(h):
        for j in range(w):
            here = i * w + j
            for ni, nj in ((i, (j + 1) % w), ((i + 1) % h, j)):
                if section[ni, nj] == section[i, j]:
                    a, b = _find(parent, here), _find(parent, ni * w + nj)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    count = 0
    for k in range(h * w):
        count += np.int64(parent[k] == k)
    return count
