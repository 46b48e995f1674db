"""The built-in virtual optical microscope (docs/design.md §12): demo grain maps and etched-micrograph rendering.

- :func:`voronoi_grains` makes a 2D grain map independent of the Potts engine: a Laguerre (power)
  tessellation of Lloyd-relaxed seeds with log-normal radii, whose coordinates are warped by a smooth
  random displacement field so that boundaries curve.
- :func:`render` turns any grain map (ids, or a bool boundary map) into a plausible etched
  micrograph: bright grains with per-grain grey levels, dark boundaries of varying width and depth,
  under-etched (missing) boundary stretches, dark junction blobs, pits, polishing scratches, uneven
  illumination, blur and noise. Every effect is a :class:`MicroscopeParams` field with a documented range.
- :func:`make_demo_data` writes a labelled demo data set (the stand-in for real data in ``make demo``).

Images are float32 (H, W) in [0, 1]; labels are the true 1-pixel closed boundaries
(:func:`grainforge.grains.boundary_from_ids`), including under-etched stretches.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import expit
from scipy.spatial import cKDTree

from grainforge.data.io import to_uint8
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids, label_grains

DEFAULT_MEAN_AREA_PX = 1600.0
"""Default mean grain (cell) area, px: a 512 x 512 image shows about 180 grains, cut ones included
(real micrographs: tens to hundreds of px per grain)."""


def _param(default: float, lo: float, hi: float, doc: str):
    """A MicroscopeParams field: default value, documented range [lo, hi] (used by random_params)."""
    return field(default=default, metadata={"range": (lo, hi), "doc": doc})


@dataclass(frozen=True)
class MicroscopeParams:
    """Every rendering effect, with its range. Grey levels are fractions of full scale (0 = black, 1 = white).

    Defaults look like etched ferrite in bright field (dark thin lines on bright grains). Documented
    (and tested) grey levels at the defaults: grain median (pixels >= 4 px from a boundary) 0.80-0.98,
    boundary-pixel median at least 0.25 below it (benchmarks/demo_data.py: grains 0.93, line cores
    0.48, against 0.94 and 0.53 on the NIST etched-steel micrograph). Values outside a field's range
    raise UserError; :func:`random_params` draws every field uniformly over its range. The fields after
    ``noise`` are neutral at their defaults, so the defaults render exactly as before they existed.
    """

    grain_level: float = _param(0.93, 0.55, 0.97, "mean grain grey level")
    grain_contrast: float = _param(0.025, 0.0, 0.15, "std of per-grain grey offsets (etch/orientation contrast)")
    grain_mottle: float = _param(0.01, 0.0, 0.05, "amplitude of smooth mottling inside grains")
    boundary_depth: float = _param(0.62, 0.25, 0.85, "fraction of light absorbed at a boundary's centre line")
    boundary_depth_variation: float = _param(0.30, 0.0, 0.6, "relative variation of depth along boundaries")
    boundary_width_px: float = _param(0.8, 0.5, 2.0, "Gaussian half-width (sigma) of a boundary line, px")
    boundary_width_variation: float = _param(0.35, 0.0, 0.6, "relative variation of width along boundaries")
    missing_fraction: float = _param(0.06, 0.0, 0.30, "fraction of boundary length that is under-etched (faint)")
    missing_residual: float = _param(0.15, 0.0, 0.5, "depth left on under-etched stretches, relative")
    junction_blob_fraction: float = _param(0.10, 0.0, 0.35, "fraction of triple junctions with a dark blob")
    junction_blob_radius_px: float = _param(2.5, 1.0, 5.0, "mean radius of junction blobs, px")
    pit_density: float = _param(0.8, 0.0, 3.0, "dark pits/inclusions per 10^4 px")
    pit_radius_px: float = _param(1.0, 0.5, 2.5, "mean pit radius, px")
    pit_depth: float = _param(0.6, 0.2, 0.9, "fraction of light absorbed at a pit's centre")
    scratch_rate: float = _param(1.0, 0.0, 6.0, "mean number of polishing scratches per 512 x 512 px (Poisson)")
    scratch_depth: float = _param(0.30, 0.05, 0.6, "fraction of light absorbed on a scratch line")
    scratch_width_px: float = _param(0.7, 0.4, 1.5, "Gaussian half-width of a scratch, px")
    scratch_curved_fraction: float = _param(0.3, 0.0, 1.0, "probability that a scratch is a curved arc")
    illumination: float = _param(0.08, 0.0, 0.25, "relative amplitude of uneven illumination")
    illumination_scale: float = _param(0.8, 0.3, 1.5, "length scale of the illumination field, x image size")
    blur_px: float = _param(0.7, 0.3, 1.5, "optical blur (Gaussian sigma), px")
    noise: float = _param(0.015, 0.0, 0.05, "std of additive Gaussian noise")
    # Harder effects, neutral by default (the "easy" look); the "hard" preset draws them per image.
    missing_length_px: float = _param(30.0, 10.0, 150.0,
                                      "correlation length of the under-etched pattern, px (longer = longer faint stretches)")
    illumination_gradient: float = _param(0.0, 0.0, 0.6, "peak-to-peak relative brightness change of a linear illumination ramp")
    vignetting: float = _param(0.0, 0.0, 0.6, "relative darkening at the image corners (quadratic radial fall-off)")
    contrast: float = _param(1.0, 0.3, 1.0, "global contrast: grey levels pulled towards grain_level by this factor (1 = none)")
    twin_fraction: float = _param(0.0, 0.0, 0.6, "fraction of grains crossed by a straight twin band (not in the label)")
    twin_contrast: float = _param(0.06, 0.0, 0.15, "grey-level offset (+ or -) of a twin band from its grain")
    twin_line_depth: float = _param(0.3, 0.0, 0.6, "fraction of light absorbed on a twin band's two straight edges")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            lo, hi = f.metadata["range"]
            value = getattr(self, f.name)
            if not lo <= value <= hi:
                raise UserError(f"MicroscopeParams.{f.name}={value} is outside its range [{lo}, {hi}]; choose a value in it")


PARAM_RANGES: dict[str, tuple[float, float]] = {f.name: f.metadata["range"] for f in dataclasses.fields(MicroscopeParams)}

HARD_RANGES: dict[str, tuple[float, ...]] = {
    "grain_level": (0.55, 0.95),
    "grain_contrast": (0.02, 0.1),
    "grain_mottle": (0.005, 0.03),
    "boundary_depth": (0.4, 0.8),
    "boundary_depth_variation": (0.2, 0.5),
    "boundary_width_px": (0.6, 1.4),
    "boundary_width_variation": (0.2, 0.5),
    "missing_fraction": (0.03, 0.15),
    "missing_residual": (0.1, 0.4),
    "missing_length_px": (30.0, 90.0),
    "junction_blob_fraction": (0.0, 0.3),
    "pit_density": (0.3, 2.5),
    "pit_radius_px": (0.7, 1.8),
    "scratch_rate": (0.0, 4.0, 2),
    "scratch_depth": (0.1, 0.4),
    "scratch_width_px": (0.5, 1.1),
    "scratch_curved_fraction": (0.0, 1.0),
    "illumination": (0.0, 0.2),
    "illumination_gradient": (0.0, 0.5, 3),
    "vignetting": (0.0, 0.45, 3),
    "contrast": (0.35, 1.0),
    "twin_fraction": (0.0, 0.3, 2),
    "twin_contrast": (0.0, 0.08),
    "twin_line_depth": (0.05, 0.3),
    "blur_px": (0.5, 1.1),
    "noise": (0.005, 0.03),
}
"""Per-image ranges of the ``hard`` demo preset (sub-ranges of the documented ones; a third number skews
the draw towards ``lo``, see :func:`random_params`)."""

STYLE_PRESETS: dict[str, dict[str, tuple[float, ...]]] = {"hard": HARD_RANGES, "easy": {}, "random": PARAM_RANGES}
"""Demo styles, each a set of per-image ranges (:func:`random_params`): ``hard`` varies exposure,
contrast, etch, scratches and twins strongly from image to image (strong illumination ramps, vignettes,
twins and scratches in a few images only), so a few images do not cover the set; ``easy`` is one
fixed style (the defaults: every image looks alike); ``random`` spans every documented range."""


def random_params(rng: np.random.Generator, ranges: dict[str, tuple[float, ...]] = PARAM_RANGES) -> MicroscopeParams:
    """Parameters drawn over ``ranges`` (default: every field's documented range, a no-GAN augmentation
    baseline): ``(lo, hi)`` uniformly, ``(lo, hi, power)`` as ``lo + (hi - lo) * u**power`` (u uniform in
    [0, 1); power > 1 keeps most draws near ``lo``, a few near ``hi``); fields not in ``ranges`` keep
    their defaults (no draw for an empty dict)."""
    return MicroscopeParams(**{name: float(spec[0] + (spec[1] - spec[0]) * rng.uniform() ** (spec[2] if len(spec) > 2 else 1.0))
                               for name, spec in ranges.items()})


def preset_params(preset: str | MicroscopeParams, rng: np.random.Generator) -> MicroscopeParams:
    """One image's parameters: ``preset`` itself when given as parameters, else a draw of the named
    :data:`STYLE_PRESETS` entry (UserError for an unknown name)."""
    if isinstance(preset, MicroscopeParams):
        return preset
    if preset not in STYLE_PRESETS:
        raise UserError(f"preset {preset!r} is unknown; choose one of {', '.join(STYLE_PRESETS)}")
    return random_params(rng, STYLE_PRESETS[preset])


def _bspline_upsampling(n_out: int, step: float, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix sampling a uniform cubic B-spline with control points ``step`` px apart
    at 0..n_out-1 px (a C2-smooth upsampling of a coarse grid; needs n_in >= n_out / step + 4)."""
    u = np.arange(n_out) / step + 1.0
    first = np.floor(u).astype(int) - 1
    t = u - np.floor(u)
    weights = np.stack([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], 1) / 6.0
    matrix = np.zeros((n_out, n_in))
    for k in range(4):
        matrix[np.arange(n_out), first + k] = weights[:, k]
    return matrix


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Smooth random field (float32, ``shape``), zero mean, unit std, correlation length ~``scale_px``."""
    step = max(float(scale_px) / 2.0, 1.0)
    coarse_shape = tuple(int(np.ceil(n / step)) + 4 for n in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), 1.0, mode="wrap")
    fine = _bspline_upsampling(shape[0], step, coarse_shape[0]) @ coarse @ _bspline_upsampling(shape[1], step, coarse_shape[1]).T
    fine = fine - fine.mean()
    return (fine / max(float(fine.std()), 1e-12)).astype(np.float32)


def _nearest_power_cell(points: np.ndarray, weights: np.ndarray, query: np.ndarray, k: int = 8) -> np.ndarray:
    """Index of the Laguerre cell (min |q - p|^2 - w) of each query point, among the k Euclidean-nearest seeds."""
    k = min(k, len(points))
    _, idx = cKDTree(points).query(query, k=k)
    idx = idx.reshape(len(query), k)
    power = ((query[:, None, :] - points[idx]) ** 2).sum(-1) - weights[idx]
    return idx[np.arange(len(query)), power.argmin(1)]


def voronoi_grains(
    size: int | tuple[int, int],
    mean_area_px: float = DEFAULT_MEAN_AREA_PX,
    seed: int = 0,
    *,
    size_sigma: float = 0.35,
    curvature: float = 0.3,
    lloyd_steps: int = 2,
) -> np.ndarray:
    """A 2D grain map (int32 ids 1..n, (H, W)), each grain 4-connected, mean area ~``mean_area_px``.

    Seeds: Poisson points in the image plus a margin, relaxed by ``lloyd_steps`` Lloyd steps (real
    grain sizes are more uniform than a Poisson-Voronoi's). Weights: log-normal radii (log-std
    ``size_sigma``) make a Laguerre tessellation with a broad, near-log-normal area distribution.
    Coordinates are warped by a smooth displacement field of amplitude ``curvature`` x grain spacing,
    so boundaries curve. Independent of the Potts engine (docs/design.md §12).
    """
    height, width = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if height < 2 or width < 2 or mean_area_px < 4:
        raise ValueError(f"voronoi_grains: size {size} / mean_area_px {mean_area_px} too small")
    rng = np.random.default_rng(seed)
    spacing = float(np.sqrt(mean_area_px))
    margin = 2.0 * spacing
    lo = np.array([-margin, -margin])
    extent = np.array([height + 2 * margin, width + 2 * margin])
    n_seeds = max(int(round(extent.prod() / mean_area_px)), 2)
    points = lo + rng.random((n_seeds, 2)) * extent

    # Lloyd relaxation on a coarse grid covering the padded domain.
    step = max(spacing / 6.0, 1.0)
    gy, gx = np.meshgrid(np.arange(lo[0], lo[0] + extent[0], step), np.arange(lo[1], lo[1] + extent[1], step), indexing="ij")
    grid = np.column_stack([gy.ravel(), gx.ravel()])
    for _ in range(lloyd_steps):
        owner = _nearest_power_cell(points, np.zeros(n_seeds), grid, k=1)
        counts = np.bincount(owner, minlength=n_seeds)
        filled = counts > 0
        for axis in range(2):
            sums = np.bincount(owner, weights=grid[:, axis], minlength=n_seeds)
            points[filled, axis] = sums[filled] / counts[filled]

    radii = spacing * 0.5 * rng.lognormal(0.0, size_sigma, n_seeds)
    weights = radii**2 - np.mean(radii**2)

    displacement = [curvature * spacing * _smooth_field(rng, (height, width), 1.5 * spacing) for _ in range(2)]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    query = np.column_stack([(yy + displacement[0]).ravel(), (xx + displacement[1]).ravel()])
    ids = _nearest_power_cell(points, weights, query).reshape(height, width)
    return _merge_fragments(ids, min_area=max(4, int(0.02 * mean_area_px)))


def _merge_fragments(ids: np.ndarray, min_area: int) -> np.ndarray:
    """Relabel so that every 4-connected region of equal id is its own grain 1..n (int32); pieces smaller
    than ``min_area`` px (slivers where the warp folds or cells nearly tie) join their nearest grain."""
    from skimage.measure import label

    pieces = label(ids + 1, connectivity=1, background=0)
    small = (np.bincount(pieces.ravel()) < min_area)[pieces]
    if small.any() and not small.all():
        nearest = ndimage.distance_transform_edt(small, return_distances=False, return_indices=True)
        pieces = pieces[tuple(nearest)]
    return label(pieces, connectivity=1, background=0).astype(np.int32)


def _soft_discs(shape: tuple[int, int], centres: np.ndarray, radii: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """Absorption map (float32, ``shape``) of dark discs with a 1-px soft edge; overlaps take the max."""
    absorb = np.zeros(shape, dtype=np.float32)
    for (cy, cx), radius, depth in zip(centres, radii, depths):
        reach = int(np.ceil(radius + 1.5))
        y0, y1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, shape[0])
        x0, x1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dist = np.hypot(yy - cy, xx - cx)
        spot = depth * np.clip(radius + 0.5 - dist, 0.0, 1.0)
        np.maximum(absorb[y0:y1, x0:x1], spot, out=absorb[y0:y1, x0:x1])
    return absorb


def _triple_junctions(ids: np.ndarray) -> np.ndarray:
    """(k, 2) float coordinates of 2 x 2 windows that hold three or more distinct ids."""
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    distinct = 1 + (b != a) + ((c != a) & (c != b)) + ((d != a) & (d != b) & (d != c))
    return np.argwhere(distinct >= 3).astype(np.float64) + 0.5


def _scratches(rng: np.random.Generator, shape: tuple[int, int], params: MicroscopeParams) -> np.ndarray:
    """Absorption map of polishing scratches: long thin straight lines or gentle arcs (look like boundaries)."""
    height, width = shape
    absorb = np.zeros(shape, dtype=np.float32)
    count = rng.poisson(params.scratch_rate * height * width / 512.0**2)
    if count == 0:
        return absorb
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    span = float(max(height, width))
    for _ in range(count):
        anchor = rng.random(2) * (height, width)
        length = rng.uniform(0.3, 1.2) * span
        depth = params.scratch_depth * rng.uniform(0.6, 1.0)
        if rng.random() < params.scratch_curved_fraction:
            radius = rng.uniform(1.0, 4.0) * span
            phi = rng.uniform(0, 2 * np.pi)
            centre = anchor + radius * np.array([np.sin(phi), np.cos(phi)])
            dist = np.abs(np.hypot(yy - centre[0], xx - centre[1]) - radius)
            angle = np.arctan2(yy - centre[0], xx - centre[1])
            off_arc = np.abs(np.angle(np.exp(1j * (angle - (phi + np.pi))))) * radius > length / 2
        else:
            theta = rng.uniform(0, np.pi)
            direction = np.array([np.sin(theta), np.cos(theta)])
            along = (yy - anchor[0]) * direction[0] + (xx - anchor[1]) * direction[1]
            dist = np.abs((yy - anchor[0]) * direction[1] - (xx - anchor[1]) * direction[0])
            off_arc = np.abs(along) > length / 2
        line = depth * np.exp(-0.5 * (dist / params.scratch_width_px) ** 2)
        line[off_arc] = 0.0
        np.maximum(absorb, line, out=absorb)
    return absorb


def _twin_bands(rng: np.random.Generator, grains: np.ndarray, params: MicroscopeParams) -> tuple[np.ndarray, np.ndarray]:
    """Twin bands in ``twin_fraction`` of the grains of ``grains`` (ids 0..n-1, (H, W)): a straight
    parallel-sided band through the grain, 0.15-0.4 x its equivalent diameter wide, offset in grey by
    +-``twin_contrast``, with thin dark straight edges (depth ``twin_line_depth``) that end at the grain's
    boundary. Returns (grey offset, absorption), float32 (H, W); neither is in the label."""
    offset = np.zeros(grains.shape, np.float32)
    absorb = np.zeros(grains.shape, np.float32)
    for grain, box in enumerate(ndimage.find_objects(grains + 1)):
        if box is None or rng.random() >= params.twin_fraction:
            continue
        inside = grains[box] == grain
        area = int(inside.sum())
        if area < 50:
            continue
        yy, xx = np.nonzero(inside)
        theta = rng.uniform(0.0, np.pi)
        across = (yy - yy.mean()) * np.cos(theta) - (xx - xx.mean()) * np.sin(theta)
        half = 0.5 * rng.uniform(0.15, 0.4) * np.sqrt(4 * area / np.pi)
        centre = rng.uniform(-0.5, 0.5) * max(float(np.abs(across).max()) - half, 0.0)
        dist = np.abs(across - centre)
        offset[box][yy, xx] = np.where(dist < half, rng.choice([-1.0, 1.0]) * params.twin_contrast, 0.0)
        absorb[box][yy, xx] = params.twin_line_depth * np.exp(-0.5 * ((dist - half) / 0.6) ** 2)
    return offset, absorb


def _illumination_ramp(rng: np.random.Generator, shape: tuple[int, int], params: MicroscopeParams) -> np.ndarray:
    """Relative brightness (float32 (H, W), 1 = nominal) of a linear ramp in a random direction
    (``illumination_gradient`` peak to peak) times a vignette darkening the corners by ``vignetting``
    about a centre up to 15 % of the image off-centre."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / max(height - 1, 1) - 0.5, xx / max(width - 1, 1) - 0.5
    theta = rng.uniform(0.0, 2 * np.pi)
    ramp = yy * np.sin(theta) + xx * np.cos(theta)
    ramp = ramp / max(float(np.abs(ramp).max()), 1e-6)
    cy, cx = rng.uniform(-0.15, 0.15, 2)
    radius2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / 0.5
    return ((1.0 + 0.5 * params.illumination_gradient * ramp) * (1.0 - params.vignetting * np.minimum(radius2, 1.3))).astype(np.float32)


