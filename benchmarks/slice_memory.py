"""Peak memory of ``slice`` on a chunked volume (docs/design.md §5.8; issue 11 item 3).

Synthetic input, no data files needed: a Voronoi grain volume of --size^3 voxels (uint32, ~20 voxel
grains) written to ``volume.zarr`` one 64-plane slab at a time (never whole in memory). Then, in
this process, after a warm-up slice of a small volume (imports, numba compilation), the kernel's
peak-RSS counter is reset (/proc/self/clear_refs, Linux) and ``slice_run`` cuts sections normal to
x, y and z. The figure is the peak resident memory above the warmed-up process's, against the
volume's size (the goal: at most a quarter). Reference in the same run (unless --no-reference):
the same slice of the same volume stored as a legacy ``volume.npz``, which is read whole.
Also printed: the peak memory of ``export --format vti`` and ``stats --volume`` of the same volume.

    .venv/bin/python benchmarks/slice_memory.py [--size 512] [--stride 16] [--no-reference]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import grainforge  # noqa: F401  (first: sets OMP_WAIT_POLICY)
from grainforge.data.io import write_npz
from grainforge.export import export_volume
from grainforge.sections import slice_run
from grainforge.volume import CHUNK_SIDE, create_volume, read_volume
from grainforge.volumestats import stats_volume

MiB = 2**20


def write_voronoi_volume(run: Path, size: int, grain_voxels: int = 8000, seed: int = 0) -> None:
    """A Voronoi grain-id volume (size^3, ~``grain_voxels`` voxels per grain) written slab by slab."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    tree = cKDTree(rng.uniform(0, size, (max(1, size**3 // grain_voxels), 3)))
    yz = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij"), axis=-1).reshape(-1, 2)
    with create_volume(run, (size,) * 3) as array:
        for x0 in range(0, size, CHUNK_SIDE):
            planes = []
            for x in range(x0, min(x0 + CHUNK_SIDE, size)):
                points = np.column_stack([np.full(len(yz), x + 0.5), yz])
                planes.append(tree.query(points)[1].reshape(size, size).astype(np.uint32))
            array[x0:x0 + len(planes)] = np.stack(planes)


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_above_baseline(function) -> tuple[float, float]:
    """(peak RSS above the RSS before the call, seconds) of ``function()``, in MiB."""
    baseline = status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM, the peak RSS, to the current RSS
    start = time.perf_counter()
    function()
    return (status_kib("VmHWM") - baseline) / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--no-reference", action="store_true", help="skip the legacy volume.npz reference")
    args = parser.parse_args()
    volume_mib = args.size**3 * 4 / MiB
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        write_voronoi_volume(tmp / "run", args.size)
        print(f"built {args.size}^3 Voronoi volume.zarr ({volume_mib:.0f} MiB as uint32) in {time.perf_counter() - start:.0f} s")
        write_voronoi_volume(tmp / "warm", 32)
        slice_run(tmp / "warm", tmp / "warm-out", stride=8, progress=False)  # imports and numba compilation
        export_volume(tmp / "warm", "vti", progress=False)
        stats_volume(tmp / "warm", tmp / "warm-stats", progress=False)  # imports matplotlib
        peak, seconds = peak_above_baseline(
            lambda: slice_run(tmp / "run", tmp / "out", stride=args.stride, progress=False))
        images = len(list((tmp / "out" / "labels").iterdir()))
        print(f"slice {args.size}^3 volume.zarr (xyz, stride {args.stride}, {images} images, {seconds:.0f} s): "
              f"peak memory {peak:.0f} MiB above the warmed-up process = {peak / volume_mib:.3f} of the volume "
              f"({'within' if peak <= volume_mib / 4 else 'ABOVE'} the goal of 1/4)")
        for name, job in (("export --format vti", lambda: export_volume(tmp / "run", "vti", progress=False)),
                          ("stats --volume", lambda: stats_volume(tmp / "run", tmp / "stats", progress=False))):
            job_peak, seconds = peak_above_baseline(job)
            print(f"{name} of the same volume ({seconds:.0f} s): peak memory {job_peak:.0f} MiB above baseline "
                  f"= {job_peak / volume_mib:.3f} of the volume")
        if not args.no_reference:
            write_npz(tmp / "legacy" / "volume.npz", ids=read_volume(tmp / "run"))
            reference, seconds = peak_above_baseline(
                lambda: slice_run(tmp / "legacy", tmp / "legacy-out", stride=args.stride, progress=False))
            print(f"reference, the same slice of a legacy volume.npz (read whole, {seconds:.0f} s): peak {reference:.0f} MiB "
                  f"= {reference / volume_mib:.3f} of the volume; zarr streaming uses {peak / reference:.2f}x of it")


if __name__ == "__main__":
    main()
