"""The notebook API: each pipeline stage as one function with numpy arrays in and out (docs/api.md).

The command-line stages read and write folders; these functions take and return arrays and touch the
disk only to load model files. Conventions (docs/design.md §3.1): images are float32 (H, W) in [0, 1];
boundary maps are bool (H, W), True = boundary; grain label maps are int32 (H, W), 0 = boundary,
1..n = the 4-connected grains. Lengths and areas are in pixels, or in micrometres where a name ends in
``_um`` / ``_um2`` (given a pixel size ``um_per_px``). Errors in the inputs raise
:class:`grainforge.errors.UserError` naming the argument and the fix.

Progress bars (``progress=True``) are drawn live in a terminal and in Jupyter (with ``ipywidgets``), as
plain periodic lines elsewhere (:mod:`grainforge.progress`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from grainforge.errors import UserError
from grainforge.grains import label_grains
from grainforge.microscope import render

__all__ = ["Segmentation", "Segmenter", "StyleModel", "apply_style", "as_grey", "evaluate", "grain_size",
           "label_grains", "load_image", "load_segmenter", "load_style", "render", "segment_image", "simulate",
           "slice"]


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read a micrograph file as a grey image.

    Parameters
    ----------
    path : str or path-like
        PNG, TIFF, JPEG or BMP; 8- or 16-bit; grey or RGB (converted to grey by luma).

    Returns
    -------
    image : ndarray of float32, shape (H, W)
        Grey levels in [0, 1], scaled by the file's integer range.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from grainforge import api as gf
    >>> from grainforge.data.io import write_png
    >>> tmp = tempfile.TemporaryDirectory()
    >>> write_png(Path(tmp.name) / "m.png", np.array([[0, 51], [255, 255]], np.uint8))
    >>> gf.load_image(Path(tmp.name) / "m.png")
    array([[0. , 0.2],
           [1. , 1. ]], dtype=float32)
    >>> tmp.cleanup()
    """
    from grainforge.data.io import read_grey

    return read_grey(path)


def as_grey(image: np.ndarray) -> np.ndarray:
    """Convert a micrograph array to a grey float32 image in [0, 1].

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3 | 4)
        Integers are scaled by their type's range (the 8-bit range when the values fit in it); floats
        in [0, 1] are kept, other floats are min-max scaled; colour becomes grey by luma.

    Returns
    -------
    grey : ndarray of float32, shape (H, W)

    Raises
    ------
    grainforge.errors.UserError
        If the array is not one 2D image.

    Examples
    --------
    >>> import numpy as np
    >>> from grainforge import api as gf
    >>> gf.as_grey(np.array([[0, 65535]], np.uint16)), gf.as_grey(np.array([[0, 51]], np.uint8))
    (array([[0., 1.]], dtype=float32), array([[0. , 0.2]], dtype=float32))
    """
    from grainforge.data.pairs import grey_unit

    array = np.asarray(image)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))) or min(array.shape[:2]) < 1:
        raise UserError(f"image: shape {array.shape} is not one image; pass an (H, W) grey or (H, W, 3) colour array")
    return grey_unit(array)


def _boundary_map(array: Any, name: str) -> np.ndarray:
    """Read a bool, 0/1 or 0/255 array (H, W) as a bool boundary map; UserError naming ``name`` otherwise."""
    from grainforge.data.pairs import DEFAULT_IGNORE_VALUE

    array = np.asarray(array)
    if array.ndim != 2:
        raise UserError(f"{name}: shape {array.shape}; a boundary map is one (H, W) array")
    if array.dtype == bool:
        return array
    values = np.unique(array)
    if np.isin(values, (0, 1)).all() or np.isin(values, (0, 255)).all():
        return array > 0
    if DEFAULT_IGNORE_VALUE in values and np.isin(values, (0, 255, DEFAULT_IGNORE_VALUE)).all():
        raise UserError(f"{name}: a sparse label ({int(np.sum(array == DEFAULT_IGNORE_VALUE))} untraced pixels of value "
                        f"{DEFAULT_IGNORE_VALUE}); scores and grain sizes need every boundary traced")
    raise UserError(f"{name}: not a boundary map (values {', '.join(map(str, values[:4]))}...); pass a bool array, "
                    f"True = boundary (or 0/1, 0/255)")