def render(ids_or_boundary: np.ndarray, params: MicroscopeParams | None = None, seed: int = 0) -> np.ndarray:
    """Render an etched bright-field micrograph (float32 (H, W) in [0, 1]) of a grain map.

    ``ids_or_boundary``: an integer id map (H, W) (boundaries drawn at
    :func:`~grainforge.grains.boundary_from_ids`) or a bool boundary map (True = boundary; grains are
    its 4-connected components). The dark lines are centred on the label's boundary pixels, so the
    label of the rendered image is that 1-pixel boundary, under-etched stretches included.
    """
    params = params or MicroscopeParams()
    rng = np.random.default_rng(seed)
    (extra_rng,) = rng.spawn(1)  # draws of the harder effects: leave the main stream as it was without them
    array = np.asarray(ids_or_boundary)
    if array.ndim != 2:
        raise ValueError(f"render wants a 2D grain map, got shape {array.shape}")
    if array.dtype == bool:
        boundary = array
        grains = label_grains(boundary)
        if boundary.any() and not boundary.all():  # give boundary pixels the id of the nearest grain
            nearest = ndimage.distance_transform_edt(grains == 0, return_distances=False, return_indices=True)
            grains = grains[tuple(nearest)]
    else:
        grains = array
        boundary = boundary_from_ids(grains)
    shape = boundary.shape
    _, compact = np.unique(grains, return_inverse=True)
    compact = compact.reshape(shape)

    levels = params.grain_level + params.grain_contrast * rng.standard_normal(int(compact.max()) + 1)
    base = levels[compact].astype(np.float32) + params.grain_mottle * _smooth_field(rng, shape, 12.0)
    twin_absorb = 0.0
    if params.twin_fraction > 0:
        twin_offset, twin_absorb = _twin_bands(extra_rng, compact, params)
        base = base + twin_offset

    if boundary.any():
        dist = ndimage.distance_transform_edt(~boundary).astype(np.float32)
    else:
        dist = np.full(shape, np.inf, dtype=np.float32)
    width = params.boundary_width_px * np.clip(1 + params.boundary_width_variation * _smooth_field(rng, shape, 25.0), 0.5, 1.6)
    depth = params.boundary_depth * np.clip(1 + params.boundary_depth_variation * _smooth_field(rng, shape, 25.0), 0.2, None)
    etch_field = _smooth_field(rng, shape, params.missing_length_px)
    if params.missing_fraction > 0 and boundary.any():
        cut = np.quantile(etch_field[boundary], 1.0 - params.missing_fraction)
        faint = expit((etch_field - cut) / 0.05)
        depth = depth * (1.0 - (1.0 - params.missing_residual) * faint)
    boundary_absorb = np.clip(depth, 0.0, 0.95) * np.exp(-0.5 * (dist / width) ** 2)

    junctions = _triple_junctions(grains)
    chosen = junctions[rng.random(len(junctions)) < params.junction_blob_fraction]
    blob_parts = [chosen + rng.normal(0.0, 0.6 * params.junction_blob_radius_px, chosen.shape) for _ in range(3)]
    blob_centres = np.concatenate(blob_parts) if len(chosen) else np.zeros((0, 2))
    blob_radii = params.junction_blob_radius_px * rng.lognormal(-0.5, 0.4, len(blob_centres))
    blob_depths = rng.uniform(0.6, 0.9, len(blob_centres))

    n_pits = rng.poisson(params.pit_density * shape[0] * shape[1] / 1e4)
    pit_centres = rng.random((n_pits, 2)) * shape
    pit_radii = params.pit_radius_px * rng.lognormal(0.0, 0.35, n_pits)
    pit_depths = params.pit_depth * rng.uniform(0.7, 1.0, n_pits)
    spot_absorb = _soft_discs(
        shape,
        np.concatenate([blob_centres, pit_centres]),
        np.concatenate([blob_radii, pit_radii]),
        np.concatenate([blob_depths, pit_depths]),
    )

    scratch_absorb = _scratches(rng, shape, params)
    light = _smooth_field(rng, shape, params.illumination_scale * max(shape))
    illumination = 1.0 + params.illumination * light / max(float(np.abs(light).max()), 1e-6)
    if params.illumination_gradient > 0 or params.vignetting > 0:
        illumination = illumination * _illumination_ramp(extra_rng, shape, params)

    image = base * (1 - boundary_absorb) * (1 - spot_absorb) * (1 - scratch_absorb) * (1 - twin_absorb) * illumination
    image = ndimage.gaussian_filter(image, params.blur_px)
    if params.contrast < 1:
        image = params.grain_level + params.contrast * (image - params.grain_level)
    image = image + params.noise * rng.standard_normal(shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def contact_sheet(images: list[np.ndarray], labels: list[np.ndarray], columns: int = 2, gap: int = 6) -> np.ndarray:
    """A uint8 sheet: each (image, label) pair side by side, ``columns`` pairs per row, white gaps.

    ``images``: float [0, 1] (H, W); ``labels``: bool boundary maps (shown white on black).
    """
    tiles = [np.concatenate([to_uint8(im), np.full((im.shape[0], gap), 255, np.uint8), lab.astype(np.uint8) * 255], 1)
             for im, lab in zip(images, labels)]
    tile_h = max(t.shape[0] for t in tiles) + gap
    tile_w = max(t.shape[1] for t in tiles) + gap
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * tile_h + gap, columns * tile_w + gap), 255, np.uint8)
    for k, tile in enumerate(tiles):
        y, x = gap + (k // columns) * tile_h, gap + (k % columns) * tile_w
        sheet[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return sheet


MANIFEST_PARAMS = ("contrast", "boundary_depth", "illumination", "illumination_gradient", "vignetting",
                   "scratch_rate", "twin_fraction", "noise")
"""The per-image parameters listed in a demo set's ``manifest.csv`` (the ones that vary most under ``hard``)."""


def _preset_record(preset: str | MicroscopeParams) -> dict:
    """What run.json records of a style: the preset name and its per-image ranges, or the fixed parameters."""
    if isinstance(preset, MicroscopeParams):
        return {"preset": "fixed", "params": dataclasses.asdict(preset)}
    return {"preset": preset, "ranges": STYLE_PRESETS[preset]}


def demo_stems(n: int) -> list[str]:
    """File stems of ``n`` demo images: demo_0000, demo_0001, ..."""
    return [f"demo_{i:04d}" for i in range(n)]


def demo_split(n: int, seed: int, test_fraction: float = 0.25) -> tuple[list[str], list[str]]:
    """(train stems, test stems) of :func:`make_demo_data` with these arguments, without rendering anything."""
    from grainforge.data.split import train_test_split

    return train_test_split(demo_stems(n), test_fraction, seed)


def make_demo_data(
    out: str | os.PathLike,
    n: int,
    size: int,
    seed: int,
    test_fraction: float = 0.25,
    *,
    mean_area_px: float = DEFAULT_MEAN_AREA_PX,
    preset: str | MicroscopeParams = "hard",
    contact_sheet_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[dict]:
    """Write a labelled demo data set; returns its manifest rows (also ``out/manifest.csv``).

    Files: ``out/{train,test}/{images,labels}/demo_NNNN.png`` (images uint8 grey; labels uint8,
    255 = boundary, 0 = grain), ``out/manifest.csv``, ``out/run.json``. Image i depends only on
    (``seed``, i), so the first k images are the same for any ``n``, and the grain maps (labels) do not
    depend on ``preset``: a :data:`STYLE_PRESETS` name (each image draws its own parameters; ``easy``
    is the fixed default style) or one fixed :class:`MicroscopeParams`. ``run.json`` records the preset
    and ``manifest.csv`` each image's contrast and illumination parameters. ``contact_sheet_path``:
    also write a sheet of the first 8 pairs.
    """
    from grainforge.data.io import write_csv, write_pair, write_png
    from grainforge.progress import progress_bar
    from grainforge.runinfo import RunRecord

    out = Path(out)
    preset_params(preset, np.random.default_rng(0))  # an unknown name fails before anything is written
    stems = demo_stems(n)
    test = set(demo_split(n, seed, test_fraction)[1])
    record = RunRecord(out, command="demo-data", seed=seed, config={
        "n": n, "size": size, "test_fraction": test_fraction, "mean_area_px": mean_area_px,
        **_preset_record(preset),
    })
    rows, sheet_pairs = [], []
    with record.phase("generate"), progress_bar(disable=not progress) as bar:
        task = bar.add_task("demo images", total=n)
        for i, stem in enumerate(stems):
            grain_seed, style_seed, render_seed = np.random.SeedSequence([seed, i]).generate_state(3)
            ids = voronoi_grains(size, mean_area_px, int(grain_seed))
            style = preset_params(preset, np.random.default_rng(style_seed))
            image = render(ids, style, int(render_seed))
            boundary = boundary_from_ids(ids)
            split = "test" if stem in test else "train"
            write_pair(out / split, stem, image, boundary)
            rows.append({"image": stem, "split": split, "n_grains": int(ids.max()), "boundary_fraction": round(float(boundary.mean()), 5),
                         **{name: round(getattr(style, name), 4) for name in MANIFEST_PARAMS}})
            if len(sheet_pairs) < 8:
                sheet_pairs.append((image, boundary))
            bar.update(task, advance=1)
    write_csv(out / "manifest.csv", rows)
    if contact_sheet_path is not None:
        write_png(contact_sheet_path, contact_sheet([p[0] for p in sheet_pairs], [p[1] for p in sheet_pairs]))
    record.write()
    return rows


def render_label_folder(
    labels_dir: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    *,
    preset: str | MicroscopeParams = "hard",
    boundary_value="auto",
    threshold: float | None = 127,
    thin: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Render every boundary label in ``labels_dir`` (e.g. simulated sections) as a micrograph: the
    no-GAN way to give labels an image. Writes ``out/images/<stem>.png`` and ``out/labels/<stem>.png``
    (the binarised label, 255 = boundary), ``out/run.json``; returns one row per image. ``preset`` as
    in :func:`make_demo_data`."""
    from grainforge.data.io import list_images, write_pair
    from grainforge.data.pairs import read_boundary
    from grainforge.progress import progress_bar
    from grainforge.runinfo import RunRecord

    out = Path(out)
    paths = list_images(labels_dir)
    preset_params(preset, np.random.default_rng(0))  # an unknown name fails before anything is written
    record = RunRecord(out, command="demo-data --from-labels", seed=seed, config={
        "labels_dir": str(labels_dir), **_preset_record(preset),
        "boundary_value": boundary_value, "threshold": threshold, "thin": thin,
    })
    rows = []
    with record.phase("render"), progress_bar(disable=not progress) as bar:
        task = bar.add_task("rendering labels", total=len(paths))
        for i, path in enumerate(paths):
            boundary = read_boundary(path, boundary_value, threshold, thin)
            style_seed, render_seed = np.random.SeedSequence([seed, i]).generate_state(2)
            style = preset_params(preset, np.random.default_rng(style_seed))
            write_pair(out, path.stem, render(boundary, style, int(render_seed)), boundary)
            rows.append({"image": path.stem, "boundary_fraction": round(float(boundary.mean()), 5)})
            bar.update(task, advance=1)
    record.write()
    return rows
