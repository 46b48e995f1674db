"""Grain size as a metallographer reports it: ASTM E112 intercept and planimetric methods (docs/design.md §3.6).

Arrays in, numbers out. A grain label map is int (H, W) with 0 = boundary (:mod:`grainforge.grains`).
Lengths are in pixels unless a pixel size ``um_per_px`` (micrometres per pixel) is given.

- **Planimetric (Jeffries)**: grains inside the field count 1, grains cut by its edge 1/2, the grains
  holding its four corners 1/4 per corner (ASTM E112); grains per mm² N_A is that count over the
  field area, and G = 3.321928 log10(N_A) - 2.954.
- **Lineal intercept (Heyn)**: test lines at several angles and the E112 three-circle pattern are
  sampled every ``SAMPLE_STEP_PX``; an intersection is a change of grain along the line (a run of
  boundary pixels between two different grains). It counts 1, or 1.5 where the boundary pixels of
  the crossing see three or more grains in their 3 x 3 neighbourhoods (a triple point). A line that
  touches a boundary and returns into the same grain is not counted: on a pixel grid that is
  mostly a line clipping the corner of a 1-pixel staircase (about one boundary run in six on a
  Voronoi map), and an unclosed boundary separates no grains (docs/design.md §3.1). For lines ending inside grains, E112 scores
  the end segments 1/2 each, so the intercept count equals the intersection count P and the mean
  intercept is ℓ̄ = L / P. Per direction ℓ(θ) = L(θ) / P(θ); the field's ℓ̄ = 1 / mean_θ P_L(θ)
  (directions weighted alike); G = -6.643856 log10(ℓ̄ [mm]) - 3.288; the anisotropy index is
  max_θ ℓ(θ) / min_θ ℓ(θ) (E112's ℓ_longitudinal / ℓ_transverse when the elongation lies along
  one of the angles).
- **Sample statistics** (E112 §15): per-field values pooled as mean, sample standard deviation,
  95 % confidence half-width t(0.975, n - 1) s / sqrt(n) and % relative accuracy 100 CI / mean.
  G of a sample is G of the mean ℓ̄ or the mean N_A, not the mean of the fields' G.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grainforge.errors import GrainforgeWarning, UserError

SAMPLE_STEP_PX = 0.25  # spacing of the sample points along a test line or circle (pixels)
DEFAULT_ANGLES_DEG = (0.0, 45.0, 90.0, 135.0)
LINES_PER_FIELD = 10  # default line spacing: the field's shorter side / LINES_PER_FIELD
CIRCLE_DIAMETERS = (79.58, 53.05, 26.53)  # E112 three-circle pattern (mm on the 100x template; total 500 mm)
CIRCLE_FILL = 0.95  # the largest circle's diameter as a fraction of the field's shorter side
TRIPLE_POINT_WEIGHT = 1.5
MIN_GRAINS_PER_FIELD = 50  # E112 planimetric: at least 50 grains per field
MIN_INTERSECTIONS_PER_FIELD = 50  # E112 intercept: 50 or more counts per field
MIN_FIELDS = 5  # E112 §15: at least five fields
MAX_RELATIVE_ACCURACY_PCT = 10.0  # E112 §15: 10 % RA or less is acceptable precision


# ------------------------------------------------------------------ E112 formulas


def astm_g_from_mean_intercept(mean_intercept_mm: float) -> float:
    """ASTM E112 grain-size number from the mean lineal intercept ℓ̄ in mm: G = -6.643856 log10(ℓ̄) - 3.288.

    Examples
    --------
    E112 Table 4: G 1 has ℓ̄ = 0.2263 mm, G 8 has ℓ̄ = 0.0200 mm.

    >>> from grainforge.grainsize import astm_g_from_mean_intercept
    >>> round(astm_g_from_mean_intercept(0.2263), 2), round(astm_g_from_mean_intercept(0.0200), 2)
    (1.0, 8.0)
    """
    if not mean_intercept_mm > 0 or not math.isfinite(mean_intercept_mm):
        return float("nan")
    return -6.643856 * math.log10(mean_intercept_mm) - 3.288


def astm_g_from_grains_per_mm2(grains_per_mm2: float) -> float:
    """ASTM E112 grain-size number from grains per mm² N_A (at 1x): G = 3.321928 log10(N_A) - 2.954.

    Examples
    --------
    E112 Table 4: G 0 has N_A = 7.75 mm⁻², G 8 has 1984 mm⁻².

    >>> from grainforge.grainsize import astm_g_from_grains_per_mm2
    >>> round(astm_g_from_grains_per_mm2(7.75), 2), round(astm_g_from_grains_per_mm2(1984.0), 2)
    (0.0, 8.0)
    """
    if not grains_per_mm2 > 0 or not math.isfinite(grains_per_mm2):
        return float("nan")
    return 3.321928 * math.log10(grains_per_mm2) - 2.954


def sample_statistics(values: Sequence[float]) -> dict:
    """Compute the E112 §15 statistics of per-field values.

    Returns n, mean, std (n - 1), ci95 (half-width t(0.975, n - 1) std / sqrt(n), scipy.stats.t),
    ci95_low/high and relative_accuracy_pct (100 ci95 / mean). Non-finite values are left out; with
    fewer than 2 values std and the CI are nan.

    Examples
    --------
    >>> from grainforge.grainsize import sample_statistics
    >>> s = sample_statistics([10.0, 12.0, 11.0, 9.0, 13.0])
    >>> s["n"], s["mean"], round(s["ci95"], 3), round(s["relative_accuracy_pct"], 1)
    (5, 11.0, 1.963, 17.8)
    """
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(x.size)
    mean = float(x.mean()) if n else float("nan")
    std = float(x.std(ddof=1)) if n > 1 else float("nan")
    ci = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "std": std, "ci95": ci, "ci95_low": mean - ci, "ci95_high": mean + ci,
            "relative_accuracy_pct": 100.0 * ci / mean if n > 1 and mean != 0 else float("nan")}


# ------------------------------------------------------------------ planimetric


def planimetric_count(labels: np.ndarray) -> dict:
    """Jeffries count of a grain label map (H, W), 0 = boundary, as ASTM E112 weights it.

    Returns n_inside (grains not touching the field edge, weight 1), n_edge (cut by the edge but
    holding no corner pixel, weight 1/2), n_corner (grains holding corner pixels: 1/4 per corner
    held, so a grain filling the field counts 1) and n_weighted, the weighted sum.

    Examples
    --------
    Nine square grains: one inside, four on the edges, four in the corners: 1 + 4/2 + 4/4 = 4.

    >>> import numpy as np
    >>> from grainforge.grainsize import planimetric_count
    >>> ids = (np.indices((9, 9)) // 3); labels = 3 * ids[0] + ids[1] + 1
    >>> planimetric_count(labels)["n_weighted"]
    4.0
    """
    from skimage.segmentation import clear_border

    labels = np.asarray(labels)
    present = np.unique(labels)
    present = present[present > 0]
    inside = np.unique(clear_border(labels))
    inside = inside[inside > 0]
    corners = labels[[0, 0, -1, -1], [0, -1, 0, -1]]
    corner_ids, corners_held = np.unique(corners[corners > 0], return_counts=True)
    n_edge = present.size - inside.size - corner_ids.size
    weighted = inside.size + 0.5 * n_edge + 0.25 * float(corners_held.sum())
    return {"n_grains": int(present.size), "n_inside": int(inside.size), "n_edge": int(n_edge),
            "n_corner": int(corner_ids.size), "n_weighted": float(weighted)}


# ------------------------------------------------------------------ intercepts


@dataclass(frozen=True)
class ProbeCurve:
    """A test line or circle.

    Sample points (n, 2) as (row, col) in pixel-centre coordinates, its length in pixels and whether
    it is closed (a circle).
    """

    points: np.ndarray
    length_px: float
    closed: bool = False


@dataclass
class Intersections:
    """Intersections of test curves with the grain boundaries.

    Count P (triple points 1.5), test length L (pixels), and the points (k, 2) (row, col) with a
    triple-point flag each.
    """

    count: float = 0.0
    length_px: float = 0.0
    points: list = field(default_factory=list)
    triple: list = field(default_factory=list)

    def add(self, other: Intersections) -> None:
        """Pool another curve's intersections into this one."""
        self.count += other.count
        self.length_px += other.length_px
        self.points += other.points
        self.triple += other.triple


def line_grid(shape: tuple[int, int], angle_deg: float, spacing_px: float) -> list[ProbeCurve]:
    """Lay parallel test lines at ``angle_deg`` across a field of shape (H, W).

    0 = along the rows, 90 = along the columns, counter-clockwise on screen; ``spacing_px`` apart,
    centred on the field, clipped to the field whose pixels span [-0.5, H - 0.5] x [-0.5, W - 0.5].
    """
    if not spacing_px > 0:
        raise UserError(f"line spacing {spacing_px}: must be > 0 pixels")
    height, width = shape
    theta = math.radians(angle_deg)
    direction = np.array([-math.sin(theta), math.cos(theta)])  # (row, col): rows grow downwards
    normal = np.array([math.cos(theta), math.sin(theta)])
    centre = np.array([(height - 1) / 2.0, (width - 1) / 2.0])
    lo, hi = np.array([-0.5, -0.5]), np.array([height - 0.5, width - 0.5])
    corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]]) - centre
    reach = float(np.abs(corners @ normal).max())
    n_side = int(math.ceil(reach / spacing_px)) - 1  # lines strictly inside the field
    curves = []
    for k in range(-n_side, n_side + 1):
        base = centre + k * spacing_px * normal
        with np.errstate(divide="ignore", invalid="ignore"):  # clip base + t * direction to the box
            t1, t2 = (lo - base) / direction, (hi - base) / direction
        t_min = max(np.minimum(t1, t2)[direction != 0].max(), -np.inf)
        t_max = min(np.maximum(t1, t2)[direction != 0].min(), np.inf)
        if t_max - t_min <= 1.0:  # a corner clip shorter than a pixel
            continue
        n = int(math.ceil((t_max - t_min) / SAMPLE_STEP_PX)) + 1
        t = np.linspace(t_min, t_max, n)
        curves.append(ProbeCurve(base + t[:, None] * direction, float(t_max - t_min)))
    return curves


