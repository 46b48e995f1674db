"""Real (image, boundary) pairs in, with one-line errors naming the file.

Sources:
- a folder with ``images/`` and ``labels/`` holding files with matching stems (PNG, TIFF, JPEG, BMP;
  8- or 16-bit; grey or RGB -> grey). A label may also be named ``<stem>_mask``, ``_label``,
  ``_labels``, ``_boundary`` or ``_gt``.
- an HDF5 file with an ``image`` dataset and a ``boundary`` (boundary map) and/or ``label`` (grain
  ids) dataset, each N x H x W (or H x W); ``FILE.h5:GROUP`` reads them from a group (e.g. the
  pure-iron data set's ``real``). When both exist, ``boundary`` is used; a ``label`` with at most
  two values is read as a boundary map, otherwise as grain ids (boundary via
  :func:`grainforge.grains.boundary_from_ids`).

Labels are binarised at ``threshold`` (8-bit units; 16-bit and 0/1 labels are scaled to 0..255);
``threshold=None`` demands strictly 0/255 labels. ``boundary_value``: which side is boundary
(255, 0, or ``auto`` = the minority value of the binarised label). ``thin=True`` thins thick
labels to 1 pixel (skimage ``thin``).

Sparse labels (docs/design.md §3.5): with ``ignore_value`` (8-bit units, default
:data:`DEFAULT_IGNORE_VALUE` = 128 where training asks for it) pixels of exactly that value are
untraced: they are neither boundary nor grain, ``Pair.ignore`` marks them, and training takes no signal
from them. Readers without an ignore value (metrics, statistics, style transfer) need fully traced
labels and refuse a label that is more than :data:`SPARSE_FRACTION` 128s with a one-line error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grainforge.data.io import list_images, read_grey, read_image
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids

LABEL_SUFFIXES = ("", "_mask", "_label", "_labels", "_boundary", "_gt")
MAX_GREY_FRACTION = 0.25
"""With a threshold, a label whose pixels are mostly mid-grey (not near 0 or 255) is rejected:
it is almost certainly a micrograph, not a label."""
_NEAR = 8  # values within 8 of 0 or 255 count as binary (JPEG/anti-aliasing tolerance in strict mode)
DEFAULT_IGNORE_VALUE = 128
"""Label value (8-bit units) of the untraced pixels of sparse labels."""
SPARSE_FRACTION = 0.01
"""Read without an ignore value, a label with more than this share of pixels at exactly
:data:`DEFAULT_IGNORE_VALUE` is refused as sparse (anti-aliased 0/255 labels hold under 0.1 %)."""


@dataclass
class Pair:
    """One labelled micrograph: ``image`` float32 (H, W) in [0, 1]; ``boundary`` bool (H, W), True = boundary;
    ``ignore`` bool (H, W), True = untraced (a sparse label: no training signal there, never boundary), or
    None when every pixel is traced."""

    name: str
    image: np.ndarray
    boundary: np.ndarray
    ignore: np.ndarray | None = None


def _parse_boundary_value(boundary_value) -> str | int:
    text = str(boundary_value).strip().lower()
    if text in ("auto", "0", "255"):
        return text if text == "auto" else int(text)
    raise UserError(f"boundary_value {boundary_value!r}: must be 0, 255 or auto")


def parse_ignore_value(ignore_value) -> int | None:
    """The ignore value as an int in 1..254 (8-bit units), or None for none ("none", None); UserError otherwise."""
    if ignore_value is None or str(ignore_value).strip().lower() == "none":
        return None
    try:
        value = int(str(ignore_value).strip())
    except ValueError:
        value = -1
    if not 1 <= value <= 254:
        raise UserError(f"ignore value {ignore_value!r}: must be a grey level in 1..254 (8-bit units, e.g. 128) or none; "
                        f"0 and 255 are the label's boundary and grain values")
    return value


def _to_8bit_scale(label: np.ndarray) -> np.ndarray:
    """Label values as float in 0..255: bool and 0/1 labels -> 0/255; 16-bit -> scaled; 8-bit as is."""
    label = np.asarray(label)
    if label.dtype == bool:
        return label.astype(np.float32) * 255
    values = label.astype(np.float64)
    top = float(values.max(initial=0.0))
    if top <= 1.0:
        return (values * 255).astype(np.float32)
    if top <= 255.0:
        return values.astype(np.float32)
    full = float(np.iinfo(label.dtype).max) if np.issubdtype(label.dtype, np.integer) else top
    return (values * (255.0 / full)).astype(np.float32)


def label_to_sparse_boundary(label: np.ndarray, where: str, boundary_value="auto", threshold: float | None = 127,
                             thin: bool = False, ignore_value=DEFAULT_IGNORE_VALUE) -> tuple[np.ndarray, np.ndarray | None]:
    """Binarise a label array (H, W) whose ``ignore_value`` pixels are untraced; ``where`` names it in errors.

    Returns (boundary bool (H, W), ignore bool (H, W) or None when no pixel has the ignore value).
    ``ignore_value`` None reads a fully traced label (:func:`label_to_boundary`). Untraced pixels are
    never boundary; ``auto`` takes the minority value among the traced ones, and the checks (binary,
    some boundary, some grain) apply to the traced pixels.
    """
    mode = _parse_boundary_value(boundary_value)
    ignore_value = parse_ignore_value(ignore_value)
    scaled = _to_8bit_scale(label)
    mid = (scaled > _NEAR) & (scaled < 255 - _NEAR)
    at_ignore = np.abs(scaled - (DEFAULT_IGNORE_VALUE if ignore_value is None else ignore_value)) < 0.5
    if ignore_value is None:
        if at_ignore.mean() > SPARSE_FRACTION and (mid & ~at_ignore).mean() <= MAX_GREY_FRACTION:
            raise UserError(f"{where}: {100 * at_ignore.mean():.0f} % of the label is {DEFAULT_IGNORE_VALUE}, the ignore "
                            f"value of sparse (partly traced) labels; only training accepts them (segment train "
                            f"--ignore-value {DEFAULT_IGNORE_VALUE}): scoring and statistics need every boundary traced")
        ignore, grey = None, mid
    else:
        ignore, grey = at_ignore, mid & ~at_ignore
        if ignore.all():
            raise UserError(f"{where}: every pixel has the ignore value {ignore_value} (untraced); trace some boundaries "
                            f"in it or remove it")
    if threshold is None and grey.any():
        raise UserError(f"{where}: label is not binary ({int(grey.sum())} pixels between 0 and 255, e.g. anti-aliased "
                        f"edges); pass threshold 127 to binarise it, or save it with only 0 and 255")
    if threshold is not None and grey.mean() > MAX_GREY_FRACTION:
        raise UserError(f"{where}: label is not binary ({100 * grey.mean():.0f} % mid-grey pixels: a micrograph or a "
                        f"grain-id map?); labels must be black/white boundary maps (255 or 0 = boundary)")
    traced = np.ones(scaled.shape, dtype=bool) if ignore is None else ~ignore
    high = (scaled > (127.5 if threshold is None else float(threshold))) & traced
    low = ~high & traced
    if mode == 255:
        boundary = high
    elif mode == 0:
        boundary = low
    else:
        boundary = high if high.sum() <= low.sum() else low
    if not boundary.any():
        raise UserError(f"{where}: label has no boundary pixels (it is uniform{'' if mode == 'auto' else ' on the boundary side'}); "
                        f"check the file, boundary_value ({boundary_value}) and threshold")
    if np.array_equal(boundary, traced):
        raise UserError(f"{where}: label has no grain pixels (all boundary); check boundary_value ({boundary_value})")
    if thin:
        boundary = thin_lines(boundary)
    return boundary, (ignore if ignore is not None and ignore.any() else None)


def label_to_boundary(label: np.ndarray, where: str, boundary_value="auto", threshold: float | None = 127,
                      thin: bool = False) -> np.ndarray:
    """Binarise a fully traced label array (H, W) into a bool boundary map; ``where`` names it in errors.

    A sparse label (more than :data:`SPARSE_FRACTION` of its pixels at :data:`DEFAULT_IGNORE_VALUE`) is
    refused (:func:`label_to_sparse_boundary` reads it).
    """
    return label_to_sparse_boundary(label, where, boundary_value, threshold, thin, ignore_value=None)[0]


def thin_lines(boundary: np.ndarray) -> np.ndarray:
    """Thin a bool boundary map (H, W) to 1-pixel lines (``skimage.morphology.thin``). The lines are
    first extended past the image edge, so that thinning does not pull their ends off the border (which
    would open a gap there and merge the grains on either side)."""
    from skimage.morphology import thin as skeleton_thin

    pad = 16
    return skeleton_thin(np.pad(boundary, pad, mode="edge"))[pad:-pad, pad:-pad]


def read_boundary(path: str | os.PathLike, boundary_value="auto", threshold: float | None = 127, thin: bool = False) -> np.ndarray:
    """Read a label image file as a bool boundary map (H, W); UserError naming the file on bad labels."""
    return label_to_boundary(read_image(path), str(path), boundary_value, threshold, thin)


def load_boundaries(folder: str | os.PathLike, boundary_value="auto", threshold: float | None = 127,
                    thin: bool = False) -> list[tuple[str, np.ndarray]]:
    """Every label image in ``folder`` as (stem, bool boundary map), sorted by name."""
    return [(path.stem, read_boundary(path, boundary_value, threshold, thin)) for path in list_images(folder)]


def load_pairs(source: str | os.PathLike, boundary_value="auto", threshold: float | None = 127,
               thin: bool = False, ignore_value=None) -> list[Pair]:
    """Load (image, boundary) pairs from a folder with ``images/`` + ``labels/`` or an HDF5 file
    (``FILE.h5`` or ``FILE.h5:GROUP``), sorted by name. With ``ignore_value`` (e.g. 128) labels may be
    sparse: pixels of that value are untraced (``Pair.ignore``)."""
    h5 = re.fullmatch(r"(.*\.(?:h5|hdf5|hdf))(?::([^:]+))?", str(source), flags=re.IGNORECASE)
    ignore_value = parse_ignore_value(ignore_value)
    if h5:
        return _load_h5(Path(h5.group(1)), h5.group(2) or "", boundary_value, threshold, thin, ignore_value)
    return _load_folder(Path(source), boundary_value, threshold, thin, ignore_value)


def _load_folder(folder: Path, boundary_value, threshold, thin, ignore_value) -> list[Pair]:
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; pass a folder with images/ and labels/, or an .h5 file")
    images_dir, labels_dir = folder / "images", folder / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        hint = " (it has train/: pass that or test/)" if (folder / "train" / "images").is_dir() else ""
        raise UserError(f"{folder}: expected subfolders images/ and labels/ with matching file names{hint}")
    images = list_images(images_dir)
    labels = list_images(labels_dir)
    by_stem = {}
    for label in labels:
        by_stem.setdefault(label.stem, []).append(label)
    partners, used = {}, set()
    for image in images:
        found = [p for suffix in LABEL_SUFFIXES for p in by_stem.get(image.stem + suffix, [])]
        if not found:
            raise UserError(f"{image}: no label with the same name in {labels_dir}; add {image.stem}.png there or remove the image")
        if len(found) > 1:
            raise UserError(f"{image}: several labels match ({', '.join(p.name for p in found)}); keep one")
        partners[image] = found[0]
        used.add(found[0])
    orphans = [label for label in labels if label not in used]
    if orphans:
        raise UserError(f"{orphans[0]}: label has no image with the same name in {images_dir}; add the image or remove the label")
    pairs = []
    for image_path, label_path in partners.items():
        image = read_grey(image_path)
        boundary, ignore = label_to_sparse_boundary(read_image(label_path), str(label_path), boundary_value, threshold,
                                                    thin, ignore_value)
        if image.shape != boundary.shape:
            raise UserError(f"{label_path}: size {boundary.shape[1]}x{boundary.shape[0]} differs from its image "
                            f"{image_path.name} ({image.shape[1]}x{image.shape[0]}); labels must match their images pixel for pixel")
        pairs.append(Pair(image_path.stem, image, boundary, ignore))
    return pairs


def grey_unit(image: np.ndarray) -> np.ndarray:
    """An image array (H, W) or (H, W, 3|4) as grey float32 in [0, 1]: integers by their type's range
    (8-bit range if the values fit), floats as is when in [0, 1], else min-max scaled."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if np.issubdtype(image.dtype, np.integer):
        top = 255.0 if image.max(initial=0) <= 255 else float(np.iinfo(image.dtype).max)
        return (image.astype(np.float32) / top).clip(0.0, 1.0)
    image = image.astype(np.float32)
    lo, hi = float(image.min(initial=0.0)), float(image.max(initial=0.0))
    return image if lo >= 0.0 and hi <= 1.0 else (image - lo) / max(hi - lo, 1e-12)


