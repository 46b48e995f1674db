"""The Potts sweep of :mod:`grainforge.potts.kernel` in torch, vectorised over a sub-lattice (docs/design.md §5.10).

The rule is the numba kernel's, operation for operation: the 8 sub-lattices in order 0..7, the
26-neighbour ΔE, the "neighbour" trial from the 18 first+second neighbours (:data:`kernel.TRIAL_OFFSETS`
order), Metropolis through the same uint32 thresholds and the same counter-based random numbers
(splitmix64 of the site's flat index), so a run gives the numba volume bit for bit on any device.

- The lattice lives on the device as int32 (the uint32 ids reinterpreted bit for bit; only
  equality matters) with a one-site periodic halo, shape (Lx + 2, Ly + 2, Lz + 2): the 26
  neighbours of a sub-lattice are then strided views, with no copies; the halo is refreshed (six
  plane copies) after each sub-lattice pass.
- torch has no unsigned 64-bit arithmetic, so splitmix64 runs in int64: additions and products
  wrap modulo 2**64 in two's complement exactly like uint64, and a logical right shift is an
  arithmetic shift followed by a mask.
- ΔE and flips are summed on the device. Nothing in a step waits for the device (no ``.item()``,
  no data-dependent shapes), so CUDA runs the 8 passes of a step without a host sync.
"""

from __future__ import annotations

import numpy as np
import torch

from grainforge.potts import kernel

_WORD = 2**64
_GOLDEN = int(kernel.GOLDEN) - _WORD  # the uint64 constants as the int64 with the same bits
_MIX1 = int(kernel.MIX1) - _WORD
_MIX2 = int(kernel.MIX2) - _WORD
_LOW32 = 0xFFFFFFFF
_HIGH32 = -(2**32)  # 0xFFFFFFFF00000000 as int64
_SIGN = -(2**63)  # flipping it makes signed int64 order the uint64 order
_INT64_MAX = 2**63 - 1
COUNT_CHUNK_SITES = 2**24  # sites per slab of TorchLattice.count_ids (its int64 index: 128 MiB)
BYTES_PER_SITE = 56  # peak memory of a run per site, either rule (measured on the CPU as resident-set growth
# from 64^3 to 192^3: neighbour 41, distinct 43; the sub-lattice temporaries dominate)


