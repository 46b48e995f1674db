"""The real row function: train one U-Net (or, for the ``forest`` setting, the random-forest
baseline) for a (setting, real fraction, seed), predict the test
set, score it. Results are cached in ``RUN_DIR/rows/<setting>_f<F>_s<seed>/`` (``RunLayout.row``)
so that a row shared by two tables (Table 3's "real 100 %" is Table 4's f = 1 real-only row)
trains once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from grainforge.data.io import list_images, write_csv, write_json
from grainforge.experiment.config import ExperimentConfig, segment_config
from grainforge.experiment.layout import FULL, RunLayout, real_subset, start_fresh
from grainforge.experiment.runner import RowSpec

#: Metrics averaged over test images into a result row.
ROW_METRICS = ("map", "ari", "vi_split", "vi_merge", "boundary_f1")


def training_sources(layout: RunLayout, config: ExperimentConfig, spec: RowSpec) -> tuple[Path, list | None, list[Path], Path]:
    """(real folder, real pairs or None, extra pair folders, test folder) of a row's setting.

    Real pairs are the nested fraction ``spec.real_fraction`` of the real training set, the same
    subset the pix2pix of that fraction was trained on.
    """
    f = spec.real_fraction
    split_seed = config.real.split_seed
    if spec.setting == "simulated-plain":
        return layout.plain, None, [], layout.real_test
    if spec.setting == "synthetic-split":
        return layout.supplement_train, None, [], layout.supplement_test
    extras = {
        "real": [],
        "forest": [],
        "real+simulated-plain": [layout.plain],
        "real+synthetic": [layout.synthetic(f)],
        "real+microscope": [layout.microscope],
        "real+synthetic+microscope": [layout.synthetic(f), layout.microscope],
    }[spec.setting]
    fraction = FULL if spec.setting == "real+simulated-plain" else f
    return layout.real_train, real_subset(layout, fraction, split_seed), extras, layout.real_test


def compute_row(run_dir: str | Path, config: ExperimentConfig, spec: RowSpec) -> dict:
    """Metrics (mean over test images) of the model (U-Net, or the forest) of one row; trains it unless cached."""
    from grainforge.metrics import evaluate_folders
    from grainforge.segment import FOREST_PRESETS, predict, train_segmenter
    from grainforge.segment.forest import train_forest

    layout = RunLayout(Path(run_dir))
    folder = layout.row(spec.setting, spec.real_fraction, spec.seed)
    cached = folder / "metrics.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    start_fresh(folder)
    seg = segment_config(config)
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
    metrics.update(iterations=0 if spec.setting == "forest" else seg.iters,
                   wall_time_s=round(time.perf_counter() - t0, 2), n_test_images=len(per_image))
    write_json(cached, metrics)
    return metrics
