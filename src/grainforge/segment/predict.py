"""Prediction: micrographs of any size -> closed 1-pixel boundaries, grain maps and grain tables.

Boundary probabilities, closed 1-pixel boundaries, grain label maps, overlays, per-grain tables and
a summary with the ASTM E112 planimetric grain-size number (docs/design.md §3.6). The model is a
U-Net (``best.pt``, tiled inference) or a random forest (``forest.skops``); both go through the same
post-processing and write the same outputs.

Also boundary probabilities, overlays and a summary with the ASTM E112 grain-size number.
Output folder: ``probabilities/<stem>.png`` (uint8, 255 = probability 1), ``boundaries/<stem>.png``
(uint8, 255 = boundary), ``labels/<stem>.tif`` (4-connected grain ids, 0 = boundary),
``overlays/<stem>.png`` (boundaries in red over the micrograph), ``grains/<stem>.csv`` and
``summary.csv``, ``run.json``.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from grainforge.data.io import to_uint8
from grainforge.errors import GrainforgeWarning, UserError

GRAIN_CSV_COLUMNS = ("grain", "area_px", "equivalent_diameter_px", "perimeter_px", "n_neighbours", "touches_border",
                     "area_um2", "equivalent_diameter_um")
SUMMARY_COLUMNS = ("image", "height_px", "width_px", "n_grains", "n_interior_grains", "mean_area_px", "n_grains_weighted",
                   "um_per_px", "mean_area_um2", "grains_per_mm2", "astm_g")
OVERLAY_COLOUR = (255, 40, 40)
PNG_COMPRESS_LEVEL = 1
"""zlib level of the written PNGs: the same pixels as the default 6, about 5 % larger files in all, written
3x faster (a 2800 x 1600 micrograph's three PNGs: 0.33 s instead of 1.08 s of CPU)."""


def grain_rows(labels: np.ndarray, um_per_px: float | None = None) -> list[dict]:
    """One row per grain, in the label order of ``labels`` (a :func:`grainforge.grains.label_grains` map).

    Columns: area, equivalent diameter, neighbours and border flag (:func:`grainforge.grainstats.label_table`),
    perimeter (px, as skimage's regionprops: :func:`grainforge.grainstats.grain_perimeters`); in micrometres
    too with ``um_per_px``.
    """
    from grainforge.grainstats import grain_perimeters, label_table

    rows = label_table(labels, um_per_px=um_per_px)
    perimeters = grain_perimeters(labels)
    for row in rows:
        row["perimeter_px"] = float(perimeters[row["grain"]])
    return rows


def summary_row(stem: str, labels: np.ndarray, rows: list[dict], um_per_px: float | None) -> dict:
    """Summarise one image: grain count and mean interior-grain area (all grains if none is interior).

    ``labels``: a :func:`grainforge.grains.label_grains` map, ``rows``: its :func:`grain_rows`.
    ``n_grains_weighted`` is the ASTM E112 Jeffries count (inside 1, cut by the edge 1/2, corner
    grains 1/4 per corner; :func:`grainforge.grainsize.planimetric_count`) of the grains of at least
    3 pixels, as ``grainforge grainsize`` and ``grainforge stats`` count them (docs/design.md §3.4);
    with a pixel size also grains per mm² and the planimetric G.
    """
    from grainforge.grainsize import astm_g_from_grains_per_mm2, planimetric_count
    from grainforge.grainstats import drop_small_grains

    height, width = labels.shape
    interior = [r["area_px"] for r in rows if not r["touches_border"]]
    areas = interior or [r["area_px"] for r in rows]
    summary = {"image": stem, "height_px": height, "width_px": width, "n_grains": len(rows),
               "n_interior_grains": len(interior), "mean_area_px": float(np.mean(areas)) if areas else float("nan"),
               "n_grains_weighted": planimetric_count(drop_small_grains(labels))["n_weighted"]}
    if um_per_px is not None:
        n_a = summary["n_grains_weighted"] / (height * width * (um_per_px * 1e-3) ** 2)
        summary.update(um_per_px=um_per_px, mean_area_um2=summary["mean_area_px"] * um_per_px**2,
                       grains_per_mm2=n_a, astm_g=astm_g_from_grains_per_mm2(n_a))
    return summary


def overlay(image: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3): the grey image with boundary pixels in ``OVERLAY_COLOUR``."""
    grey = to_uint8(image)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[boundary] = OVERLAY_COLOUR
    return rgb


class _Writer:
    """Runs writes one after another on a thread while the caller computes.

    PIL's and tifffile's zlib and the numba kernels release the GIL. As in sequential writing, the writes
    queued after a failed one are skipped; the failure is raised by :meth:`raise_failure` or :meth:`finish`.
    """

    def __init__(self):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="predict-writer")
        self._failed = threading.Event()
        self._queued = []

    def submit(self, function: Callable, *args) -> None:
        self._queued.append(self._pool.submit(self._run, function, args))

    def _run(self, function: Callable, args: tuple) -> None:
        if self._failed.is_set():
            return
        try:
            function(*args)
        except BaseException:
            self._failed.set()
            raise

    def raise_failure(self) -> None:
        """Raise the error of a finished write that failed, if any."""
        for done in [future for future in self._queued if future.done()]:
            self._queued.remove(done)
            done.result()

    def finish(self) -> None:
        """Wait for every queued write; raise the error of one that failed."""
        while self._queued:
            self._queued.pop(0).result()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc) -> bool:
        self._pool.shutdown(wait=True)
        return False


def _write_maps(out: Path, stem: str, image: np.ndarray, boundary: np.ndarray, labels: np.ndarray,
                um_per_px: float | None) -> None:
    """Write the boundary PNG, the label TIFF (uint16 when the ids fit) and the overlay PNG of one image."""
    from grainforge.data.io import write_boundary_png, write_png, write_tiff

    write_boundary_png(out / "boundaries" / f"{stem}.png", boundary, PNG_COMPRESS_LEVEL)
    write_tiff(out / "labels" / f"{stem}.tif", labels.astype(np.uint16 if labels.max() < 2**16 else np.uint32), um_per_px)
    write_png(out / "overlays" / f"{stem}.png", overlay(image, boundary), PNG_COMPRESS_LEVEL)


def gather_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Collect the image files of files and folders (a folder without images but with ``images/`` uses that).

    UserError on a missing path or two images with the same stem.
    """
    from grainforge.data.io import IMAGE_SUFFIXES, list_images

    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in item.iterdir())
            files += list_images(item / "images" if not has_images and (item / "images").is_dir() else item)
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"{item}: no such image or folder; pass micrograph files or folders of them")
    if not files:
        raise UserError("segment predict: no input images; pass micrograph files or folders of them")
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise UserError(f"{path}: same name as {stems[path.stem]}; outputs are named by stem, rename one")
        stems[path.stem] = path
    return files