def three_circles(shape: tuple[int, int], fill: float = CIRCLE_FILL) -> list[ProbeCurve]:
    """Lay the E112 three-circle pattern on a field of shape (H, W).

    Centred, diameters in the ratio 79.58 : 53.05 : 26.53, the largest ``fill`` times the field's
    shorter side.
    """
    height, width = shape
    centre = np.array([(height - 1) / 2.0, (width - 1) / 2.0])
    curves = []
    for diameter in CIRCLE_DIAMETERS:
        radius = 0.5 * fill * min(height, width) * diameter / CIRCLE_DIAMETERS[0]
        n = max(int(math.ceil(2 * math.pi * radius / SAMPLE_STEP_PX)), 8)
        phi = np.arange(n) * (2 * math.pi / n)
        points = centre + radius * np.stack([-np.sin(phi), np.cos(phi)], axis=1)
        curves.append(ProbeCurve(points, 2 * math.pi * radius, True))
    return curves


def count_intersections(labels: np.ndarray, curve: ProbeCurve) -> Intersections:
    """Intersections of one test curve with the boundaries of a label map (H, W), 0 = boundary.

    A change of grain between consecutive grain samples is one intersection, 1.5 when the boundary
    pixels sampled between them see three or more grains in their 3 x 3 neighbourhoods.
    """
    labels = np.asarray(labels)
    height, width = labels.shape
    rows = np.clip(np.floor(curve.points[:, 0] + 0.5).astype(np.int64), 0, height - 1)
    cols = np.clip(np.floor(curve.points[:, 1] + 0.5).astype(np.int64), 0, width - 1)
    along = labels[rows, cols]
    grain_at = np.flatnonzero(along > 0)
    result = Intersections(length_px=curve.length_px)
    if grain_at.size < 2:
        return result
    starts, ends = grain_at[:-1], grain_at[1:]
    if curve.closed:
        starts, ends = np.append(starts, grain_at[-1]), np.append(ends, grain_at[0] + along.size)
    change = along[starts] != along[ends % along.size]
    for start, end in zip(starts[change], ends[change]):
        between = np.arange(start + 1, end) % along.size
        seen = {int(along[start]), int(along[end % along.size])}
        for r, c in set(zip(rows[between].tolist(), cols[between].tolist())):
            seen.update(labels[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].ravel().tolist())
        seen.discard(0)
        triple = len(seen) >= 3
        middle = (curve.points[start] + curve.points[end % along.size]) / 2.0 if not curve.closed or end < along.size \
            else curve.points[start]
        result.count += TRIPLE_POINT_WEIGHT if triple else 1.0
        result.points.append(middle)
        result.triple.append(triple)
    return result


