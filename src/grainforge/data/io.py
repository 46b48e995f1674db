"""File IO shared by every stage. Every writer is atomic: it writes a temporary file in the
target folder and renames it into place, so an interrupted run never leaves a half-written file.

Images are read as 2D arrays (H, W); colour is converted to grey. Errors are :class:`UserError`
naming the file. Pixel sizes are micrometres per pixel (µm/px): :func:`read_pixel_size` reads them
from TIFF metadata and :func:`write_tiff` writes them (docs/design.md §3.6).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from grainforge.errors import UserError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
# Length units as TIFF, ImageJ and OME metadata spell them -> micrometres per unit.
LENGTH_UNITS_UM = {
    "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3, "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4, "m": 1e6, "meter": 1e6, "metre": 1e6,
    "in": 25400.0, "inch": 25400.0, "pm": 1e-6, "\u00c5": 1e-4, "angstrom": 1e-4,
}
_TIFF_RESOLUTION_UNIT_UM = {3: 1e4}  # ResolutionUnit 3 = centimetre; 2 (inch) is skipped: 72/96/300 dpi are display defaults
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary name keeps the suffix so that writers choosing a format by suffix work.
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create folder {path.parent}: {err.strerror}; choose a writable output folder") from err
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (a folder store such as zarr).

    On any exception the temporary folder is removed and ``path`` is untouched. An existing ``path``
    is renamed aside, the new folder renamed into place, then the old one deleted.
    """
    import shutil

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create folder {path.parent}: {err.strerror}; choose a writable output folder") from err
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder the usual mode
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp_path, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check that files can be written there."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test"):
            pass
    except OSError as err:
        raise UserError(f"output folder {path} is not writable ({err.strerror}); choose another output folder") from err
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in ``folder`` (not recursive), sorted by name; UserError if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; pass a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise UserError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); check the path")
    return files


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as a 2D array (H, W) in its stored dtype; RGB(A) becomes grey (luma)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty; replace or remove it")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as img:
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                    array = np.array(img)
                else:
                    array = np.array(img.convert("L") if img.mode not in ("L", "1") else img)
    except Exception as err:  # any decoder failure is the file's fault
        raise UserError(f"{path}: unreadable image ({type(err).__name__}: {err}); re-export it as PNG or TIFF") from err
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3].astype(np.float64)
        grey = rgb @ np.array([0.299, 0.587, 0.114])
        array = np.round(grey).astype(array.dtype) if np.issubdtype(array.dtype, np.integer) else grey
    if array.ndim != 2:
        raise UserError(f"{path}: expected a 2D image, got shape {array.shape}; save one image per file")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    return array


def length_unit_um(unit: str, source: str = "unit") -> float:
    """Micrometres in one ``unit`` (e.g. "um", "µm", "micron", "nm", "mm"); UserError naming
    ``source`` for an unknown unit."""
    key = str(unit).strip()
    factor = LENGTH_UNITS_UM.get(key, LENGTH_UNITS_UM.get(key.lower()))
    if factor is None:
        raise UserError(f"{source}: unknown length unit {unit!r}; use one of um, nm, mm, cm, m, inch")
    return factor


def area_in_px(text: str, um_per_px: float | None, source: str = "area") -> float:
    """An area given as text, in pixels: "1500" or "1500 px" (pixels), or "75 um2" / "75 µm²" /
    "0.01 mm^2" (any unit of :data:`LENGTH_UNITS_UM` squared), which needs ``um_per_px``.
    UserError naming ``source`` for an unknown unit, a missing pixel size or an area <= 0."""
    match = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*", str(text))
    if match is None:
        raise UserError(f"{source}: {text!r} is not an area; give e.g. 1500 (pixels) or 75um2")
    value, unit = float(match.group(1)), match.group(2)
    if not value > 0:
        raise UserError(f"{source}: area {text!r} must be > 0")
    squared = re.fullmatch(r"(.+?)(?:\^?2|\u00b2)", unit)
    if unit == "" or unit.lower() in ("px", "pixel", "pixels") or (squared and squared.group(1).lower() in ("px", "pixel", "pixels")):
        return value
    if squared is None:
        raise UserError(f"{source}: unknown area unit {unit!r}; use px, or a squared length such as um2, µm², mm^2")
    factor = length_unit_um(squared.group(1), source)
    if um_per_px is None:
        raise UserError(f"{source}: {text!r} is a physical area; give the pixel size with --um-per-px, or the area in px")
    return value * factor**2 / um_per_px**2


def check_pixel_size(um_per_px: float | None, source: str = "--um-per-px") -> float | None:
    """``um_per_px`` as a float, or None; UserError naming ``source`` unless it is finite and > 0."""
    if um_per_px is None:
        return None
    value = float(um_per_px)
    if not (np.isfinite(value) and value > 0):
        raise UserError(f"{source} {um_per_px}: must be > 0 (micrometres per pixel)")
    return value


