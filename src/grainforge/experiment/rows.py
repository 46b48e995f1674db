"""The real row function: train one U-Net (or, for the ``forest`` setting, the random-forest
baseline) for a (setting, real fraction, seed), predict the test set, score it twice: ``map``/``ari``
on grainforge's closed boundaries (``segment predict``), ``map_raw``/``ari_raw`` on the boundaries as
the network draws them, the paper's scoring (:func:`grainforge.segment.postprocess.raw_boundaries`).
Results are cached in ``RUN_DIR/rows/<setting>_f<F>_s<seed>/`` (``RunLayout.row``) so that a row
shared by two tables (Table 3's "real 100 %" is Table 4's f = 1 real-only row) trains once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from grainforge.data.io import list_images, write_csv, write_json
from grainforge.experiment.config import ExperimentConfig, segment_config
from grainforge.experiment.layout import FULL, RunLayout, real_subset, start_fresh
from grainforge.experiment.runner import RowSpec

#: Metrics averaged over test images into a result row (closed boundaries).
ROW_METRICS = ("map", "ari", "vi_split", "vi_merge", "boundary_f1")
#: The paper's scoring, averaged likewise: metric of the raw boundaries -> result column.
RAW_METRICS = {"map": "map_raw", "ari": "ari_raw"}
#: Grain-size error of the closed boundaries, pooled over the test images (docs/design.md §3.6).
GRAIN_SIZE_METRICS = ("delta_G_intercept", "delta_G_planimetric", "mean_intercept_rel_error")


def scoring_folder(layout: RunLayout, setting: str) -> Path:
    """The pair folder a row of ``setting`` is scored on: the real test images, or a supplement's own test split."""
    if setting in ("simulated-split", "synthetic-split"):
        return layout.supplement(setting.removesuffix("-split")) / "test"
    return layout.real_test


def training_sources(layout: RunLayout, config: ExperimentConfig, spec: RowSpec) -> tuple[Path, list | None, list[Path], Path]:
    """(real folder, real pairs or None, extra pair folders, test folder) of a row's setting.

    Real pairs are the nested fraction ``spec.real_fraction`` of the real training set, the same
    subset the pix2pix of that fraction was trained on.
    """
    f = spec.real_fraction
    test = scoring_folder(layout, spec.setting)
    if spec.setting in ("simulated-ids", "simulated-plain"):
        return {"simulated-ids": layout.simulated_ids, "simulated-plain": layout.plain}[spec.setting], None, [], test
    if spec.setting in ("simulated-split", "synthetic-split"):
        return test.parent / "train", None, [], test
    extras = {
        "real": [],
        "forest": [],
        "real+simulated-ids": [layout.simulated_ids],
        "real+simulated-plain": [layout.plain],
        "real+synthetic": [layout.synthetic(f)],
        "real+microscope": [layout.microscope],
        "real+synthetic+microscope": [layout.synthetic(f), layout.microscope],
    }[spec.setting]
    fraction = FULL if spec.setting.startswith("real+simulated") else f
    pairs = real_subset(layout, fraction, config.real.split_seed, config.real.patches, config.real.patch)
    return layout.real_train, pairs, extras, test


def raw_scores(pred: Path, test: Path, threshold: float) -> list[dict]:
    """Per-image metrics of the boundaries as the network draws them (the paper's scoring): the
    probability maps in ``pred/probabilities/`` thresholded at ``threshold``, thinned to 1 px, grains
    = 4-connected regions; no closing or merging. ``test``: the pair folder with the true labels."""
    from grainforge.data.io import read_image
    from grainforge.data.pairs import read_boundary
    from grainforge.metrics import evaluate_arrays
    from grainforge.segment.postprocess import raw_boundaries

    labels = list_images(test / "labels")
    pairs = ((read_boundary(path, 255), raw_boundaries(read_image(pred / "probabilities" / f"{path.stem}.png") / 255.0,
                                                        threshold)) for path in labels)
    return evaluate_arrays(pairs, workers=1)


def later_scores(folder: Path, test: Path, threshold: float) -> dict:
    """The row metrics added after the first release, from a row's saved predictions (``folder/pred``):
    the raw scores (``map_raw``, ``ari_raw``) and the grain-size error (:data:`GRAIN_SIZE_METRICS`)."""
    from grainforge.grainsize import folder_grain_size_errors, pooled_delta_g

    raw = raw_scores(folder / "pred", test, threshold)
    scores = {column: sum(row[name] for row in raw) / len(raw) for name, column in RAW_METRICS.items()}
    scores.update(pooled_delta_g(folder_grain_size_errors(folder / "pred" / "boundaries", test / "labels")))
    return scores


def compute_row(run_dir: str | Path, config: ExperimentConfig, spec: RowSpec) -> dict:
    """Metrics (mean over test images) of the model (U-Net, or the forest) of one row; trains it unless cached.

    A cached row from before the raw scores or the grain-size error existed gains them from its saved
    predictions (no retraining)."""
    from grainforge.metrics import evaluate_folders
    from grainforge.segment import FOREST_PRESETS, predict, train_segmenter
    from grainforge.segment.forest import train_forest

    layout = RunLayout(Path(run_dir))
    folder = layout.row(spec.setting, spec.real_fraction, spec.seed)
    cached = folder / "metrics.json"
    seg = segment_config(config)
    threshold = FOREST_PRESETS["default"].threshold if spec.setting == "forest" else seg.threshold
    if cached.is_file():
        metrics = json.loads(cached.read_text())
        missing = {*RAW_METRICS.values(), *GRAIN_SIZE_METRICS} - set(metrics)
        if missing and (folder / "pred" / "probabilities").is_dir():
            metrics.update(later_scores(folder, scoring_folder(layout, spec.setting), threshold))
            write_json(cached, metrics)
        return metrics
    start_fresh(folder)
    t0 = time.perf_counter()
    real, real_pairs, extras, test = training_sources(layout, config, spec)
    if spec.setting == "forest":  # the baseline a metallographer gets in a minute (ilastik-style pixel forest)
        model = train_forest(real, folder / "model", FOREST_PRESETS["default"], seed=spec.seed, progress=False,
                             real_pairs=real_pairs)
    else:
        model = train_segmenter(real, folder / "model", seg, extras=extras, seed=spec.seed, device=config.device,
                                progress=False, real_pairs=real_pairs)
    predict(model, list_images(test / "images"), folder / "pred", device=config.device, progress=False)
    per_image = evaluate_folders(folder / "pred" / "boundaries", test / "labels", workers=1)
    write_csv(folder / "per_image.csv", per_image)
    metrics = {name: sum(row[name] for row in per_image) / len(per_image) for name in ROW_METRICS}
    metrics.update(later_scores(folder, test, threshold))
    metrics.update(iterations=0 if spec.setting == "forest" else seg.iters,
                   wall_time_s=round(time.perf_counter() - t0, 2), n_test_images=len(per_image))
    write_json(cached, metrics)
    return metrics
