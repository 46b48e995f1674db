"""Golden run of the experiment package: a demo-based config (every table, two seeds) run with
fixed artefacts (small images in every artefact folder, fixed Table 1 timings) and a fake row
function must write the same results.csv and report.md as ``golden/experiment/``, written by the
package before it was split into layout / paper / figures (commit 9677ead; regenerated since only where
the report gained rows or columns: the forest baseline; issue 9's raw scores (map_raw, ari_raw), grain-ID
rows of Table 3 and the simulated supplement, the sampling line and a verdict per scoring; issue 10's
grain-size error columns and table), and draw all
four figures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from grainforge.data.io import write_png
from grainforge.experiment import RowSpec, run_experiment, shipped_configs

GOLDEN = Path(__file__).parent / "golden" / "experiment"
TIMINGS = {"real_train_images": 3, "real_test_images": 2, "real_mean_area_px": 40.5, "simulation_s": 31.0,
           "slicing_s": 4.0, "n_sections": 6, "section_pixels": 48 * 48, "style_apply_s_f1": 1.5,
           "style_apply_n_f1": 6}


def _golden_config():
    return replace(shipped_configs()["demo"], seeds=[0, 1], fractions=[0.25, 1.0])


def _fake_metrics(spec: RowSpec) -> dict:
    """Metrics that depend on every field of the row, so a mixed-up row shows in the CSV and the tables."""
    base = {"real": 0.50, "real+synthetic": 0.55, "simulated-plain": 0.10, "real+simulated-plain": 0.45,
            "real+microscope": 0.52, "real+synthetic+microscope": 0.57, "synthetic-split": 0.90,
            "forest": 0.48, "simulated-ids": 0.12, "real+simulated-ids": 0.47, "simulated-split": 0.95}[spec.setting]
    value = base + 0.2 * spec.real_fraction + 0.03 * spec.seed
    return {"map": round(value, 4), "ari": round(0.7 + value / 4, 4), "map_raw": round(value - 0.07, 4),
            "ari_raw": round(0.65 + value / 4, 4), "vi_split": 0.1 * (spec.seed + 1),
            "vi_merge": 0.2, "boundary_f1": round(value - 0.05, 4), "delta_G_intercept": round(0.6 - value, 4),
            "delta_G_planimetric": round(0.5 - value, 4), "mean_intercept_rel_error": round(value / 10 - 0.05, 4),
            "iterations": 150, "wall_time_s": 1.5}


def _fake_artefacts(config, layout, progress=True) -> None:
    """A few 16 x 16 images in each folder the figures read, and fixed timings."""
    rng = np.random.default_rng(0)
    for k in range(3):
        label = np.zeros((16, 16), np.uint8)
        label[[3, 9 + k], :] = 255  # grains of several sizes (a log-normal fit needs a spread)
        label[:, [5, 11 + k]] = 255
        folders = (layout.real_train, layout.real_test, layout.sections, layout.plain, layout.microscope,
                   layout.synthetic(1.0))
        for folder in folders:
            stem = f"t{k}" if folder == layout.real_test else f"s{k}"
            write_png(folder / "images" / f"{stem}.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
            write_png(folder / "labels" / f"{stem}.png", label)
        for setting in ("real", "real+synthetic"):  # Fig. 4 reads the predictions of the rows at 25 %
            write_png(layout.root / "rows" / f"{setting}_f0.25_s0" / "pred" / "boundaries" / f"t{k}.png", label)
    layout.add_timings(**TIMINGS)


def run_golden(run_dir: Path, monkeypatch) -> Path:
    monkeypatch.setattr("grainforge.experiment.prepare_artefacts", _fake_artefacts)
    return run_experiment(_golden_config(), run_dir, progress=False, row_fn=_fake_metrics)


def test_experiment_run_matches_golden_results_and_report(tmp_path: Path, monkeypatch):
    report = run_golden(tmp_path / "run", monkeypatch)
    assert (tmp_path / "run" / "results.csv").read_text() == (GOLDEN / "results.csv").read_text()
    assert report.read_text() == (GOLDEN / "report.md").read_text()
    assert sorted(p.name for p in (tmp_path / "run" / "figures").iterdir()) == [
        "fig3_samples.png", "fig4_predictions.png", "grain_statistics.png", "metrics_vs_fraction.png"]