class Segmenter(NamedTuple):
    """A loaded segmentation model (:func:`load_segmenter`).

    ``probability``: image float32 (H, W) in [0, 1] -> boundary probability float32 (H, W);
    ``config``: its post-processing settings (a SegmentConfig or ForestConfig); ``path``: the model file;
    ``device``: where it runs ("cpu", "cuda").
    """

    probability: Callable[[np.ndarray], np.ndarray]
    config: Any
    path: Path
    device: str


class Segmentation(NamedTuple):
    """What :func:`segment_image` returns; unpacks as ``boundary, labels, table``."""

    boundary: np.ndarray
    labels: np.ndarray
    table: dict[str, np.ndarray]


def load_segmenter(path: str | os.PathLike, device: str = "auto") -> Segmenter:
    """Load a segmentation model written by ``grainforge segment train`` (U-Net or random forest).

    Parameters
    ----------
    path : str or path-like
        A model folder (holding ``best.pt`` or ``forest.skops``) or such a file.
    device : str, optional
        "auto" (CUDA when torch sees it, else CPU), "cpu" or "cuda"; a forest always runs on the CPU.

    Returns
    -------
    model : Segmenter
        ``probability`` (image (H, W) in [0, 1] -> boundary probability (H, W)), ``config``, ``path``,
        ``device``.

    Raises
    ------
    grainforge.errors.UserError
        If there is no model there, or the file is corrupt or not a grainforge model.

    Examples
    --------
    A forest trained in a second on one 48-pixel image of 12-pixel square grains:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from grainforge import api as gf
    >>> from grainforge.data.pairs import Pair
    >>> from grainforge.grains import boundary_from_ids
    >>> from grainforge.segment import ForestConfig, train_forest
    >>> rows, cols = np.indices((48, 48)) // 12
    >>> boundary = boundary_from_ids(4 * rows + cols)
    >>> image = np.where(boundary, 0.2, 0.8).astype(np.float32)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = train_forest(None, Path(tmp.name) / "forest", ForestConfig(n_estimators=5, num_sigma=2, n_jobs=1),
    ...                       real_pairs=[Pair("a", image, boundary)], progress=False)
    >>> model = gf.load_segmenter(folder)
    >>> model.path.name, model.device, model.probability(image).shape
    ('forest.skops', 'cpu', (48, 48))
    >>> tmp.cleanup()
    """
    from grainforge.segment.predict import load_segmenter as load

    probability, config, model_path, device_name = load(path, device)
    return Segmenter(probability, config, Path(model_path), device_name)