# ------------------------------------------------------------------ one field


@dataclass
class FieldGrainSize:
    """Grain size of one field (image). Lengths in micrometres when ``um_per_px`` is set, else pixels.

    ``directions`` maps angle (degrees) -> Intersections of its line grid; ``circles`` holds the
    three-circle pattern's; ``planimetric`` is :func:`planimetric_count`'s dict.
    """

    shape: tuple[int, int]
    um_per_px: float | None
    planimetric: dict
    directions: dict[float, Intersections]
    circles: Intersections
    curves: list[ProbeCurve]

    @property
    def scale(self) -> float:
        """Length of one pixel in the reported unit (µm, or 1 for pixels)."""
        return self.um_per_px or 1.0

    def intercept_at(self, angle_deg: float) -> float:
        """Mean intercept ℓ(θ) = L / P of one direction, in the reported unit (inf when P = 0)."""
        hits = self.directions[angle_deg]
        return hits.length_px * self.scale / hits.count if hits.count else float("inf")

    @property
    def n_intersections(self) -> float:
        """Intersections P of all test lines (triple points 1.5)."""
        return sum(hits.count for hits in self.directions.values())

    @property
    def mean_intercept(self) -> float:
        """ℓ̄ = 1 / mean_θ (P(θ) / L(θ)) of the line grids, in the reported unit (inf without intersections)."""
        p_l = float(np.mean([hits.count / hits.length_px for hits in self.directions.values()]))
        return self.scale / p_l if p_l > 0 else float("inf")

    @property
    def circle_mean_intercept(self) -> float:
        """ℓ̄ = L / P of the three-circle pattern, in the reported unit."""
        return self.circles.length_px * self.scale / self.circles.count if self.circles.count else float("inf")

    @property
    def anisotropy(self) -> float:
        """max_θ ℓ(θ) / min_θ ℓ(θ) of the line grids (1 = isotropic; nan when a direction has no intersection)."""
        values = [self.intercept_at(angle) for angle in self.directions]
        return max(values) / min(values) if all(math.isfinite(v) for v in values) else float("nan")

    @property
    def area(self) -> float:
        """Field area in the reported unit squared."""
        return self.shape[0] * self.shape[1] * self.scale**2

    @property
    def grains_per_mm2(self) -> float | None:
        """Planimetric N_A (grains per mm²), or None without a pixel size."""
        return self.planimetric["n_weighted"] / (self.area * 1e-6) if self.um_per_px else None

    def warnings(self) -> list[str]:
        """List the counts of this field that are below the E112 minimum."""
        notes = []
        if self.planimetric["n_weighted"] < MIN_GRAINS_PER_FIELD:
            notes.append(f"{self.planimetric['n_weighted']:g} grains < {MIN_GRAINS_PER_FIELD} (planimetric)")
        if self.n_intersections < MIN_INTERSECTIONS_PER_FIELD:
            notes.append(f"{self.n_intersections:g} intersections < {MIN_INTERSECTIONS_PER_FIELD} (intercept)")
        return notes