def _signed(value: int) -> int:
    """The int64 with the bits of the uint64 ``value``."""
    value = int(value)
    return value - _WORD if value >= 2**63 else value


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 ``z`` seen as uint64."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix(key: int | torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """:func:`grainforge.potts.kernel.mix` with int64 tensors holding uint64 bits; a Python int ``key`` is taken as uint64."""
    key = key if isinstance(key, torch.Tensor) else _signed(key)
    z = (counter + 1) * _GOLDEN + key
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def check_memory(shape: tuple[int, int, int], device: torch.device) -> int:
    """Refuse (UserError) a lattice whose torch run needs more memory than ``device`` has free; returns the estimate.

    Free memory: ``torch.cuda.mem_get_info`` on CUDA, else what the process may still use
    (:func:`grainforge.potts.driver.available_memory_bytes`).
    """
    import math

    from grainforge.errors import UserError
    from grainforge.potts.driver import available_memory_bytes

    needed = BYTES_PER_SITE * math.prod(shape)
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else available_memory_bytes()
    if free is not None and needed > free:
        size = "x".join(map(str, shape))
        raise UserError(f"size {size}: the torch backend needs about {needed / 2**30:.1f} GiB on {device} but "
                        f"{free / 2**30:.1f} GiB is free; use a smaller size (or backend numba on the CPU)")
    return needed


class TorchLattice:
    """A Potts lattice on a torch device, swept like :func:`grainforge.potts.kernel.sweep`.

    Parameters
    ----------
    ids : numpy.ndarray
        uint32 (Lx, Ly, Lz) grain ids, every side even (copied to the device).
    kT : float
        Temperature in units of J.
    device : torch.device
        Where the lattice and every step live.
    distinct : bool, optional
        The "distinct" trial rule (:func:`grainforge.potts.kernel.least_priority`) instead of "neighbour".
    """

    def __init__(self, ids: np.ndarray, kT: float, device: torch.device, distinct: bool = False) -> None:
        self.shape = tuple(int(n) for n in ids.shape)
        self.device = device
        self.distinct = distinct
        lx, ly, lz = self.shape
        self.padded = torch.empty((lx + 2, ly + 2, lz + 2), dtype=torch.int32, device=device)
        self.padded[1:-1, 1:-1, 1:-1] = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.uint32).view(np.int32))
        self._refresh_halo()
        thresholds = kernel.acceptance_thresholds(kT)
        self.thresholds = torch.from_numpy(thresholds.astype(np.int64)).to(device)
        self.draw_limits = torch.from_numpy(kernel.draw_limits(thresholds).astype(np.int64)).to(device)
        stride_x, stride_y = (ly + 2) * (lz + 2), lz + 2
        self.trial_steps = torch.tensor([int(dx) * stride_x + int(dy) * stride_y + int(dz)
                                         for dx, dy, dz in kernel.TRIAL_OFFSETS], dtype=torch.int64, device=device)
        self.n_sites = lx * ly * lz

    def _refresh_halo(self) -> None:
        """Copy the periodic images into the one-site halo, axis by axis (edges and corners included)."""
        p = self.padded
        p[0], p[-1] = p[-2], p[1]
        p[:, 0], p[:, -1] = p[:, -2], p[:, 1]
        p[:, :, 0], p[:, :, -1] = p[:, :, -2], p[:, :, 1]

    def _view(self, parity: tuple[int, int, int], offset: tuple[int, int, int]) -> torch.Tensor:
        """The (Lx/2, Ly/2, Lz/2) strided view of the sites of ``parity`` moved by ``offset``."""
        return self.padded[tuple(slice(1 + p + d, 1 + n + d, 2) for p, d, n in zip(parity, offset, self.shape))]

    def sweep_sublattice(self, seed: int, mcs: int, sub: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Update every site of sub-lattice ``sub`` once; returns (ΔE, flips) as int64 device scalars."""
        lx, ly, lz = self.shape
        parity = ((sub >> 2) & 1, (sub >> 1) & 1, sub & 1)
        arange = [torch.arange(p, n, 2, dtype=torch.int64, device=self.device) for p, n in zip(parity, self.shape)]
        x, y, z = arange[0][:, None, None], arange[1][None, :, None], arange[2][None, None, :]
        r = mix(int(kernel.sublattice_key(seed, mcs, sub)), (x * ly + y) * lz + z)
        site = self._view(parity, (0, 0, 0))
        old = site.clone()
        if self.distinct:
            new, delta, tried = self._propose_distinct(parity, old, r)
        else:
            choice = (_shift_right(r, 32) * len(self.trial_steps)) >> 32
            padded_index = ((x + 1) * (ly + 2) + (y + 1)) * (lz + 2) + (z + 1)
            new = torch.take(self.padded, padded_index + self.trial_steps[choice])
            same_old = torch.zeros(old.shape, dtype=torch.int8, device=self.device)
            same_new = torch.zeros_like(same_old)
            for offset in kernel.ALL_OFFSETS:
                neighbour = self._view(parity, tuple(int(d) for d in offset))
                same_old.add_(neighbour == old)
                same_new.add_(neighbour == new)
            delta = same_old.to(torch.int64) - same_new.to(torch.int64)
            tried = new != old
        accept = tried & ((r & _LOW32) < self.thresholds[delta + kernel.MAX_DELTA])
        site.copy_(torch.where(accept, new, old))
        self._refresh_halo()
        return (delta * accept).sum(), accept.sum()

    def _propose_distinct(self, parity: tuple[int, int, int], old: torch.Tensor,
                          r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The "distinct" rule of :func:`grainforge.potts.kernel.least_priority`, site for site.

        Returns (proposal, ΔE, tried): ``tried`` is False where the numba kernel skips the site
        (:func:`kernel.draw_limits`). The priorities ``(hi32(mix(r, v)) << 32) | v`` are compared as
        uint64 through int64 with the sign bit flipped; one pass over the 26 neighbours keeps the
        least, a second counts the proposal's copies.
        """
        neighbours = [self._view(parity, tuple(int(d) for d in offset)) for offset in kernel.ALL_OFFSETS]
        others = torch.zeros(old.shape, dtype=torch.int8, device=self.device)
        least = torch.full(old.shape, _INT64_MAX, dtype=torch.int64, device=self.device)  # flipped NO_PRIORITY
        for neighbour in neighbours:
            other = neighbour != old
            others.add_(other)
            v = neighbour.to(torch.int64) & _LOW32
            priority = (mix(r, v) & _HIGH32) | v
            least = torch.minimum(least, torch.where(other, priority ^ _SIGN, _INT64_MAX))
        low = (least ^ _SIGN) & _LOW32
        new = ((low ^ 2**31) - 2**31).to(torch.int32)  # the uint32 id as the int32 with its bits
        copies = torch.zeros_like(others)
        for neighbour in neighbours:
            copies.add_(neighbour == new)
        others = others.to(torch.int64)
        tried = (r & _LOW32) < self.draw_limits[others]
        return new, (kernel.MAX_DELTA - others) - copies.to(torch.int64), tried

    def sweep(self, seed: int, mcs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One Monte Carlo step (sub-lattices 0..7); returns (ΔE, flips) as int64 device scalars, without a host sync."""
        energy_change = torch.zeros((), dtype=torch.int64, device=self.device)
        flips = torch.zeros_like(energy_change)
        for sub in range(8):
            d_e, n = self.sweep_sublattice(seed, mcs, sub)
            energy_change += d_e
            flips += n
        return energy_change, flips

    def count_ids(self) -> int:
        """Number of distinct ids (ids < sites, as in a run); syncs with the device.

        A scatter into a marker of one byte per site, slab by slab along x so the int64 index
        stays at most :data:`COUNT_CHUNK_SITES` long.
        """
        marker = torch.zeros(self.n_sites, dtype=torch.bool, device=self.device)
        lx, ly, lz = self.shape
        step = max(1, COUNT_CHUNK_SITES // (ly * lz))
        for x in range(1, lx + 1, step):
            slab = self.padded[x:min(x + step, lx + 1), 1:-1, 1:-1]
            marker[slab.reshape(-1).to(torch.int64) & _LOW32] = True
        return int(marker.sum())

    def to_numpy(self) -> np.ndarray:
        """The uint32 (Lx, Ly, Lz) ids on the host (a copy)."""
        return self.padded[1:-1, 1:-1, 1:-1].cpu().numpy().view(np.uint32).copy()