def segment_image(model: Segmenter | str | os.PathLike, image: np.ndarray, um_per_px: float | None = None,
                  threshold_only: bool = False) -> Segmentation:
    """Segment one micrograph into closed 1-pixel boundaries, grains and a per-grain table (docs/design.md §8.5).

    Parameters
    ----------
    model : Segmenter, str or path-like
        A model from :func:`load_segmenter`, or a model folder / file to load (on the default device).
    image : ndarray, shape (H, W) or (H, W, 3)
        The micrograph, any size (:func:`as_grey` converts it).
    um_per_px : float, optional
        Pixel size in micrometres (> 0): adds ``area_um2`` and ``equivalent_diameter_um`` to the table.
    threshold_only : bool, optional
        Plain thresholded boundaries (gaps left open) instead of the closed watershed boundaries.

    Returns
    -------
    boundary : ndarray of bool, shape (H, W)
        True on boundary pixels.
    labels : ndarray of int32, shape (H, W)
        0 on boundaries, 1..n on the grains.
    table : dict of str to ndarray
        One entry per grain, in label order: ``grain`` (its label), ``area_px``,
        ``equivalent_diameter_px`` (of the circle of the same area), ``perimeter_px``, ``n_neighbours``,
        ``touches_border`` (bool), and with ``um_per_px`` ``area_um2`` and ``equivalent_diameter_um``.
        ``pandas.DataFrame(table)`` makes it a data frame.

    Raises
    ------
    grainforge.errors.UserError
        On a bad image, pixel size or model.

    Examples
    --------
    A virtual-microscope image of 22 grains, segmented by a forest trained on it in a second:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from grainforge import api as gf
    >>> from grainforge.data.pairs import Pair
    >>> from grainforge.grains import boundary_from_ids
    >>> from grainforge.microscope import voronoi_grains
    >>> from grainforge.segment import ForestConfig, train_forest
    >>> truth = boundary_from_ids(voronoi_grains(80, mean_area_px=400, seed=0))
    >>> image = gf.render(truth, seed=0)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = train_forest(None, Path(tmp.name) / "forest", ForestConfig(n_estimators=5, num_sigma=2, n_jobs=1),
    ...                       real_pairs=[Pair("a", image, truth)], progress=False)
    >>> found, labels, table = gf.segment_image(folder, image, um_per_px=0.5)
    >>> found.shape, labels.dtype, list(table)
    ((80, 80), dtype('int32'), ['grain', 'area_px', 'equivalent_diameter_px', 'perimeter_px', 'n_neighbours', \
'touches_border', 'area_um2', 'equivalent_diameter_um'])
    >>> bool((table["grain"] == range(1, labels.max() + 1)).all()), bool(table["area_um2"].sum() == (labels > 0).sum() / 4)
    (True, True)
    >>> bool(gf.evaluate(truth, found)["ari"] > 0.9)
    True
    >>> tmp.cleanup()
    """
    from grainforge.segment.predict import GRAIN_CSV_COLUMNS, grain_rows
    from grainforge.segment.predict import segment_image as segment

    _check_pixel_size(um_per_px)
    model = model if isinstance(model, Segmenter) else load_segmenter(model)
    _, boundary, labels = segment(model.probability, as_grey(image), model.config, threshold_only)
    rows = grain_rows(labels, um_per_px)
    columns = GRAIN_CSV_COLUMNS if um_per_px is not None else GRAIN_CSV_COLUMNS[:6]
    return Segmentation(boundary, labels, {name: np.array([row[name] for row in rows]) for name in columns})


def _check_pixel_size(um_per_px: float | None) -> None:
    if um_per_px is not None and not um_per_px > 0:
        raise UserError(f"um_per_px {um_per_px}: the pixel size must be > 0 micrometres per pixel")