def field_grain_size(labels: np.ndarray, um_per_px: float | None = None, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
                     line_spacing_px: float | None = None) -> FieldGrainSize:
    """Intercept and planimetric grain size of one grain label map.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Grain ids, 0 = boundary (e.g. :func:`grainforge.grains.label_grains` of a boundary map).
    um_per_px : float, optional
        Pixel size in micrometres; without it lengths stay in pixels and G is not defined.
    angles_deg : sequence of float, optional
        Directions of the line grids in degrees (0 = along the rows, 90 = along the columns).
    line_spacing_px : float, optional
        Distance between parallel test lines in pixels; default the shorter side / 10.

    Returns
    -------
    FieldGrainSize
        ``mean_intercept``, ``intercept_at(angle)``, ``circle_mean_intercept``, ``anisotropy``,
        ``grains_per_mm2``, ``planimetric`` counts and the intersections for an overlay.

    Examples
    --------
    Square grains 16 px wide: a horizontal or vertical line meets a boundary every 16 px.

    >>> import numpy as np
    >>> from grainforge.grains import boundary_from_ids, label_grains
    >>> from grainforge.grainsize import field_grain_size
    >>> rows, cols = (np.indices((128, 128)) + 8) // 16
    >>> labels = label_grains(boundary_from_ids(rows * 100 + cols))
    >>> result = field_grain_size(labels, um_per_px=0.5, angles_deg=(0, 90), line_spacing_px=16)
    >>> result.intercept_at(0), result.intercept_at(90), result.anisotropy
    (8.0, 8.0, 1.0)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D, got shape {labels.shape}")
    from grainforge.data.io import check_pixel_size

    um_per_px = check_pixel_size(um_per_px, "um_per_px")
    if not angles_deg:
        raise UserError("angles: give at least one test-line direction")
    spacing = line_spacing_px if line_spacing_px is not None else max(min(labels.shape) / LINES_PER_FIELD, 1.0)
    directions, curves = {}, []
    for angle in angles_deg:
        hits = Intersections()
        for curve in line_grid(labels.shape, float(angle), spacing):
            hits.add(count_intersections(labels, curve))
            curves.append(curve)
        directions[float(angle)] = hits
    circle_hits = Intersections()
    for curve in three_circles(labels.shape):
        circle_hits.add(count_intersections(labels, curve))
        curves.append(curve)
    return FieldGrainSize(labels.shape, um_per_px, planimetric_count(labels), directions, circle_hits, curves)


def length_unit(um_per_px: float | None) -> str:
    """Return the column suffix of lengths: "um" with a pixel size, else "px"."""
    return "um" if um_per_px else "px"


def field_row(image: str, result: FieldGrainSize) -> dict:
    """Return one row of ``fields.csv``: counts, N_A and G (planimetric), ℓ̄ and G (lines, circles), ℓ(θ), anisotropy, warnings."""
    unit = length_unit(result.um_per_px)
    n_a = result.grains_per_mm2
    mm = 1e-3 if result.um_per_px else None
    row = {
        "image": image, "height_px": result.shape[0], "width_px": result.shape[1], "um_per_px": result.um_per_px or "",
        "n_grains": result.planimetric["n_grains"], "n_inside": result.planimetric["n_inside"],
        "n_edge": result.planimetric["n_edge"], "n_corner": result.planimetric["n_corner"],
        "n_grains_weighted": result.planimetric["n_weighted"],
        "grains_per_mm2": "" if n_a is None else n_a,
        "G_planimetric": "" if n_a is None else astm_g_from_grains_per_mm2(n_a),
        "n_intersections": result.n_intersections,
        f"test_length_{unit}": sum(h.length_px for h in result.directions.values()) * result.scale,
        f"mean_intercept_{unit}": result.mean_intercept,
        "G_intercept": "" if mm is None else astm_g_from_mean_intercept(result.mean_intercept * mm),
        "anisotropy": result.anisotropy,
        "n_intersections_circles": result.circles.count,
        f"circles_mean_intercept_{unit}": result.circle_mean_intercept,
        "G_circles": "" if mm is None else astm_g_from_mean_intercept(result.circle_mean_intercept * mm),
    }
    for angle in result.directions:
        row[f"mean_intercept_{angle:g}deg_{unit}"] = result.intercept_at(angle)
    row["warnings"] = "; ".join(result.warnings())
    return row


def sample_rows(results: Sequence[FieldGrainSize]) -> list[dict]:
    """Pool fields into the rows of ``sample.csv``.

    The E112 §15 statistics (:func:`sample_statistics`) of the fields' mean intercept (lines and
    circles) and of their grains per mm² (or per 10⁶ px² without a pixel size), with G of the mean,
    the total counts and warnings below the standards' minimum counts.
    """
    if not results:
        raise UserError("grain size: no fields to pool")
    sized = bool(results[0].um_per_px)
    unit = length_unit(results[0].um_per_px)
    n_fields = len(results)
    density = [r.grains_per_mm2 if sized else r.planimetric["n_weighted"] / (r.area * 1e-6) for r in results]
    quantities = [
        (f"mean_intercept_{unit}", unit, [r.mean_intercept for r in results], sum(r.n_intersections for r in results),
         astm_g_from_mean_intercept),
        (f"circles_mean_intercept_{unit}", unit, [r.circle_mean_intercept for r in results],
         sum(r.circles.count for r in results), astm_g_from_mean_intercept),
        ("grains_per_mm2" if sized else "grains_per_1e6_px2", "1/mm2" if sized else "1/(1e6 px2)", density,
         sum(r.planimetric["n_weighted"] for r in results), astm_g_from_grains_per_mm2),
    ]
    rows = []
    for name, quantity_unit, values, count, g_of in quantities:
        stats = sample_statistics(values)
        notes = []
        if n_fields < MIN_FIELDS:
            notes.append(f"{n_fields} fields < {MIN_FIELDS}")
        minimum = MIN_GRAINS_PER_FIELD if "grains" in name else MIN_INTERSECTIONS_PER_FIELD
        if count < minimum * n_fields:
            notes.append(f"{count:g} counts < {minimum} per field")
        if stats["relative_accuracy_pct"] > MAX_RELATIVE_ACCURACY_PCT:
            notes.append(f"%RA {stats['relative_accuracy_pct']:.1f} > {MAX_RELATIVE_ACCURACY_PCT:g}")
        g_value = ""
        if sized:
            g_value = g_of(stats["mean"] * 1e-3) if "intercept" in name else g_of(stats["mean"])
        rows.append({"quantity": name, "unit": quantity_unit, "n_fields": n_fields, **stats, "G_of_mean": g_value,
                     "total_count": count, "warnings": "; ".join(notes)})
    return rows


SAMPLE_COLUMNS = ("quantity", "unit", "n_fields", "n", "mean", "std", "ci95", "ci95_low", "ci95_high",
                  "relative_accuracy_pct", "G_of_mean", "total_count", "warnings")


# ------------------------------------------------------------------ overlay


LINE_COLOUR, CIRCLE_COLOUR = (40, 110, 255), (0, 170, 80)
HIT_COLOUR, TRIPLE_COLOUR = (230, 30, 30), (255, 200, 0)


def overlay_image(labels: np.ndarray, result: FieldGrainSize) -> np.ndarray:
    """Draw the test pattern and its intersections over a label map: RGB uint8 (H, W, 3).

    Grains light grey, boundaries black, test lines blue, circles green, intersections red and
    triple points yellow (3 x 3 dots).
    """
    labels = np.asarray(labels)
    height, width = labels.shape
    rgb = np.where((labels > 0)[..., None], np.uint8(200), np.uint8(0)).repeat(3, axis=2)
    for curve in result.curves:
        rows = np.clip(np.floor(curve.points[:, 0] + 0.5).astype(int), 0, height - 1)
        cols = np.clip(np.floor(curve.points[:, 1] + 0.5).astype(int), 0, width - 1)
        rgb[rows, cols] = CIRCLE_COLOUR if curve.closed else LINE_COLOUR
    for hits in (*result.directions.values(), result.circles):
        for point, triple in zip(hits.points, hits.triple):
            r, c = int(round(point[0])), int(round(point[1]))
            rgb[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = TRIPLE_COLOUR if triple else HIT_COLOUR
    return rgb


# ------------------------------------------------------------------ error of a segmentation


def grain_size_error(truth_labels: np.ndarray, pred_labels: np.ndarray, um_per_px: float | None = None,
                     angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG) -> dict:
    """Measure what a segmentation costs in the grain size a user reports: predicted minus true.

    Parameters
    ----------
    truth_labels, pred_labels : ndarray, shape (H, W)
        Grain label maps (int, 0 = boundary) or boundary maps (bool, True = boundary).
    um_per_px : float, optional
        Pixel size; adds the absolute G values. ΔG does not need it: a pixel size cancels in the
        ratio of two intercepts or two grain densities of the same field.
    angles_deg : sequence of float, optional
        Test-line directions (degrees).

    Returns
    -------
    dict
        ``mean_intercept_true_{u}``, ``mean_intercept_pred_{u}`` (u = um or px),
        ``mean_intercept_rel_error`` ((pred - true) / true), ``delta_G_intercept`` =
        -6.643856 log10(ℓ̄_pred / ℓ̄_true), ``n_grains_weighted_true/pred`` (E112 Jeffries counts),
        ``delta_G_planimetric`` = 3.321928 log10(N_A,pred / N_A,true);
        with ``um_per_px`` also ``G_intercept_true/pred`` and ``G_planimetric_true/pred``.

    Examples
    --------
    A prediction that misses every other boundary doubles the intercept: ΔG = -2.

    >>> import numpy as np
    >>> from grainforge.grains import boundary_from_ids
    >>> from grainforge.grainsize import grain_size_error
    >>> rows, cols = (np.indices((256, 256)) + 8) // 16
    >>> truth = boundary_from_ids(rows * 100 + cols)
    >>> pred = boundary_from_ids((rows // 2) * 100 + cols // 2)
    >>> error = grain_size_error(truth, pred, angles_deg=(0, 90))
    >>> round(error["mean_intercept_rel_error"], 3), round(error["delta_G_intercept"], 2)
    (1.0, -2.0)
    """
    from grainforge.grains import label_grains

    def as_labels(array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        return label_grains(array) if array.dtype == bool else array

    truth, pred = as_labels(truth_labels), as_labels(pred_labels)
    if truth.shape != pred.shape:
        raise ValueError(f"label maps differ in shape: {truth.shape} vs {pred.shape}")
    true_size = field_grain_size(truth, um_per_px, angles_deg)
    pred_size = field_grain_size(pred, um_per_px, angles_deg)
    unit = length_unit(um_per_px)
    l_true, l_pred = true_size.mean_intercept, pred_size.mean_intercept
    n_true, n_pred = true_size.planimetric["n_weighted"], pred_size.planimetric["n_weighted"]
    row = {
        f"mean_intercept_true_{unit}": l_true, f"mean_intercept_pred_{unit}": l_pred,
        "mean_intercept_rel_error": float((l_pred - l_true) / l_true) if math.isfinite(l_true) else float("nan"),
        "delta_G_intercept": -6.643856 * math.log10(l_pred / l_true) + 0.0 if 0 < l_true < math.inf and 0 < l_pred < math.inf
        else float("nan"),
        "n_grains_weighted_true": n_true, "n_grains_weighted_pred": n_pred,
        "delta_G_planimetric": 3.321928 * math.log10(n_pred / n_true) + 0.0 if n_true > 0 and n_pred > 0 else float("nan"),
    }
    if um_per_px:
        row.update(G_intercept_true=astm_g_from_mean_intercept(l_true * 1e-3),
                   G_intercept_pred=astm_g_from_mean_intercept(l_pred * 1e-3),
                   G_planimetric_true=astm_g_from_grains_per_mm2(true_size.grains_per_mm2),
                   G_planimetric_pred=astm_g_from_grains_per_mm2(pred_size.grains_per_mm2))
    return row


# ------------------------------------------------------------------ folders: the grainforge grainsize job


def prediction_pixel_size(path: Path, pred_dir: Path, um_per_px: float | None) -> float | None:
    """Find the pixel size (µm) of one prediction file, or None.

    ``um_per_px`` if given, else the file's TIFF metadata, else the pixel size the run.json of a
    ``grainforge segment predict`` folder records for the file's stem (or for all images).
    """
    if um_per_px is not None:
        return um_per_px
    from grainforge.data.io import check_pixel_size, read_pixel_size

    stored = read_pixel_size(path)
    if stored is not None:
        return stored
    for run_json in (pred_dir / "run.json", pred_dir.parent / "run.json"):
        if run_json.is_file():
            import json

            try:
                record = json.loads(run_json.read_text())
            except (OSError, ValueError):
                continue
            recorded = (record.get("um_per_px_by_image") or {}).get(path.stem, record.get("um_per_px"))
            if recorded is not None:
                return check_pixel_size(recorded, f"{run_json}: um_per_px")
    return None


def grainsize_run(pred_dir: str | os.PathLike, out: str | os.PathLike, um_per_px: float | None = None,
                  angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG, line_spacing_px: float | None = None,
                  boundary_value: str | int = "auto", lines: str = "auto") -> dict:
    """Run the ``grainforge grainsize`` job: E112 intercept and planimetric grain size of every boundary map.

    Parameters
    ----------
    pred_dir : str or path-like
        Folder of boundary maps (255 = boundary, or ``boundary_value``), or a ``segment predict``
        output folder (its ``boundaries/``).
    out : str or path-like
        Output folder: ``fields.csv`` (one row per image), ``sample.csv`` (pooled statistics),
        ``overlays/<stem>.png`` (test lines and intersections), ``run.json``.
    um_per_px : float, optional
        Pixel size (µm); default the TIFF metadata of each file or the prediction run's run.json;
        without one, lengths are in pixels and the G columns are empty.
    angles_deg : sequence of float, optional
        Test-line directions in degrees.
    line_spacing_px : float, optional
        Distance between test lines (pixels); default each image's shorter side / 10.
    boundary_value : {"auto", 0, 255}, optional
        Pixel value of boundaries in the maps.
    lines : {"auto", "as-is"}, optional
        "auto" thins maps drawn wider than 1 px (hand-traced labels) to their centre line, as
        ``evaluate`` reads a truth (:func:`grainforge.metrics.scoring_truth`); "as-is" never thins.

    Returns
    -------
    dict
        ``fields`` (the fields.csv rows), ``sample`` (the sample.csv rows) and ``warnings`` (strings).
    """
    from grainforge.data.io import check_pixel_size, ensure_writable_dir, list_images, write_csv, write_png
    from grainforge.grainstats import label_grains_min_area
    from grainforge.metrics import TRUTH_LINES, _image_folder, _read_prediction, scoring_truth
    from grainforge.runinfo import RunRecord

    if lines not in TRUTH_LINES:
        raise UserError(f"lines: unknown value {lines!r}; use one of {', '.join(TRUTH_LINES)}")

    um_per_px = check_pixel_size(um_per_px)
    folder = _image_folder(Path(pred_dir))
    files = list_images(folder)
    out = ensure_writable_dir(out)
    record = RunRecord(out, command="grainsize", seed=None, config={
        "pred_dir": str(pred_dir), "um_per_px": um_per_px, "angles_deg": [float(a) for a in angles_deg],
        "line_spacing_px": line_spacing_px, "boundary_value": str(boundary_value), "lines": lines})
    results, rows, sizes = [], [], {}
    with record.phase("measure"):
        for path in files:
            sizes[path] = prediction_pixel_size(path, Path(pred_dir), um_per_px)
        known = [path for path, size in sizes.items() if size is not None]
        if known and len(known) < len(files):
            missing = next(path for path, size in sizes.items() if size is None)
            raise UserError(f"{missing}: no pixel size, while {known[0]} has one; pass --um-per-px")
        for path in files:
            labels = label_grains_min_area(scoring_truth(_read_prediction(path, boundary_value), lines))
            result = field_grain_size(labels, sizes[path], angles_deg, line_spacing_px)
            results.append(result)
            rows.append(field_row(path.stem, result))
            write_png(out / "overlays" / f"{path.stem}.png", overlay_image(labels, result))
    sample = sample_rows(results)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    columns.remove("warnings")
    write_csv(out / "fields.csv", rows, [*columns, "warnings"])
    write_csv(out / "sample.csv", sample, SAMPLE_COLUMNS)
    notes = [f"{row['image']}: {row['warnings']}" for row in rows if row["warnings"]]
    notes += [f"sample {row['quantity']}: {row['warnings']}" for row in sample if row["warnings"]]
    for note in notes:
        warnings.warn(note, GrainforgeWarning, stacklevel=2)
    record.write(n_fields=len(rows), um_per_px=[sizes[path] for path in files])
    return {"fields": rows, "sample": sample, "warnings": notes}


def folder_grain_size_errors(pred_dir: str | os.PathLike, true_dir: str | os.PathLike, boundary_value: str | int = "auto",
                             um_per_px: float | None = None, truth_lines: str = "auto",
                             pred_boundary_value: int = 255) -> list[dict]:
    """Compute :func:`grain_size_error` of every (prediction, truth) pair of two folders of boundary maps.

    Files are paired by stem as :func:`grainforge.metrics.pair_files` pairs them, and read as
    :func:`grainforge.metrics.evaluate_folders` reads them: the truth with ``boundary_value``, thick
    lines thinned with ``truth_lines="auto"`` (:func:`grainforge.metrics.scoring_truth`), the
    predictions with ``pred_boundary_value``; each row has ``image`` = stem.
    """
    from grainforge.data.pairs import read_boundary
    from grainforge.grainstats import label_grains_min_area
    from grainforge.metrics import _read_prediction, pair_files, scoring_truth

    rows = []
    for stem, pred_path, true_path in pair_files(pred_dir, true_dir):
        truth = label_grains_min_area(scoring_truth(read_boundary(true_path, boundary_value), truth_lines))
        pred = label_grains_min_area(_read_prediction(pred_path, pred_boundary_value))
        if truth.shape != pred.shape:
            raise UserError(f"{pred_path}: size differs from {true_path}; predict on the same images")
        rows.append({"image": stem, **grain_size_error(truth, pred, um_per_px)})
    return rows


def pooled_delta_g(rows: Sequence[Mapping]) -> dict:
    """Pool :func:`folder_grain_size_errors` rows into the sample's ΔG.

    ``delta_G_intercept``: G of the mean predicted ℓ̄ minus G of the mean true ℓ̄ (E112 reports G of
    the sample mean); ``mean_intercept_rel_error``: the relative error of the mean ℓ̄;
    ``delta_G_planimetric``: from the pooled Jeffries counts (fields of equal area in truth and prediction).
    """
    key = next(k for k in rows[0] if k.startswith("mean_intercept_true_"))
    true = float(np.mean([r[key] for r in rows]))
    pred = float(np.mean([r[key.replace("_true_", "_pred_")] for r in rows]))
    ok = 0 < true < math.inf and 0 < pred < math.inf
    n_true = sum(r["n_grains_weighted_true"] for r in rows)
    n_pred = sum(r["n_grains_weighted_pred"] for r in rows)
    return {"delta_G_intercept": -6.643856 * math.log10(pred / true) if ok else float("nan"),
            "mean_intercept_rel_error": (pred - true) / true if ok else float("nan"),
            "delta_G_planimetric": 3.321928 * math.log10(n_pred / n_true) if n_true > 0 and n_pred > 0 else float("nan")}
