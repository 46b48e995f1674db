"""Random-forest boundary classifier: the pixel-classifier baseline users know from ilastik.

Each pixel gets the features of ``skimage.feature.multiscale_basic_features`` (smoothed intensity, edge
magnitude, Hessian eigenvalues at several scales; :class:`~grainforge.segment.config.ForestConfig`), a
scikit-learn ``RandomForestClassifier`` separates boundary (1) from grain (0), trained on a seeded,
class-balanced sample of pixels of every training image, and its ``predict_proba`` boundary probability
goes through the same post-processing as the U-Net's (:func:`grainforge.segment.postprocess.postprocess`).

Model folder: ``forest.skops`` (the fitted forest with its config, written with ``skops.io``, never
pickle), ``config.yaml`` (a readable copy of the config) and ``run.json``. Loading reads the file's
type list first and refuses anything but the forest, its trees, numpy arrays and plain values, then
checks every tree's node arrays (child and feature indices in range, children after their parent), so a
tampered file can neither run code nor make prediction read outside the trees.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from grainforge.errors import UserError

FOREST_FILE = "forest.skops"
FORMAT, KIND, VERSION = "grainforge", "segment-forest", 1
_TRUSTED_TYPES = frozenset({
    "sklearn.ensemble._forest.RandomForestClassifier", "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree", "numpy.ndarray", "numpy.dtype",
    *(f"numpy.{name}" for name in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                   "uint64", "float32", "float64")),
    *(f"builtins.{name}" for name in ("dict", "list", "tuple", "str", "int", "float", "bool", "NoneType")),
})
_TRUSTED_LOADERS = frozenset({"DictNode", "ListNode", "TupleNode", "JsonNode", "NdArrayNode", "ObjectNode",
                              "TreeNode", "TypeNode"})


def n_features(config) -> int:
    """Features per pixel of a ForestConfig: per scale 1 intensity + 1 edge + 2 Hessian eigenvalues."""
    return config.num_sigma * (int(config.intensity) + int(config.edges) + 2 * int(config.texture))


def pixel_features(image: np.ndarray, config) -> np.ndarray:
    """float32 (H, W, F) features of a grey image (H, W) in [0, 1]; F = :func:`n_features`."""
    from skimage.feature import multiscale_basic_features

    features = multiscale_basic_features(np.asarray(image, dtype=np.float32), intensity=config.intensity,
                                         edges=config.edges, texture=config.texture, sigma_min=config.sigma_min,
                                         sigma_max=config.sigma_max, num_sigma=config.num_sigma, workers=1)
    return features.astype(np.float32, copy=False)


def sample_pixels(pairs: Sequence, config, seed: int, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Training sample (features float32 (N, F), classes uint8 (N,), 1 = boundary) of ``pairs``.

    Per image ``min(cap // 2, boundary px, grain px)`` pixels of each class, with ``cap =
    min(pixels_per_image, max_pixels // len(pairs))``, drawn without replacement by one generator seeded
    with ``seed``, in the order of ``pairs``; untraced pixels of sparse labels (``Pair.ignore``) are
    never drawn. UserError naming the
    image when an image and its boundary map differ in size, or when no image has both classes.
    ``progress``: optional callable run after each image.
    """
    rng = np.random.default_rng(seed)
    per_class = max(1, min(config.pixels_per_image, config.max_pixels // max(len(pairs), 1)) // 2)
    features, classes = [], []
    for pair in pairs:
        if pair.image.shape != pair.boundary.shape:
            raise UserError(f"{pair.name}: image {pair.image.shape[1]}x{pair.image.shape[0]} and boundary label "
                            f"{pair.boundary.shape[1]}x{pair.boundary.shape[0]} differ in size; labels must match their "
                            f"images pixel for pixel")
        traced = np.ones(pair.boundary.shape, dtype=bool) if pair.ignore is None else ~pair.ignore
        boundary = np.flatnonzero(pair.boundary & traced)
        grain = np.flatnonzero(~pair.boundary & traced)
        n = min(per_class, boundary.size, grain.size)
        if n > 0:
            take = np.concatenate([rng.choice(boundary, n, replace=False), rng.choice(grain, n, replace=False)])
            features.append(pixel_features(pair.image, config).reshape(-1, n_features(config))[take])
            classes.append(np.repeat(np.array([1, 0], dtype=np.uint8), n))
        if progress is not None:
            progress()
    if not features:
        raise UserError("segment train: no training label has both boundary and grain pixels; check the labels "
                        "and boundary_value (which pixel value marks boundaries)")
    return np.concatenate(features), np.concatenate(classes)


def fit_forest(pairs: Sequence, config, seed: int = 0, progress=None):
    """A fitted ``RandomForestClassifier`` (classes 0 = grain, 1 = boundary) on :func:`sample_pixels` of ``pairs``."""
    from sklearn.ensemble import RandomForestClassifier

    features, classes = sample_pixels(pairs, config, seed, progress)
    forest = RandomForestClassifier(n_estimators=config.n_estimators, max_depth=config.max_depth,
                                    min_samples_leaf=config.min_samples_leaf, n_jobs=config.n_jobs, random_state=seed)
    return forest.fit(features, classes)


def forest_probability(forest, image: np.ndarray, config) -> np.ndarray:
    """Boundary probability (float32, H x W in [0, 1]) of a grey image (H x W in [0, 1]).

    Predicts with one thread whatever ``n_jobs`` says: a multi-threaded forest sums its trees in the order
    they finish, which changes the last bits of the probabilities from run to run.
    """
    features = pixel_features(image, config).reshape(-1, n_features(config))
    forest.n_jobs = 1
    return forest.predict_proba(features)[:, 1].astype(np.float32).reshape(np.shape(image))


def save_forest(path: str | os.PathLike, forest, config) -> None:
    """Write the forest and its config to ``path`` (skops format, atomic)."""
    import skops.io as sio

    from grainforge.config import config_to_dict
    from grainforge.data.io import atomic_path

    payload = {"format": FORMAT, "kind": KIND, "version": VERSION, "config": config_to_dict(config), "forest": forest}
    with atomic_path(path) as tmp:
        sio.dump(payload, tmp)


def forest_file(model: str | os.PathLike) -> Path | None:
    """The forest file of a model folder (``forest.skops``) or a .skops file itself; None for other models."""
    model = Path(model)
    if model.is_dir():
        return model / FOREST_FILE if (model / FOREST_FILE).is_file() else None
    return model if model.suffix == ".skops" else None


def _schema_types(path: Path) -> tuple[set[str], set[str]]:
    """(every ``module.class`` named in the skops file's schema, every loader it asks for)."""
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise UserError(f"{path}: corrupt or unreadable forest model ({type(err).__name__}); retrain it "
                        f"with 'grainforge segment train --method forest'") from err
    types, loaders, stack = set(), set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                loaders.add(str(node["__loader__"]))
            if "__class__" in node or "__module__" in node:
                types.add(f"{node.get('__module__')}.{node.get('__class__')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return types, loaders


def _tree_is_sound(tree, expected_features: int) -> bool:
    """Node arrays a prediction can follow safely: every inner node's children lie after it and inside the
    tree, its feature index is a real feature; leaves have no children; one output, two classes."""
    n = tree.node_count
    if n < 1 or tree.n_features != expected_features or tree.n_outputs != 1 or list(tree.n_classes) != [2]:
        return False
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    index = np.arange(n)
    leaf = left == -1
    inner = (left > index) & (left < n) & (right > index) & (right < n) & (feature >= 0) & (feature < expected_features)
    return bool(np.array_equal(leaf, right == -1) and np.all(leaf | inner))


def load_forest(model: str | os.PathLike):
    """(fitted forest, ForestConfig, file path) from a model folder or .skops file, without running code
    from it; UserError naming the file if it is missing, corrupt, tampered or holds foreign objects."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    from grainforge.config import config_from_dict
    from grainforge.segment.config import ForestConfig

    path = forest_file(model)
    if path is None or not path.is_file():
        raise UserError(f"{model}: no forest model ({FOREST_FILE}) here; train one with "
                        f"'grainforge segment train --method forest'")
    types, loaders = _schema_types(path)
    foreign = sorted((types - _TRUSTED_TYPES) | (loaders - _TRUSTED_LOADERS))
    if foreign:
        raise UserError(f"{path}: refused: the file holds objects other than a random forest ({', '.join(foreign[:3])}), "
                        f"which could run code when loaded; use a forest model written by grainforge")
    try:
        payload = sio.load(path, trusted=sorted(_TRUSTED_TYPES))
    except Exception as err:  # a truncated array, a schema skops cannot rebuild
        raise UserError(f"{path}: corrupt or unreadable forest model ({type(err).__name__}); retrain it") from err
    if not isinstance(payload, dict) or (payload.get("format"), payload.get("kind")) != (FORMAT, KIND):
        raise UserError(f"{path}: not a grainforge forest model; train one with 'grainforge segment train --method forest'")
    if payload.get("version") != VERSION:
        raise UserError(f"{path}: forest file format version {payload.get('version')} is not {VERSION}; "
                        f"upgrade grainforge or retrain the model")
    if not isinstance(payload.get("config"), dict):
        raise UserError(f"{path}: forest model without its config; retrain it")
    config = config_from_dict(ForestConfig, payload["config"], str(path))
    forest, expected = payload.get("forest"), n_features(config)
    sound = (isinstance(forest, RandomForestClassifier) and getattr(forest, "n_outputs_", None) == 1
             and getattr(forest, "n_features_in_", None) == expected
             and np.array_equal(getattr(forest, "classes_", None), [0, 1])
             and len(getattr(forest, "estimators_", [])) >= 1
             and all(isinstance(tree, DecisionTreeClassifier) and _tree_is_sound(tree.tree_, expected)
                     for tree in forest.estimators_))
    if not sound:
        raise UserError(f"{path}: tampered or corrupt forest model (its trees do not fit its {expected}-feature "
                        f"config); retrain it with 'grainforge segment train --method forest'")
    return forest, config, path


def train_forest(real: str | os.PathLike | None, out: str | os.PathLike, config, real_fraction: float = 1.0,
                 seed: int = 0, progress: bool = True, *, extras: Sequence[str | os.PathLike] = (),
                 real_pairs: list | None = None, ignore_value: int | None = 128) -> Path:
    """Train a random forest (``config``: a ForestConfig) and write the model folder ``out``; returns ``out``.

    ``real``: folder with images/ + labels/ or .h5 (or pass ``real_pairs``, a list of Pair); the seeded
    nested ``real_fraction`` of it is taken as for the U-Net (:func:`grainforge.segment.train.split_real`),
    but nothing is held out for validation (the forest has no training schedule to steer). ``extras``:
    more such sources (synthetic, simulated), sampled like the real images. ``ignore_value``: the grey
    level of untraced pixels in sparse labels, never sampled (None: labels are fully traced; docs/design.md
    §3.5). Everything is loaded and
    checked before ``out`` is created. run.json lists the training images and ``warnings`` (a model that
    finds almost no boundary on its training images, also issued as a :class:`GrainforgeWarning`).
    Deterministic by seed.
    """
    from grainforge.config import config_to_dict, save_config
    from grainforge.data.io import ensure_writable_dir
    from grainforge.data.pairs import load_pairs
    from grainforge.progress import progress_bar
    from grainforge.runinfo import RunRecord
    from grainforge.segment.postprocess import missing_boundary_warnings
    from grainforge.segment.train import source_name, split_real

    config.validate()
    out = Path(out)
    if forest_file(out) is not None or (out / "best.pt").is_file():
        raise UserError(f"{out}: already holds a trained model; choose another --out")
    record = RunRecord(out, command="segment train", config=config_to_dict(config), seed=seed)
    with record.phase("load data"):
        if real_pairs is None and real is not None:
            real_pairs = load_pairs(real, ignore_value=ignore_value)
        train_real, _ = split_real(real_pairs or [], config, real_fraction, seed, hold_out=False)
        pools = {"real": train_real}
        for folder in extras:
            pools[source_name(Path(folder), set(pools))] = load_pairs(folder, ignore_value=ignore_value)
    training = [pair for pool in pools.values() for pair in pool]
    if not training:
        raise UserError("segment train: no training data; give --real DIR (and/or --extra DIR)")
    with progress_bar(disable=not progress) as bar, record.phase("train"):
        task = bar.add_task("forest: features", total=len(training))
        forest = fit_forest(training, config, seed, progress=lambda: bar.update(task, advance=1))
    out = ensure_writable_dir(out)
    save_forest(out / FOREST_FILE, forest, config)
    save_config(config, out / "config.yaml")
    with record.phase("check"):
        found_warnings = missing_boundary_warnings(training, lambda image: forest_probability(forest, image, config),
                                                   config)
    record.write(method="forest", sources={"real": str(real) if real is not None else None,
                                           "extras": [str(e) for e in extras]},
                 real_fraction=real_fraction, train_images={name: [p.name for p in pool] for name, pool in pools.items()},
                 warnings=found_warnings, ignore_value=ignore_value)
    return out