def grain_size(labels: np.ndarray, um_per_px: float | None = None) -> dict[str, float]:
    """ASTM E112 grain size of one segmented image: planimetric (Jeffries) and lineal intercept.

    Parameters
    ----------
    labels : ndarray, shape (H, W)
        A grain label map (integers, 0 = boundary) or a bool boundary map (True = boundary). The grains
        are the 4-connected components of the non-boundary pixels, renumbered.
    um_per_px : float, optional
        Pixel size in micrometres (> 0).

    Returns
    -------
    summary : dict
        ``height_px``, ``width_px``, ``n_grains``, ``n_interior_grains`` (not touching the border),
        ``mean_area_px`` (of the interior grains, of all if none is interior), ``n_grains_weighted``
        (Jeffries: inside 1, cut by an edge ½, holding a corner ¼), ``mean_intercept_px`` (Heyn line grids
        at 0/45/90/135°, :func:`grainforge.grainsize.field_grain_size`) and ``anisotropy``; with
        ``um_per_px`` also ``um_per_px``, ``mean_area_um2``, ``grains_per_mm2`` (the weighted count per
        mm^2 of image), ``astm_g`` (G = 3.321928 log10 N_A - 2.954), ``mean_intercept_um`` and
        ``G_intercept`` (G = -6.643856 log10 ℓ̄[mm] - 3.288).

    Raises
    ------
    grainforge.errors.UserError
        On a pixel size <= 0 or an array that is not one label map.

    Examples
    --------
    Nine 10 x 10 grains on a 32 x 32 image of 0.5 um pixels, one inside, four on edges, four in corners:

    >>> import numpy as np
    >>> from grainforge import api as gf
    >>> boundary = np.zeros((32, 32), bool); boundary[[10, 21]] = True; boundary[:, [10, 21]] = True
    >>> size = gf.grain_size(boundary, um_per_px=0.5)
    >>> size["n_grains"], size["n_interior_grains"], size["mean_area_px"], size["mean_area_um2"]
    (9, 1, 100.0, 25.0)
    >>> size["n_grains_weighted"], round(size["grains_per_mm2"]), round(size["astm_g"], 2)
    (4.0, 15625, 10.98)
    """
    from grainforge.grainsize import astm_g_from_mean_intercept, field_grain_size
    from grainforge.segment.predict import grain_rows, summary_row

    _check_pixel_size(um_per_px)
    array = np.asarray(labels)
    if array.ndim != 2:
        raise UserError(f"labels: shape {array.shape}; pass one (H, W) grain label map (0 = boundary) or boundary map")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"labels: dtype {array.dtype}; pass integer grain labels (0 = boundary) or a bool boundary map")
    boundary = array if array.dtype == bool else array == 0
    grains = label_grains(boundary)
    summary = summary_row("", grains, grain_rows(grains, um_per_px), um_per_px)
    summary.pop("image")
    intercept = field_grain_size(grains, um_per_px)
    summary.update(mean_intercept_px=intercept.mean_intercept / intercept.scale, anisotropy=intercept.anisotropy)
    if um_per_px is not None:
        summary.update(mean_intercept_um=intercept.mean_intercept,
                       G_intercept=astm_g_from_mean_intercept(intercept.mean_intercept * 1e-3))
    return summary


def simulate(size: int | tuple[int, int, int], mcs: int | None, kT: float = 0.5, seed: int = 0,
             progress: bool = True, **options) -> np.ndarray:
    """Grow a 3D polycrystal by Monte Carlo Potts grain growth (docs/design.md §5), in memory.

    Parameters
    ----------
    size : int or tuple of 3 int
        Lattice side L or (Lx, Ly, Lz) in voxels, each even and >= 4.
    mcs : int or None
        Monte Carlo steps (None: until ``target_grain_size`` in ``options``).
    kT : float, optional
        Temperature in units of the boundary energy J (the paper: 0.5).
    seed : int, optional
        Fixes the volume.
    progress : bool, optional
        Show progress.
    **options
        ``proposal``, ``threads``, ``target_grain_size``, ``target_kind``, ``log_every`` of
        :func:`grainforge.potts.simulate` (which also returns the growth log and writes run folders).

    Returns
    -------
    volume : ndarray of uint32, shape (Lx, Ly, Lz)
        Grain id per voxel.

    Examples
    --------
    >>> from grainforge import api as gf
    >>> volume = gf.simulate(8, 4, seed=0, progress=False)
    >>> volume.shape, volume.dtype, len(set(volume.ravel().tolist())) < 8**3
    ((8, 8, 8), dtype('uint32'), True)
    """
    from grainforge.potts import simulate as potts_simulate

    return potts_simulate(size, mcs, kT, seed, progress=progress, **options).ids