def segment_image(probability_of: Callable[[np.ndarray], np.ndarray], image: np.ndarray, config,
                  threshold_only: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment a grey image (H x W in [0, 1]): boundary probability, then post-processing.

    Returns (boundary probability float32 H x W, boundary bool H x W, grain labels int32 H x W with
    0 = boundary). Post-processing follows the SegmentConfig's settings (``threshold_only``: plain
    threshold instead of closed boundaries). ``probability_of``: image -> boundary probability (float32
    H x W), e.g. the first item of :func:`load_segmenter`.
    """
    from grainforge.segment.postprocess import postprocess

    probability = probability_of(image)
    return probability, *postprocess(probability, config, threshold_only=threshold_only)


def load_segmenter(model: str | os.PathLike, device: str = "auto") -> tuple[Callable[[np.ndarray], np.ndarray], object, Path, str]:
    """Load a U-Net or a random forest as a boundary-probability function.

    Returns (image (H, W) in [0, 1] -> boundary probability float32 (H, W), its config (a
    PostprocessConfig), model file, device name) of a U-Net (folder with best.pt, or a .pt file) or a
    random forest (folder with forest.skops, or a .skops file; always on the CPU).
    """
    from grainforge.segment.forest import forest_file, forest_probability, load_forest

    if forest_file(model) is not None:
        forest, config, path = load_forest(model)
        return (lambda image: forest_probability(forest, image, config)), config, path, "cpu"
    from grainforge.segment.inference import tiled_probability
    from grainforge.segment.network import load_model, model_file
    from grainforge.torchutil import resolve_device

    torch_device = resolve_device(device)
    network, config, _ = load_model(model, torch_device)
    return (lambda image: tiled_probability(network, image, config.tile, config.overlap)), config, model_file(model), \
        str(torch_device)


def predict(model_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike], out: str | os.PathLike,
            um_per_px: float | None = None, device: str = "auto", progress: bool = True,
            threshold_only: bool = False) -> list[dict]:
    """Segment micrographs into closed 1-pixel grain boundaries and grains (docs/design.md §8.5).

    The library function behind ``grainforge segment predict``: the boundary probability (a U-Net's
    tiled, Hann-blended inference, or a random forest's per-pixel classification), then watershed
    closing to 1-pixel boundaries whose 4-connected grains are measured.

    Parameters
    ----------
    model_dir : str or path-like
        Model folder written by :func:`grainforge.segment.train_segmenter` (its ``best.pt``) or by
        :func:`grainforge.segment.forest.train_forest` (its ``forest.skops``), or such a file.
    inputs : sequence of str or path-like
        Micrograph files and/or folders of them, any size (a folder without images but with
        ``images/`` uses that). Outputs are named by file stem, so stems must be unique.
    out : str or path-like
        Output folder: ``boundaries/<stem>.png`` (uint8, 255 = boundary), ``labels/<stem>.tif``
        (grain ids, 0 = boundary), ``probabilities/<stem>.png`` (uint8, 255 = probability 1),
        ``overlays/<stem>.png``, ``grains/<stem>.csv`` (one row per grain), ``summary.csv`` and
        ``run.json``.
    um_per_px : float, optional
        Pixel size in micrometres: adds areas in um^2, diameters in um, grains per mm^2
        (Jeffries planimetric count, corner grains 1/4) and the ASTM E112 grain-size number G,
        and is written into ``labels/<stem>.tif``. Default: each TIFF input's own pixel size
        (:func:`grainforge.data.io.read_pixel_size`), else none.
    device : str, optional
        "auto" (CUDA when torch sees it, else CPU), "cpu" or "cuda".
    progress : bool, optional
        Show a progress bar.
    threshold_only : bool, optional
        Write plain thresholded boundaries (probability > ``config.threshold``, gaps left open)
        instead of the closed watershed boundaries.

    Returns
    -------
    summary : list of dict
        One row per image (the rows of ``summary.csv``): ``image`` (stem), ``height_px``,
        ``width_px``, ``n_grains``, ``n_interior_grains``, ``mean_area_px`` (interior grains, or all
        if none is interior), ``n_grains_weighted`` (E112 Jeffries count) and with a pixel size also
        ``um_per_px``, ``mean_area_um2``, ``grains_per_mm2`` and ``astm_g``. With a pixel size, fields with fewer than 50 weighted
        grains (E112's minimum) issue one :class:`~grainforge.errors.GrainforgeWarning`.

    References
    ----------
    .. [1] ASTM E112-13. Standard test methods for determining average grain size. ASTM
           International, West Conshohocken, PA.

    Examples
    --------
    A tiny U-Net after one training iteration, applied to a 48 x 40 micrograph:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from grainforge.data.io import to_uint8, write_png
    >>> from grainforge.data.pairs import Pair
    >>> from grainforge.grains import boundary_from_ids
    >>> from grainforge.segment import SegmentConfig, predict, train_segmenter
    >>> rows, cols = np.indices((64, 64)) // 16
    >>> boundary = boundary_from_ids(4 * rows + cols)
    >>> image = np.where(boundary, 0.2, 0.8).astype(np.float32)
    >>> config = SegmentConfig(width=4, depth=2, iters=1, batch_size=2, crop=32, tile=32)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> model = train_segmenter(None, Path(tmp.name) / "unet", config, real_pairs=[Pair("a", image, boundary)],
    ...                         device="cpu", progress=False)
    >>> write_png(Path(tmp.name) / "micrographs" / "m0.png", to_uint8(image[:48, :40]))
    >>> summary = predict(model, [Path(tmp.name) / "micrographs"], Path(tmp.name) / "pred", um_per_px=0.5,
    ...                   device="cpu", progress=False)
    >>> summary[0]["image"], summary[0]["height_px"], summary[0]["width_px"], summary[0]["um_per_px"]
    ('m0', 48, 40, 0.5)
    >>> sorted(path.name for path in (Path(tmp.name) / "pred").iterdir())
    ['boundaries', 'grains', 'labels', 'overlays', 'probabilities', 'run.json', 'summary.csv']
    >>> tmp.cleanup()
    """
    from grainforge.config import config_to_dict
    from grainforge.data.io import check_pixel_size, ensure_writable_dir, read_grey, read_pixel_size, write_csv, write_png
    from grainforge.grainsize import MIN_GRAINS_PER_FIELD
    from grainforge.progress import progress_bar
    from grainforge.runinfo import RunRecord
    from grainforge.segment.postprocess import postprocess

    um_per_px = check_pixel_size(um_per_px, "um_per_px")
    load_start = time.perf_counter()
    probability_of, config, model_path, device_name = load_segmenter(model_dir, device)
    load_s = time.perf_counter() - load_start
    files = gather_images(inputs)
    out = ensure_writable_dir(out)
    record = RunRecord(out, command="segment predict", config=config_to_dict(config), seed=None)
    record.data["timings_s"]["model loading"] = load_s  # timed before the record could exist (it needs the config)
    sizes = {path: um_per_px if um_per_px is not None else read_pixel_size(path) for path in files}
    summary = []
    with progress_bar(disable=not progress) as bar, _Writer() as writer:
        task = bar.add_task("segment predict", total=len(files))
        for path in files:
            stem, size = path.stem, sizes[path]
            with record.phase("reading"):
                image = read_grey(path)
            with record.phase("inference"):
                probability = probability_of(image)
            writer.submit(lambda stem=stem, probability=probability: write_png(
                out / "probabilities" / f"{stem}.png", to_uint8(probability), PNG_COMPRESS_LEVEL))
            with record.phase("post-processing"):
                boundary, labels = postprocess(probability, config, threshold_only=threshold_only)
            writer.submit(_write_maps, out, stem, image, boundary, labels, size)
            with record.phase("grain table"):
                rows = grain_rows(labels, size)
                summary.append(summary_row(stem, labels, rows, size))
            writer.submit(write_csv, out / "grains" / f"{stem}.csv", rows, GRAIN_CSV_COLUMNS if size else GRAIN_CSV_COLUMNS[:6])
            writer.raise_failure()
            bar.update(task, advance=1)
        with record.phase("writing"):  # what the writer still has to do after the last image's computation
            writer.finish()
    few = [row for row in summary if row["n_grains_weighted"] < MIN_GRAINS_PER_FIELD]
    if few and any(size is not None for size in sizes.values()):
        warnings.warn(f"{len(few)} of {len(summary)} fields (e.g. {few[0]['image']}: {few[0]['n_grains_weighted']:g}) hold "
                      f"fewer than the {MIN_GRAINS_PER_FIELD} grains ASTM E112 asks for a planimetric count; report the "
                      "grain size of several fields pooled (grainforge grainsize)", GrainforgeWarning, stacklevel=2)
    any_size = any(size is not None for size in sizes.values())
    write_csv(out / "summary.csv", summary, SUMMARY_COLUMNS if any_size else SUMMARY_COLUMNS[:7])
    uniform = set(sizes.values())
    record.write(model=str(model_path), inputs=[str(p) for p in files],
                 um_per_px=uniform.pop() if len(uniform) == 1 else None,
                 um_per_px_by_image={p.stem: sizes[p] for p in files}, threshold_only=threshold_only, device=device_name)
    return summary
