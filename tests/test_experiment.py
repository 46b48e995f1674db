"""The experiment runner: config checks before any work, resume without recomputation, CSV rows,
parallel jobs, Table 1 arithmetic and the report, with a fake row function (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import assert_user_error, run_cli
from grainforge.data.io import read_csv, read_grey, write_csv, write_png
from grainforge.errors import UserError
from grainforge.experiment import (RESULT_COLUMNS, RowSpec, load_experiment_config, plan_rows, run_experiment,
                                   run_rows, shipped_configs)
from grainforge.experiment import artefacts
from grainforge.experiment.artefacts import PLAIN_BACKGROUND, PLAIN_LINE, prepare_plain
from grainforge.experiment.layout import RunLayout
from grainforge.experiment.report import aggregate, claim_lines, render_report, table1_lines


def _fake_metrics(spec: RowSpec) -> dict:
    """Deterministic fake metrics that encode the row (so the CSV can be checked value by value)."""
    base = {"real": 0.5, "real+synthetic": 0.6}.get(spec.setting, 0.3)
    return {"map": base + 0.01 * spec.seed + 0.1 * spec.real_fraction, "ari": 0.8, "vi_split": 0.1,
            "vi_merge": 0.2, "boundary_f1": 0.7, "iterations": 5, "wall_time_s": 0.01}


class CountingRow:
    """A row function that counts its calls and can crash on the n-th one (a Ctrl-C stand-in)."""

    def __init__(self, crash_on: int | None = None):
        self.calls: list[RowSpec] = []
        self.crash_on = crash_on

    def __call__(self, spec: RowSpec) -> dict:
        self.calls.append(spec)
        if self.crash_on is not None and len(self.calls) == self.crash_on:
            raise KeyboardInterrupt
        return _fake_metrics(spec)


def _write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------- config


def test_shipped_configs_load_and_plan_expected_rows():
    configs = shipped_configs()
    assert set(configs) == {"demo", "laptop", "paper", "tbm"}
    demo = plan_rows(configs["demo"])
    # table3: 6 settings (grain IDs, plain lines, forest); table4: 3 settings x 2 fractions; beyond: 2 x 2;
    # supplement: simulated and synthetic splits (1 seed)
    assert len(demo) == 6 + 6 + 4 + 2
    assert {(r.table, r.setting) for r in demo if r.real_fraction == 0.25} == {
        ("table4", "real"), ("table4", "real+synthetic"), ("table4", "forest"), ("beyond", "real+microscope"),
        ("beyond", "real+synthetic+microscope")}
    laptop = configs["laptop"]
    assert laptop.seeds == [0, 1, 2] and laptop.fractions[0] == 0.05 and laptop.fractions[-1] == 1.0
    assert configs["demo"].real.demo_preset == laptop.real.demo_preset == "hard"
    assert configs["tbm"].no_data_images and not configs["tbm"].real.thin
    assert configs["tbm"].simulation.match_boundary_width


@pytest.mark.parametrize("data, fragment", [
    ({"base": "demo", "bogus_key": 1}, "unknown key(s) bogus_key"),
    ({"base": "demo", "fractions": [0.0, 0.5]}, "fractions: 0.0 is impossible"),
    ({"base": "demo", "fractions": [1.5]}, "fractions: 1.5 is impossible"),
    ({"base": "demo", "simulation": {"sise": 32}}, "unknown key(s) sise"),
    ({"base": "demo", "segment": {"overrides": {"widht": 8}}}, "segment.overrides: unknown key(s) widht"),
    ({"base": "demo", "style": {"preset": "huge"}}, "style.preset: 'huge' is not one of"),
    ({"base": "demo", "tables": ["table2"]}, "tables: unknown"),
    ({"base": "demo", "real": {"source": "no/such/folder"}}, "real.source: no/such/folder does not exist"),
    ({"base": "demo", "real": {"demo_preset": "medium"}}, "real.demo_preset: 'medium' must be one of hard"),
])
def test_bad_config_is_a_user_error_naming_the_key(tmp_path: Path, data: dict, fragment: str):
    with pytest.raises(UserError) as err:
        load_experiment_config(_write_yaml(tmp_path / "bad.yaml", data))
    assert fragment in str(err.value)


def test_cli_rejects_bad_config_before_any_work(tmp_path: Path):
    out = tmp_path / "run"
    result = run_cli("experiment", _write_yaml(tmp_path / "bad.yaml", {"base": "demo", "fractions": [0.25, 2.0]}),
                     "--out", out)
    assert_user_error(result, "bad.yaml", "fractions: 2.0 is impossible")
    assert not out.exists()
    result = run_cli("experiment", _write_yaml(tmp_path / "typo.yaml", {"base": "demo", "seeds": [0], "tabels": []}),
                     "--out", out)
    assert_user_error(result, "typo.yaml", "unknown key(s) tabels")
    assert not out.exists()
    assert_user_error(run_cli("experiment", "nonexistent-preset", "--out", out), "unknown config 'nonexistent-preset'")


def test_overrides_are_typed_and_applied(tmp_path: Path):
    from grainforge.experiment.config import segment_config, style_config

    config = load_experiment_config(_write_yaml(tmp_path / "c.yaml", {
        "base": "demo", "segment": {"iters": 7, "overrides": {"width": 8}}, "style": {"overrides": {"ngf": 8}}}))
    assert segment_config(config).iters == 7 and segment_config(config).width == 8
    assert style_config(config).ngf == 8
    with pytest.raises(UserError, match="segment.overrides.width"):
        load_experiment_config(_write_yaml(tmp_path / "d.yaml", {"base": "demo", "segment": {"overrides": {"width": "x"}}}))


# ---------------------------------------------------------------- runner core


def _specs() -> list[RowSpec]:
    return [RowSpec("table4", setting, f, seed) for seed in (0, 1) for f in (0.05, 1.0) for setting in ("real", "real+synthetic")]


def test_run_rows_resumes_without_recomputing_finished_rows(tmp_path: Path):
    results = tmp_path / "results.csv"
    specs = _specs()
    crashing = CountingRow(crash_on=3)
    with pytest.raises(KeyboardInterrupt):
        run_rows(specs, crashing, results, progress=False)
    saved = read_csv(results)
    assert [(r["setting"], r["real_fraction"], r["seed"]) for r in saved] == [("real", "0.05", "0"), ("real+synthetic", "0.05", "0")]

    resumed = CountingRow()
    rows = run_rows(specs, resumed, results, progress=False)
    assert [s.key for s in resumed.calls] == [s.key for s in specs[2:]]  # the crashed row and the rest, once each
    assert len(rows) == len(specs)
    saved = read_csv(results)
    assert list(saved[0]) == list(RESULT_COLUMNS)
    for spec, row in zip(specs, saved):
        assert (row["table"], row["setting"], float(row["real_fraction"]), int(row["seed"])) == \
            (spec.table, spec.setting, spec.real_fraction, spec.seed)
        assert float(row["map"]) == pytest.approx(_fake_metrics(spec)["map"])

    again = CountingRow()
    run_rows(specs, again, results, progress=False)
    assert again.calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temp files left behind


def test_rows_of_one_model_in_two_tables_are_computed_once(tmp_path: Path):
    specs = [RowSpec("table3", "real", 1.0, 0), RowSpec("table4", "real", 0.25, 0), RowSpec("table4", "real", 1.0, 0)]
    counting = CountingRow()
    rows = run_rows(specs, counting, tmp_path / "results.csv", progress=False)
    assert [s.key for s in counting.calls] == [specs[0].key, specs[1].key]
    assert rows[0]["map"] == rows[2]["map"] and [r["table"] for r in rows] == ["table3", "table4", "table4"]


def test_run_rows_in_parallel_jobs_matches_serial(tmp_path: Path):
    specs = _specs()[:4]
    run_rows(specs, _fake_metrics, tmp_path / "serial.csv", progress=False)
    run_rows(specs, _fake_metrics, tmp_path / "parallel.csv", jobs=2, progress=False)
    assert read_csv(tmp_path / "serial.csv") == read_csv(tmp_path / "parallel.csv")


def test_run_experiment_with_fake_rows_resumes_and_guards_the_config(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("grainforge.experiment.prepare_artefacts", lambda config, layout, progress=True: None)
    config = shipped_configs()["demo"]
    counting = CountingRow()
    report = run_experiment(config, tmp_path / "run", progress=False, row_fn=counting)
    assert len(counting.calls) == len({spec.model_key for spec in plan_rows(config)}) == 16  # real and forest 100 % once
    assert report.is_file() and (tmp_path / "run" / "run.json").is_file()
    again = CountingRow()
    run_experiment(config, tmp_path / "run", progress=False, row_fn=again)
    assert again.calls == []
    from dataclasses import replace

    changed = replace(config, segment=replace(config.segment, iters=999))
    with pytest.raises(UserError, match="config.yaml: this run folder was started with different segment"):
        run_experiment(changed, tmp_path / "run", progress=False, row_fn=again)
    more_seeds = replace(config, seeds=[0, 1])
    run_experiment(more_seeds, tmp_path / "run", progress=False, row_fn=again)
    assert {s.seed for s in again.calls} == {1}  # only the new seed's rows
    # a run folder started by a grainforge whose cpu-small preset had no photometric field (its default, 0, applied):
    # the same experiment config would now train other rows, so resuming it is refused
    stages_path = tmp_path / "run" / "stages.yaml"
    stages = yaml.safe_load(stages_path.read_text())
    assert stages["segment"].pop("photometric") == 1.0
    stages_path.write_text(yaml.safe_dump(stages))
    with pytest.raises(UserError, match=r"presets changed since this run started \(segment.photometric 0.0 -> 1.0\)"):
        run_experiment(more_seeds, tmp_path / "run", progress=False, row_fn=again)


# ---------------------------------------------------------------- report


def test_table1_seconds_per_400px_image():
    timings = {"simulation_s": 10.0, "slicing_s": 2.0, "n_sections": 12, "section_pixels": 200 * 200,
               "style_apply_s_f1": 6.0, "style_apply_n_f1": 12}
    text = "\n".join(table1_lines(timings))
    # (10 + 2) s / 12 images * (400^2 / 200^2) = 4 s ; 6 s / 12 images * 4 = 2 s
    assert "| simulated (Potts + slicing) | 4 | 12 |" in text
    assert "| synthetic (pix2pix inference) | 2 | 0.1 |" in text


def _fake_results(path: Path) -> None:
    rows = []
    for seed, shift in ((0, -0.1), (1, 0.1)):
        for table, setting, f, value in (("table3", "real", 1.0, 0.5), ("table4", "real", 1.0, 0.5),
                                         ("table4", "real", 0.25, 0.3), ("table4", "real+synthetic", 0.25, 0.6),
                                         ("table4", "real+synthetic", 1.0, 0.7), ("supplement", "simulated-split", 0.0, 0.9)):
            rows.append({"table": table, "setting": setting, "real_fraction": f, "seed": seed, "map": value + shift,
                         "ari": value, "map_raw": value + shift - 0.2, "ari_raw": value - 0.1, "vi_split": 0, "vi_merge": 0,
                         "boundary_f1": 0.5, "iterations": 5, "wall_time_s": 1})
    write_csv(path, rows, RESULT_COLUMNS)


def test_report_renders_tables_from_a_fake_results_csv(tmp_path: Path):
    _fake_results(tmp_path / "results.csv")
    config = shipped_configs()["demo"]
    report = render_report(tmp_path, config).read_text()
    # Table 3 beside the paper: closed, then raw scores
    assert "| real | 0.5000 ± 0.1000 | 0.5000 ± 0.0000 | 0.3000 ± 0.1000 | 0.4000 ± 0.0000 | 0.5845 / 0.8655 |" in report
    assert ("| 25 % | 0.3000 ± 0.1000 | 0.6000 ± 0.1000 | — | 0.3000 ± 0.0000 | 0.6000 ± 0.0000 | — | 0.1000 ± 0.1000 | "
            "0.4000 ± 0.1000 | — | 0.2000 ± 0.0000 | 0.5000 ± 0.0000 | — | 0.5343 / 0.8316 | "
            "0.5792 / 0.8696 |") in report  # no forest rows in this results.csv: its columns say so
    assert "MAP: best real + synthetic at ≤ 35 % real is 0.6000 (at 25 %) vs real 100 % 0.5000: difference +0.1000" in report
    assert "MAP raw: best real + synthetic at ≤ 35 % real is 0.4000 (at 25 %) vs real 100 % 0.3000: difference +0.1000" in report
    assert "the claim **holds** for MAP (1 of 1 fractions ≤ 35 % reach real 100 %)" in report
    assert "Inconclusive" not in report
    assert ("| simulated train/test split 2.8 : 1 | 0.9000 ± 0.1000 | 0.9000 ± 0.0000 | 0.7000 ± 0.1000 | 0.8000 ± 0.0000 | "
            "0.9591 / 0.9986 |") in report
    assert "Training patches: random crops anywhere" in report
    assert "optimistic by construction" in report
    assert (tmp_path / "figures" / "metrics_vs_fraction.png").is_file()
    assert "figures/metrics_vs_fraction.png" in report
    stats = aggregate(read_csv(tmp_path / "results.csv"))
    assert stats[("table4", "real+synthetic", 0.25)]["map"] == pytest.approx((0.6, 0.1, 2))


def test_claim_is_inconclusive_when_no_model_learned_and_spread_is_named():
    def stat(value, std=0.0):
        return {name: (value, std, 2) for name in ("map", "ari", "map_raw", "ari_raw")}

    weak = claim_lines({("table4", "real", 1.0): stat(0.006), ("table4", "real+synthetic", 0.25): stat(0.009)})
    assert any("**Inconclusive**: the real-100 % model reaches only MAP 0.0060" in line for line in weak)
    noisy = claim_lines({("table4", "real", 1.0): stat(0.50, 0.05), ("table4", "real+synthetic", 0.25): stat(0.47, 0.02)})
    assert any("does not hold** for MAP" in line and "within the spread over seeds (± 0.0500)" in line for line in noisy)
    assert not any("Inconclusive" in line for line in noisy)


def test_cli_report_only_renders_and_summarizes(tmp_path: Path):
    _fake_results(tmp_path / "results.csv")
    result = run_cli("experiment", "demo", "--out", tmp_path, "--report-only")
    assert result.returncode == 0, result.stderr
    assert "report written to" in result.stdout and (tmp_path / "report.md").is_file()
    assert_user_error(run_cli("experiment", "demo", "--out", tmp_path / "empty", "--report-only"), "no results to report")
    assert_user_error(run_cli("experiment", "demo", "--out", tmp_path, "--jobs", "0"), "--jobs: 0 must be >= 1")


# ---------------------------------------------------------------- artefacts


def test_plain_images_are_dark_lines_on_bright_background(tmp_path: Path):
    layout = RunLayout(tmp_path)
    boundary = np.zeros((16, 20), dtype=bool)
    boundary[7, :] = True
    boundary[:, 9] = True
    write_png(layout.sections / "labels" / "x0000.png", boundary.astype(np.uint8) * 255)
    prepare_plain(layout, progress=False)
    image = read_grey(layout.plain / "images" / "x0000.png")
    assert np.allclose(image[boundary], round(PLAIN_LINE * 255) / 255)
    assert np.allclose(image[~boundary], round(PLAIN_BACKGROUND * 255) / 255)
    assert np.array_equal(read_grey(layout.plain / "labels" / "x0000.png") > 0.5, boundary)
    assert (layout.plain / "done.json").is_file()


def test_real_source_split_by_name_prefix(tmp_path: Path):
    source = tmp_path / "data"
    for name in ("train_a", "train_b", "train_c", "test_d"):
        write_png(source / "images" / f"{name}.png", np.full((8, 8), 128, np.uint8))
        label = np.zeros((8, 8), np.uint8)
        label[4] = 255
        write_png(source / "labels" / f"{name}.png", label)
    config = load_experiment_config(_write_yaml(tmp_path / "c.yaml", {"base": "demo", "real": {"source": str(source)}}))
    train, test = artefacts._split_by_source(config, source)
    assert [p.name for p in train] == ["train_a", "train_b", "train_c"] and [p.name for p in test] == ["test_d"]


def test_builtin_demo_renders_the_configured_preset(tmp_path: Path):
    import json

    config = load_experiment_config(_write_yaml(tmp_path / "c.yaml", {
        "base": "demo", "real": {"demo_images": 4, "demo_size": 64, "demo_preset": "easy"}}))
    layout = RunLayout(tmp_path / "run")
    artefacts.prepare_real(config, layout, progress=False)
    record = json.loads((layout.root / "real" / "generated" / "run.json").read_text())
    assert record["config"]["preset"] == "easy" and record["config"]["n"] == 4
    assert len(list((layout.real_train / "images").glob("*.png"))) == 3


def test_a_cached_row_gains_the_later_scores_from_its_predictions_without_retraining(tmp_path: Path):
    from grainforge.data.io import write_json
    from grainforge.data.pairs import read_boundary
    from grainforge.experiment.layout import RunLayout
    from grainforge.experiment.rows import compute_row
    from grainforge.grains import boundary_from_ids
    from grainforge.grainsize import grain_size_error
    from grainforge.metrics import evaluate_boundaries
    from grainforge.segment.postprocess import raw_boundaries

    layout = RunLayout(tmp_path / "run")
    row = layout.row("real", 1.0, 0)
    ids = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 12, axis=0), 12, axis=1)  # 4 x 4 squares of 12 px
    truth = boundary_from_ids(ids)
    probability = np.where(truth, 230, 20).astype(np.uint8)
    probability[:, 30:34] = 20  # one boundary segment the network missed: a merge before closing
    write_png(layout.real_test / "labels" / "t0.png", truth.astype(np.uint8) * 255)
    write_png(row / "pred" / "probabilities" / "t0.png", probability)
    write_png(row / "pred" / "boundaries" / "t0.png", truth.astype(np.uint8) * 255)  # closing mended it
    write_json(row / "metrics.json", {"map": 1.0, "ari": 1.0, "iterations": 150})
    config = shipped_configs()["demo"]
    metrics = compute_row(layout.root, config, RowSpec("table4", "real", 1.0, 0))
    raw = evaluate_boundaries(read_boundary(layout.real_test / "labels" / "t0.png", 255),
                              raw_boundaries(probability / 255.0, 0.5))
    assert metrics["map_raw"] == raw["map"] < 1.0 and metrics["ari_raw"] == raw["ari"]
    assert metrics["delta_G_intercept"] == grain_size_error(truth, truth)["delta_G_intercept"] == 0.0
    assert metrics["map"] == 1.0 and not (row / "model").exists()  # nothing retrained
    assert json.loads((row / "metrics.json").read_text()) == metrics  # written back: the next run reads it
