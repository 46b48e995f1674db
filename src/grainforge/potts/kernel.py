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
  ``r = mix(sublattice_key(seed, mcs, sub), i)`` (splitmix64). The high 32 bits choose the
  trial neighbour (``(hi * n) >> 32``), the low 32 bits decide acceptance
  (``lo < threshold[ΔE]``). No random state is carried, so any thread count gives the same volume.
- Threads wait passively at the 8 barriers of a step: ``grainforge/__init__`` sets
  ``OMP_WAIT_POLICY=PASSIVE`` (spinning made a 2-thread sweep ~20x slower on a loaded machine).
- Proposal "neighbour" (the paper's): the id of one of the 18 first+second neighbours
  (:data:`TRIAL_OFFSETS`, in that order). Proposal "distinct" (SPPARKS potts/neigh): one of the
  distinct ids other than the site's own among its 26 neighbours, uniformly, drawn in O(26) by
  rejection (:func:`_propose_distinct`). A proposal equal to the current id, or a site with no
  other id around, is skipped.
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
MAX_DELTA = 26
DISTINCT_ROUNDS = 4  # rejection rounds of the "distinct" rule before its direct draw (docs/design.md §5.3)
UNKNOWN = np.uint8(255)  # an entry of the "distinct" rule's neighbour-count cache: not known
NO_CACHE = np.empty(0, dtype=np.uint8)


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


@njit(cache=True, inline="always")
def _position(values, v, stop):
    """Index of the first ``v`` in ``values[:stop]``; ``stop`` when there is none."""
    for k in range(stop):
        if values[k] == v:
            return k
    return stop


@njit(cache=True, inline="always")
def _count(values, v, stop):
    """Number of ``v`` in ``values[:stop]`` (branch-free)."""
    count = 0
    for k in range(stop):
        count += np.int64(values[k] == v)
    return count


@njit(cache=True, inline="always")
def _count_and_earlier(values, stop, j):
    """(number of ``values[j]`` in ``values[:stop]``, how many of them stand before slot ``j``), branch-free."""
    v = values[j]
    count = 0
    earlier = 0
    for k in range(stop):
        same = np.int64(values[k] == v)
        count += same
        earlier += same * np.int64(k < j)
    return count, earlier


@njit(cache=True, inline="always")
def _refused_others(r, thresholds):
    """The most other-id neighbours (0..12) with which Metropolis refuses even the best case with word ``r``.

    With m others no proposal has ΔE below 26 - 2m; it is refused when the low 32 bits of ``r`` are
    >= the threshold of that ΔE, for every m <= the returned number.
    """
    refused = 12
    while refused > 0 and thresholds[26 - 2 * refused + MAX_DELTA] > (r & LOW32):
        refused -= 1
    return refused


@njit(cache=True, inline="always")
def _propose_distinct(flat, bases, zm, z, zp, old, r, refused, others, firsts):
    """(proposed id, ΔE, m) of the "distinct" rule in O(26); the proposal is ``old`` for a skipped site.

    ``others`` (27,) and ``firsts`` (26,) are scratch arrays. The ids != ``old`` of the 26 neighbours
    (in :data:`ALL_OFFSETS` order) go to ``others[:m]``. One id: it is the proposal. Otherwise, up
    to :data:`DISTINCT_ROUNDS` rounds draw a slot ``j`` uniformly from ``m`` (round t's word:
    ``r`` for t = 0, ``mix(r, t)`` after) and propose ``others[j]`` if slot j is that id's first
    appearance: each distinct id is proposed with probability 1/m per round, so an accepted
    proposal is uniform over the distinct ids. After :data:`DISTINCT_ROUNDS` misses the proposal
    is drawn directly from the list of first appearances with ``mix(r, DISTINCT_ROUNDS)`` -- also
    uniform, and cheap exactly when misses are likely (few distinct ids). ΔE comes from the same
    list: ``(26 - m) - #others equal to the proposal``. A site is skipped before any proposal is
    drawn when m <= ``refused`` (:func:`_refused_others`): Metropolis would refuse even the best
    case with its low 32 random bits, so the outcome is the same. The returned m is exact, or for
    a site skipped before its last neighbours were read, an upper bound.
    """
    m = 0
    for row in range(9):  # branch-free compaction (the site itself equals ``old`` and drops out)
        base = bases[row]
        v0, v1, v2 = flat[base + zm], flat[base + z], flat[base + zp]
        others[m] = v0
        m += np.int64(v0 != old)
        others[m] = v1
        m += np.int64(v1 != old)
        others[m] = v2
        m += np.int64(v2 != old)
        if 3 * (row + 1) - m >= 27 - refused:  # so many like the site that m <= refused is certain
            return old, 0, 24 - 3 * row + m
    if m <= refused:
        return old, 0, m
    j = ((r >> S32) * np.uint64(m)) >> S32  # round 0 first: with one other id any round gives it
    new = others[j]
    copies, earlier = _count_and_earlier(others, m, j)
    if earlier:
        new = others[0]
        copies = _count(others, new, m)
        if copies < m:
            new = old
            for t in range(1, DISTINCT_ROUNDS):
                j = ((mix(r, t) >> S32) * np.uint64(m)) >> S32
                copies, earlier = _count_and_earlier(others, m, j)
                if not earlier:
                    new = others[j]
                    break
        if new == old:
            n = 0
            for k in range(m):
                firsts[n] = others[k]
                n += np.int64(_position(firsts, others[k], n) == n)
            new = firsts[((mix(r, DISTINCT_ROUNDS) >> S32) * np.uint64(n)) >> S32]
            copies = _count(others, new, m)
    return new, (26 - m) - copies, m


@njit(cache=True)
def propose_distinct(neighbourhood, r, thresholds):
    """(proposal, ΔE) of the "distinct" rule for the centre of a (3, 3, 3) id block, random word ``r`` (uint64).

    ``thresholds``: :func:`acceptance_thresholds`; the proposal is the centre's own id when the
    site is skipped (no other id around, or Metropolis would refuse any proposal).
    """
    flat = np.ascontiguousarray(neighbourhood).reshape(27)
    bases = np.arange(0, 27, 3)
    others = np.empty(27, dtype=flat.dtype)
    firsts = np.empty(26, dtype=flat.dtype)
    r = np.uint64(r)
    new, delta, _ = _propose_distinct(flat, bases, 0, 1, 2, flat[13], r, _refused_others(r, thresholds), others, firsts)
    return new, delta


@njit(cache=True, parallel=True)
def sweep_sublattice(ids, seed, mcs, sub, thresholds, trial_offsets, distinct, others_known):
    """Update every site of sub-lattice ``sub`` once (in place); returns (ΔE total, flips) as int64.

    ``trial_offsets`` is :data:`TRIAL_OFFSETS`; ``distinct`` selects the "distinct" rule, and
    ``others_known`` (:func:`new_others_known`, or an empty array: none) caches its neighbour counts.
    Parallel over x planes; sites of one sub-lattice never neighbour each other.
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
    use_known = others_known.shape[0] > 0
    energy_change = 0
    flips = 0
    for hx in prange(lx // 2):
        x = 2 * hx + px
        bases = np.empty(9, dtype=np.int64)
        others = np.empty(27, dtype=ids.dtype)
        firsts = np.empty(26, dtype=ids.dtype)
        for y in range(py, ly, 2):
            _row_bases(bases, x, y, lx, ly, lz)
            centre = bases[4]
            for z in range(pz, lz, 2):
                site = centre + z
                old = flat[site]
                r = mix(key, np.uint64(site))
                zm = z - 1 if z > 0 else lz - 1
                zp = z + 1 if z < lz - 1 else 0
                if distinct:
                    refused = _refused_others(r, thresholds)
                    if use_known and others_known[site] <= refused:
                        continue  # no neighbour changed since m was counted, and Metropolis refuses that m
                    new, delta, m = _propose_distinct(flat, bases, zm, z, zp, old, r, refused, others, firsts)
                    if use_known:
                        others_known[site] = m  # only this thread writes this site's entry in this pass
                    if new == old:
                        continue
                else:
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
                    if use_known:  # the site and its 26 neighbours: m unknown (threads may write the same 255)
                        for row in range(9):
                            base = bases[row]
                            others_known[base + zm] = UNKNOWN
                            others_known[base + z] = UNKNOWN
                            others_known[base + zp] = UNKNOWN
    return energy_change, flips


def new_others_known(n_sites: int) -> np.ndarray:
    """A cache for the "distinct" rule across steps: uint8 (n_sites,), every entry unknown.

    Entry i is an upper bound on the number of site i's neighbours with another id, or
    :data:`UNKNOWN` after the site or a neighbour flipped. A site whose bound Metropolis refuses
    is skipped without reading its neighbours; late in a run most sites are. It never changes a
    result, only the time to get it (1 byte per site), as long as the ids change only through
    :func:`sweep` with this cache: start a new one for other ids (a resumed run, another lattice).
    """
    return np.full(n_sites, UNKNOWN, dtype=np.uint8)


def sweep(ids: np.ndarray, seed: int, mcs: int, thresholds: np.ndarray, distinct: bool = False,
          others_known: np.ndarray | None = None) -> tuple[int, int]:
    """One Monte Carlo step (the 8 sub-lattices in order 0..7), in place; returns (ΔE, flips).

    ``others_known``: the "distinct" rule's cache (:func:`new_others_known`), kept between steps of a run.
    """
    others_known = NO_CACHE if others_known is None else others_known
    energy_change = flips = 0
    for sub in range(8):
        d_e, n = sweep_sublattice(ids, seed, mcs, sub, thresholds, TRIAL_OFFSETS, distinct, others_known)
        energy_change += d_e
        flips += n
    return int(energy_change), int(flips)


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