def slice(volume: np.ndarray, axes: str = "z", stride: int = 1, zoom: float | None = None,
          match_mean_area: float | None = None, boundary_width: float | None = None) -> dict[str, np.ndarray]:
    """Cut 2D sections of a grain-id volume and draw their boundary maps (docs/design.md §6).

    Parameters
    ----------
    volume : ndarray of int, shape (Lx, Ly, Lz)
        Grain ids, e.g. from :func:`simulate`.
    axes : str, optional
        Section normals: distinct letters of "xyz".
    stride : int, optional
        Every ``stride``-th plane along each axis.
    zoom : float, optional
        Resample the sections by this factor (> 0), with smooth boundaries.
    match_mean_area : float, optional
        Choose the zoom so that the mean interior grain area is this many pixels (exclusive with ``zoom``).
    boundary_width : float, optional
        Draw the lines this many pixels wide (>= 1) instead of 1 px, as hand-traced labels are.

    Returns
    -------
    sections : dict of str to ndarray of bool
        Name (axis and plane, e.g. ``"z0008"``) -> boundary map (H, W), closed lines, True = boundary.

    Examples
    --------
    Two grains meeting at the plane x = 3:

    >>> import numpy as np
    >>> from grainforge import api as gf
    >>> volume = np.zeros((6, 4, 4), np.uint32); volume[3:] = 1
    >>> sections = gf.slice(volume, axes="z", stride=2)
    >>> list(sections), sections["z0000"].shape
    (['z0000', 'z0002'], (6, 4))
    >>> sections["z0000"].astype(int)
    array([[0, 0, 0, 0],
           [0, 0, 0, 0],
           [1, 1, 1, 1],
           [0, 0, 0, 0],
           [0, 0, 0, 0],
           [0, 0, 0, 0]])
    """
    from grainforge.labelwidth import draw_at_width
    from grainforge.sections import _check_options, iter_sections, relabel, section_labels, zoom_for_mean_area, zoom_ids

    volume = np.asarray(volume)
    if volume.ndim != 3 or not np.issubdtype(volume.dtype, np.integer):
        raise UserError(f"volume: shape {volume.shape}, dtype {volume.dtype}; pass a 3D integer grain-id array")
    _check_options(axes, stride, zoom, match_mean_area, None)
    if boundary_width is not None and not boundary_width >= 1.0:
        raise UserError(f"boundary_width {boundary_width}: must be a line width of at least 1 px")
    sections = list(iter_sections(volume, axes, stride))
    if match_mean_area is not None:
        zoom = zoom_for_mean_area([ids for _, ids in sections], match_mean_area)
    boundaries = {}
    for name, ids in sections:
        boundary = section_labels(ids if zoom is None else zoom_ids(relabel(ids), zoom))[1]
        boundaries[name] = boundary if boundary_width is None else draw_at_width(boundary, boundary_width)
    return boundaries


class StyleModel(NamedTuple):
    """A loaded pix2pix generator (:func:`load_style`).

    ``generator``: the network; ``config``: its StyleConfig; ``label_width_px``: the line width (px) of the
    labels it was trained on (None if unknown); ``device``: its torch device.
    """

    generator: Any
    config: Any
    label_width_px: float | None
    device: Any


def load_style(path: str | os.PathLike, device: str = "auto") -> StyleModel:
    """Load a pix2pix generator written by ``grainforge style train`` (docs/design.md §7).

    Parameters
    ----------
    path : str or path-like
        The model folder (holding ``generator.pt``) or that file.
    device : str, optional
        "auto" (CUDA when torch sees it, else CPU), "cpu" or "cuda".

    Returns
    -------
    model : StyleModel

    Examples
    --------
    See :func:`apply_style`.
    """
    from grainforge.style.apply import _load_generator_file
    from grainforge.torchutil import resolve_device

    torch_device = resolve_device(device)
    generator, config, payload = _load_generator_file(path, torch_device)
    return StyleModel(generator, config, payload.get("label_width_px"), torch_device)