def _h5_group(handle, path: Path, group: str):
    if group:
        if group not in handle:
            raise UserError(f"{path}: no group {group!r} (found: {', '.join(handle.keys()) or 'nothing'})")
        return handle[group]
    if "image" in handle:
        return handle
    candidates = [name for name, item in handle.items() if hasattr(item, "keys") and "image" in item]
    if len(candidates) == 1:
        return handle[candidates[0]]
    if candidates:
        raise UserError(f"{path}: several groups hold an image dataset ({', '.join(candidates)}); pass {path}:GROUP")
    raise UserError(f"{path}: no 'image' dataset (found: {', '.join(handle.keys()) or 'nothing'}); expected 'image' "
                    f"plus 'boundary' and/or 'label', each N x H x W")


def _load_h5(path: Path, group: str, boundary_value, threshold, thin, ignore_value) -> list[Pair]:
    import h5py

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"{path}: unreadable HDF5 file ({err}); check that it is a complete .h5 file") from err
    with handle:
        node = _h5_group(handle, path, group)
        key = "boundary" if "boundary" in node else "label" if "label" in node else None
        if key is None:
            raise UserError(f"{path}: no 'boundary' or 'label' dataset beside 'image'; add one (N x H x W)")
        images, labels = np.asarray(node["image"][()]), np.asarray(node[key][()])
    if labels.ndim == 2:
        labels = labels[None]
    if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (3, 4) and labels.shape[1:] == images.shape[:2]):
        images = images[None]
    if images.shape[0] == 0:
        raise UserError(f"{path}: 'image' dataset is empty")
    if images.shape[:3] != labels.shape:
        raise UserError(f"{path}: 'image' shape {images.shape} does not match '{key}' shape {labels.shape}; "
                        f"both must be N x H x W")
    pairs = []
    for i, (image, label) in enumerate(zip(images, labels)):
        where = f"{path}[{key}][{i}]"
        values = set(np.unique(label).tolist())
        sparse = ignore_value is not None and values <= {0, 255, ignore_value}
        ignore = None
        if key == "label" and len(values) > 2 and not sparse:
            boundary = boundary_from_ids(label)
            if not boundary.any():
                raise UserError(f"{where}: grain-id label has a single grain (no boundary pixels)")
        else:
            boundary, ignore = label_to_sparse_boundary(label, where, boundary_value, threshold, thin, ignore_value)
        pairs.append(Pair(f"{path.stem}_{i:04d}", grey_unit(image), boundary, ignore))
    return pairs