def read_pixel_size(path: str | os.PathLike) -> float | None:
    """Pixel size (micrometres per pixel) stored in an image file, or None when it holds none.

    Read from TIFF files only, in this order: OME-XML ``PhysicalSizeX`` / ``PhysicalSizeXUnit``
    (default µm); ImageJ metadata (``unit`` with the resolution tags as pixels per unit); the TIFF
    resolution tags with ``ResolutionUnit`` centimetre. Resolution in inches is ignored (image
    editors write 72 or 96 dpi whatever the scale). UserError naming the file for an unknown unit,
    a size <= 0 or non-square pixels (x and y sizes differing by more than 0.1 %).
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            sizes = (_ome_pixel_size(tif.ome_metadata, path) if tif.is_ome and tif.ome_metadata else None) \
                or _imagej_pixel_size(tif.imagej_metadata, page, path) or _tag_pixel_size(page)
    except UserError:
        raise
    except Exception as err:  # a decoder failure is the file's fault
        raise UserError(f"{path}: unreadable TIFF metadata ({type(err).__name__}: {err}); re-export it") from err
    if sizes is None:
        return None
    x, y = (check_pixel_size(v, f"{path}: stored pixel size") for v in sizes)
    if abs(x - y) > 1e-3 * max(x, y):
        raise UserError(f"{path}: non-square pixels ({x:g} x {y:g} um); resample the image to square pixels")
    return x


def _ome_pixel_size(xml: str, path: Path) -> tuple[float, float] | None:
    import xml.etree.ElementTree as ElementTree

    pixels = next((el for el in ElementTree.fromstring(xml).iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None
    source = f"{path}: OME metadata (or pass --um-per-px)"
    attrib = pixels.attrib
    x_unit = attrib.get("PhysicalSizeXUnit", "um")
    x = float(attrib["PhysicalSizeX"]) * length_unit_um(x_unit, source)
    y = float(attrib.get("PhysicalSizeY", attrib["PhysicalSizeX"])) * length_unit_um(attrib.get("PhysicalSizeYUnit", x_unit), source)
    return x, y


def _imagej_pixel_size(metadata: dict | None, page, path: Path) -> tuple[float, float] | None:
    unit = (metadata or {}).get("unit")
    if not unit or str(unit).strip().lower() in ("pixel", "pixels", "px", ""):
        return None
    unit = str(unit).encode().decode("unicode_escape") if "\\u" in str(unit) else str(unit)  # ImageJ writes \u00B5m
    factor = length_unit_um(unit, f"{path}: ImageJ metadata (or pass --um-per-px)")
    x_res, y_res = page.get_resolution()
    return (factor / x_res, factor / y_res) if x_res > 0 and y_res > 0 else None


def _tag_pixel_size(page) -> tuple[float, float] | None:
    factor = _TIFF_RESOLUTION_UNIT_UM.get(int(page.resolutionunit))
    if factor is None or "XResolution" not in page.tags:
        return None
    x_res, y_res = page.get_resolution()
    return (factor / x_res, factor / y_res) if x_res > 0 and y_res > 0 else None


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 (H, W) scaled to [0, 1] by its integer range (8 or 16 bit)."""
    array = read_image(path)
    if np.issubdtype(array.dtype, np.integer):
        top = 255.0 if array.max(initial=0) <= 255 and array.dtype.itemsize == 1 else float(np.iinfo(array.dtype).max)
        if array.dtype.itemsize > 1 and array.max(initial=0) <= 255:
            top = 255.0
        return (array.astype(np.float32) / top).clip(0.0, 1.0)
    array = array.astype(np.float32)
    lo, hi = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    return array if lo >= 0.0 and hi <= 1.0 else (array - lo) / max(hi - lo, 1e-12)


def write_png(path: str | os.PathLike, array: np.ndarray, compress_level: int = 6) -> None:
    """Write a 2D uint8 or uint16 array (or a (H, W, 3) uint8 colour image) as PNG, atomically.
    ``compress_level``: zlib's 0-9 (the same pixels; 1 writes large images several times faster)."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"write_png wants uint8/uint16, got {array.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=compress_level)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image (H, W) as uint8 grey (clipped, rounded)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def write_boundary_png(path: str | os.PathLike, boundary: np.ndarray, compress_level: int = 6) -> None:
    """Write a bool boundary map (H, W) as the project's label PNG: uint8, 255 = boundary, 0 = grain."""
    write_png(path, np.asarray(boundary).astype(np.uint8) * 255, compress_level)


def write_pair(folder: str | os.PathLike, name: str, image: np.ndarray, boundary: np.ndarray) -> None:
    """One entry of a pair folder: ``folder/images/<name>.png`` (uint8 grey of a [0, 1] image (H, W)) and
    ``folder/labels/<name>.png`` (the bool boundary map (H, W), 255 = boundary)."""
    write_png(Path(folder) / "images" / f"{name}.png", to_uint8(image))
    write_boundary_png(Path(folder) / "labels" / f"{name}.png", boundary)


def write_tiff(path: str | os.PathLike, array: np.ndarray, um_per_px: float | None = None) -> None:
    """Write an array as a zlib-compressed TIFF, atomically; with ``um_per_px`` (micrometres per
    pixel) the resolution tags hold the pixel size in pixels per centimetre, which
    :func:`read_pixel_size`, ImageJ and Fiji read back."""
    import tifffile

    um_per_px = check_pixel_size(um_per_px, f"{path}: pixel size")
    resolution = {} if um_per_px is None else {"resolution": (1e4 / um_per_px, 1e4 / um_per_px),
                                               "resolutionunit": "CENTIMETER"}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(array), compression="zlib", **resolution)


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping], columns: Sequence[str] | None = None) -> None:
    """Write dict rows as CSV with a header, atomically. ``columns`` defaults to the first row's keys."""
    rows = list(rows)
    if columns is None:
        columns = list(rows[0].keys()) if rows else []
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a CSV with a header into dict rows (values are strings)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_json(path: str | os.PathLike, data: object) -> None:
    """Write JSON (indented, keys sorted), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to a compressed .npz, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a matplotlib figure (format from the suffix), atomically, and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