def apply_style(model: StyleModel | str | os.PathLike, boundary: np.ndarray, seed: int = 0,
                dropout: bool | None = None, match_width: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Paint a trained pix2pix style onto a boundary map: a synthetic micrograph that carries it (docs/design.md §7.3).

    Parameters
    ----------
    model : StyleModel, str or path-like
        From :func:`load_style`, or a style model folder to load.
    boundary : ndarray of bool, shape (H, W)
        Any size (True = boundary; 0/1 and 0/255 arrays are accepted).
    seed : int, optional
        Seed of the generator's dropout noise.
    dropout : bool, optional
        Keep dropout on (pix2pix's noise); default: the model config's ``inference_dropout``.
    match_width : bool, optional
        Redraw the lines at the width of the model's training labels first (a message says so).

    Returns
    -------
    image : ndarray of float32, shape (H, W)
        The synthetic micrograph, in [0, 1].
    boundary : ndarray of bool, shape (H, W)
        Its label: the boundary map as painted (redrawn when ``match_width`` changed its width).

    Examples
    --------
    A one-iteration generator paints a 40 x 50 map of 16-pixel squares:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from grainforge import api as gf
    >>> from grainforge.data.pairs import Pair
    >>> from grainforge.grains import boundary_from_ids
    >>> from grainforge.style import StyleConfig, train_style
    >>> rows, cols = np.indices((64, 64)) // 16
    >>> boundary = boundary_from_ids(4 * rows + cols)
    >>> config = StyleConfig(crop=32, ngf=4, ndf=4, iters=1, sample_every=0, checkpoint_every=0, n_samples=1)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = train_style(None, config, Path(tmp.name) / "style", device="cpu", progress=False,
    ...                      pairs=[Pair("a", np.where(boundary, 0.2, 0.8).astype(np.float32), boundary)])
    >>> image, painted = gf.apply_style(gf.load_style(folder, device="cpu"), boundary[:40, :50])
    >>> image.shape, image.dtype, bool(0 <= image.min() <= image.max() <= 1), bool((painted == boundary[:40, :50]).all())
    ((40, 50), dtype('float32'), True, True)
    >>> tmp.cleanup()
    """
    from grainforge.style.apply import match_label_width, paint

    model = model if isinstance(model, StyleModel) else load_style(model)
    boundary = _boundary_map(boundary, "boundary")
    if match_width:
        ((_, boundary),), _ = match_label_width([("boundary", boundary)], model.label_width_px, True, "the boundary map")
    dropout = model.config.inference_dropout if dropout is None else dropout
    return paint(model.generator, boundary, model.config, device=model.device, dropout=dropout, seed=seed), boundary


def evaluate(truth: np.ndarray, prediction: np.ndarray, ari_mode: str = "paper") -> dict[str, float]:
    """Score a predicted boundary map against the true one (docs/design.md §4).

    Parameters
    ----------
    truth, prediction : ndarray of bool, shape (H, W)
        Boundary maps (True = boundary; 0/1 and 0/255 arrays are accepted), grains 4-connected. A sparse
        truth (pixels of the ignore value 128) is refused: the scores need every boundary traced.
    ari_mode : {"paper", "grains"}, optional
        ARI with the boundary as one more cluster, or with boundary pixels given to the nearest grain.

    Returns
    -------
    scores : dict
        ``map`` (mean average precision over IoU 0.50:0.05:0.95), ``ari``, ``vi_split``, ``vi_merge``
        (bits), ``boundary_precision``, ``boundary_recall``, ``boundary_f1`` (2-px tolerance), ``n_true``,
        ``n_pred``.

    Examples
    --------
    A boundary one pixel off: every grain still matches at IoU 0.5, few at 0.95:

    >>> import numpy as np
    >>> from grainforge import api as gf
    >>> truth = np.zeros((4, 6), bool); truth[:, 3] = True
    >>> prediction = np.zeros((4, 6), bool); prediction[:, 2] = True
    >>> scores = gf.evaluate(truth, prediction)
    >>> scores["map"], scores["boundary_f1"], scores["n_true"]
    (0.4, 1.0, 2)
    """
    from grainforge.metrics import ARI_MODES, evaluate_boundaries

    if ari_mode not in ARI_MODES:
        raise UserError(f"ari_mode {ari_mode!r}: use one of {', '.join(ARI_MODES)}")
    truth, prediction = _boundary_map(truth, "truth"), _boundary_map(prediction, "prediction")
    if truth.shape != prediction.shape:
        raise UserError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape; score the same image")
    return evaluate_boundaries(truth, prediction, ari_mode)
