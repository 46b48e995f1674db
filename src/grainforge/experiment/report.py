"""RUN_DIR/report.md: the paper's tables (mean ± std over seeds beside the paper's numbers, from
:mod:`grainforge.experiment.paper`), the verdict on the paper's claim, and the figures of
:mod:`grainforge.experiment.figures`. Renders from results.csv and whatever artefacts exist."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from grainforge.data.io import atomic_path
from grainforge.experiment.config import ExperimentConfig
from grainforge.experiment.figures import (percent, plot_fig3, plot_fig4, plot_fraction_curves,
                                           plot_grain_statistics)
from grainforge.experiment.layout import FULL, RunLayout, format_fraction
from grainforge.experiment.paper import (CLAIM_MAX_FRACTION, PAPER_IMAGE_PIXELS, PAPER_SUPPLEMENT, PAPER_TABLE1_S,
                                         PAPER_TABLE3, PAPER_TABLE4)
from grainforge.experiment.runner import SETTING_NAMES, TABLE_SETTINGS, read_results

#: Below this MAP of the real-100 % model no model has learned the task: the claim's comparison is noise.
MEANINGFUL_MAP = 0.1

Stats = dict[str, tuple[float, float, int]]  # metric -> (mean, std, n seeds)


def aggregate(rows: Sequence[dict]) -> dict[tuple[str, str, float], Stats]:
    """(table, setting, fraction) -> metric -> (mean, population std, n) over seeds."""
    groups: dict[tuple[str, str, float], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["table"], row["setting"], float(row["real_fraction"]))].append(row)
    stats = {}
    for key, members in groups.items():
        stats[key] = {}
        for metric in ("map", "ari", "map_raw", "ari_raw", "vi_split", "vi_merge", "boundary_f1", "delta_G_intercept",
                       "mean_intercept_rel_error", "wall_time_s"):
            values = np.array([float(m[metric]) for m in members if str(m.get(metric, "")) != ""], dtype=float)
            stats[key][metric] = (float(values.mean()), float(values.std()), len(values)) if values.size else (math.nan, math.nan, 0)
    return stats


def _cell(stats: Stats | None, metric: str) -> str:
    if not stats or stats[metric][2] == 0:
        return "—"
    mean, std, n = stats[metric]
    return f"{mean:.4f}" if n == 1 else f"{mean:.4f} ± {std:.4f}"


def _paper(pair: tuple[float, float] | None) -> str:
    return "—" if pair is None else f"{pair[0]:.4f} / {pair[1]:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows), ""]


def table1_lines(timings: dict) -> list[str]:
    """Table 1: seconds per 400 x 400-equivalent image, measured vs the paper."""
    if "n_sections" not in timings:
        return ["_No simulation yet: Table 1 needs the simulated sections._", ""]
    scale = PAPER_IMAGE_PIXELS / timings["section_pixels"]
    simulated = (timings.get("simulation_s", math.nan) + timings["slicing_s"]) / timings["n_sections"] * scale
    key = format_fraction(FULL)
    synthetic = timings.get(f"style_apply_s_f{key}", math.nan) / max(timings.get(f"style_apply_n_f{key}", 1), 1) * scale
    rows = [["real (hand labelling)", "not measured", f"{PAPER_TABLE1_S['real']:g}"],
            ["simulated (Potts + slicing)", f"{simulated:.3g}", f"{PAPER_TABLE1_S['simulated']:g}"],
            ["synthetic (pix2pix inference)", f"{synthetic:.3g}", f"{PAPER_TABLE1_S['synthetic']:g}"]]
    side = int(round(math.sqrt(timings["section_pixels"])))
    note = (f"Measured on this machine: {timings['n_sections']} sections of ~{side}² px, times scaled by pixel count "
            f"to 400 × 400; simulation includes its whole run ({timings.get('simulation_s', math.nan):.0f} s) and "
            f"slicing ({timings['slicing_s']:.0f} s).")
    return [*_table(["image kind", "measured s / image", "paper s / image"], rows), note, ""]


#: The two scorings every table shows: (metric suffix, how the report names it).
SCORINGS = (("_raw", "as the paper scores: the network's own boundaries (thresholded, thinned to 1 px, no closing)"),
            ("", "after grainforge's closing and merging (docs/design.md §8.5)"))
#: Column names of the metrics in the tables, closed then raw.
METRIC_NAMES = {"map": "MAP", "ari": "ARI", "map_raw": "MAP raw", "ari_raw": "ARI raw"}


def claim_lines(stats: dict) -> list[str]:
    """The verdict on the paper's claim (real+synthetic with <= 35 % real reaches real 100 %), once per
    scoring of :data:`SCORINGS`, with the numbers."""
    full = stats.get(("table4", "real", 1.0)) or stats.get(("table3", "real", 1.0))
    mixed = {f: s for (t, setting, f), s in stats.items() if t == "table4" and setting == "real+synthetic"
             and f <= CLAIM_MAX_FRACTION + 1e-9}
    if not full or not mixed:
        return ["_The paper's claim needs Table 4 rows at real 100 % and at a fraction ≤ 35 %._", ""]
    lines = ["Paper's finding (real ≤ 35 % + synthetic ≥ real 100 %):", ""]
    for suffix, scoring in SCORINGS:
        lines += [f"Scored {scoring}:", ""]
        if full["map" + suffix][2] == 0:
            lines += ["- _No scores of this kind in results.csv (rows computed before it existed)._", ""]
            continue
        for metric in ("map" + suffix, "ari" + suffix):
            name = METRIC_NAMES[metric]
            best_f = max(mixed, key=lambda f: mixed[f][metric][0])
            best, reference = mixed[best_f][metric][0], full[metric][0]
            verdict = "holds" if best >= reference else "does not hold"
            reaching = sum(s[metric][0] >= reference for s in mixed.values())
            lines.append(f"- {name}: best real + synthetic at ≤ 35 % real is {best:.4f} (at {percent(best_f)}) vs real "
                         f"100 % {reference:.4f}: difference {best - reference:+.4f} — the claim **{verdict}** for {name} "
                         f"({reaching} of {len(mixed)} fractions ≤ 35 % reach real 100 %).")
            spread = max(mixed[best_f][metric][1], full[metric][1])
            if abs(best - reference) <= spread:
                lines[-1] += f" The difference is within the spread over seeds (± {spread:.4f})."
        forest = stats.get(("table4", "forest", 1.0)) or stats.get(("table3", "forest", 1.0))
        if forest and forest["map" + suffix][2]:
            pairs = [(m + suffix, METRIC_NAMES[m + suffix]) for m in ("map", "ari")]
            beats = [name for metric, name in pairs if full[metric][0] >= forest[metric][0]]
            standing = "at or above it in " + " and ".join(beats) if beats else "below it in both"
            lines.append(f"- Baseline: the random forest on all real images reaches {pairs[0][1]} "
                         f"{forest[pairs[0][0]][0]:.4f} / {pairs[1][1]} {forest[pairs[1][0]][0]:.4f}; the real-100 % "
                         f"U-Net is {standing}.")
        if full["map" + suffix][0] < MEANINGFUL_MAP:
            lines.append(f"- **Inconclusive**: the real-100 % model reaches only {METRIC_NAMES['map' + suffix]} "
                         f"{full['map' + suffix][0]:.4f} (< {MEANINGFUL_MAP}); no model learned to segment these images "
                         "at this scale, so the differences above are noise.")
        lines.append("")
    return lines


def grain_size_lines(stats: dict, settings: Sequence[str]) -> list[str]:
    """What each Table 4 model costs in the grain size a metallographer reports: ΔG from the mean lineal
    intercept (predicted − true, ASTM E112; docs/design.md §3.6) and the relative error of the mean intercept."""
    fractions = sorted({f for (t, s, f) in stats if t == "table4"})
    if not fractions or all(stats[key]["delta_G_intercept"][2] == 0 for key in stats if key[0] == "table4"):
        return []
    header = ["real f", *(f"{SETTING_NAMES[s]} {name}" for s in settings for name in ("ΔG", "ℓ̄ error"))]
    rows = []
    for f in fractions:
        cells = [percent(f)]
        for setting in settings:
            found = stats.get(("table4", setting, f))
            for metric in ("delta_G_intercept", "mean_intercept_rel_error"):
                if not found or found[metric][2] == 0:
                    cells.append("—")
                    continue
                mean, std, n = found[metric]
                scale, unit = (100, " %") if metric == "mean_intercept_rel_error" else (1, "")
                cells.append(f"{scale * mean:+.2f}{unit}" if n == 1 else f"{scale * mean:+.2f} ± {scale * std:.2f}{unit}")
        rows.append(cells)
    return ["Grain-size error of the closed boundaries (ΔG: E112 G from the mean lineal intercept, predicted − true; "
            "ℓ̄ error: relative error of the mean intercept; 0 is perfect, a positive ΔG means grains found too small):",
            "", *_table(header, rows)]


def table4_lines(stats: dict, table: str, settings: Sequence[str], with_paper: bool) -> list[str]:
    fractions = sorted({f for (t, _, f) in stats if t == table} | {f for (t, s, f) in stats if t == "table4" and s == "real"})
    if not fractions:
        return []
    header = ["real f", *(f"{SETTING_NAMES[s]} {METRIC_NAMES[m]}" for m in METRIC_NAMES for s in settings)]
    if with_paper:
        header += ["paper real only MAP / ARI", "paper real + synthetic MAP / ARI"]
    rows = []
    for f in fractions:
        cells = [percent(f)]
        lookup = [stats.get(("table4" if s == "real" else table, s, f)) for s in settings]
        cells += [_cell(s, m) for m in METRIC_NAMES for s in lookup]
        if with_paper:
            paper = PAPER_TABLE4.get(round(f, 2), (None, None))
            cells += [_paper(paper[0]), _paper(paper[1])]
        rows.append(cells)
    return _table(header, rows)


def fidelity_lines(fidelity: dict[float, dict]) -> list[str]:
    """The style-fidelity verdicts (``fidelity.json`` of each pix2pix's synthetic images) as a table."""
    body = [[f"{100 * f:g} %", report["verdict"], report["line"].split(" ", 2)[-1] if "line" in report else ""]
            for f, report in sorted(fidelity.items())]
    return [*_table(["pix2pix trained on", "verdict", "figures (synthetic vs real)"], body),
            "A WARN means the synthetic images differ from the real ones in a way the U-Net may learn "
            "(grey levels, boundary contrast or width, a periodic artifact): read its rows with that in mind.", ""]


def sampling_line(config: ExperimentConfig) -> str:
    """One sentence: how the training patches of this run were drawn (the paper's fixed set or not)."""
    real = config.real
    if real.patches is None:
        return ("Training patches: random crops anywhere in the training images, drawn without limit (not the paper's "
                "fixed patch set; `real.patches` selects it).")
    return (f"Training patches: one fixed set of {real.patches} patches of {real.patch} × {real.patch} px spread evenly "
            "over the real training images, as in the paper; a real fraction trains on the patches of its images, "
            "that share of the set.")


def report_markdown(config: ExperimentConfig, rows: Sequence[dict], timings: dict, figures: Sequence[str],
                    fidelity: dict[float, dict] | None = None) -> str:
    """The text of report.md (figures: names of the PNGs already written under figures/; fidelity: the
    ``fidelity.json`` of each real fraction's synthetic images)."""
    from grainforge.experiment.config import segment_config, style_config

    stats = aggregate(rows)
    seeds = sorted({int(r["seed"]) for r in rows})
    style = style_config(config)
    schedule = f"{style.iters} iterations" if style.epochs is None else f"{style.epochs} epochs over the training items"
    lines = ["# grainforge experiment report", "",
             f"Real data: `{config.real.source}` ({timings.get('real_train_images', '?')} train / "
             f"{timings.get('real_test_images', '?')} test images). Seeds: {seeds}. U-Net: preset "
             f"`{config.segment.preset}`, {segment_config(config).iters} iterations; pix2pix: preset "
             f"`{config.style.preset}`, {schedule}. Cells: mean ± std over seeds "
             "(population std; no ± with one seed). MAP and ARI use the paper's conventions (docs/design.md §4); the paper's "
             "numbers come from 100 real training images of 2800 × 1600 px and 28k-iteration U-Nets. Every table scores "
             "each model twice: MAP / ARI after grainforge's closing and merging of the predicted boundaries, and "
             "MAP raw / ARI raw on the boundaries as the network draws them (thresholded, thinned to 1 px, no closing), "
             "which is how the paper scores.", "", sampling_line(config), ""]
    if fidelity:
        lines += ["## Style fidelity of the synthetic images", "", *fidelity_lines(fidelity)]
    if "table1" in config.tables:
        lines += ["## Table 1 — time per 400 × 400 image", "", *table1_lines(timings)]
    if "table3" in config.tables:
        body = [[SETTING_NAMES[s], *(_cell(stats.get(("table3", s, 1.0)), m) for m in METRIC_NAMES),
                 _paper(PAPER_TABLE3.get(s))] for s in TABLE_SETTINGS["table3"]]
        lines += ["## Table 3 — real vs simulated training data", "",
                  *_table(["training data (100 %)", *METRIC_NAMES.values(), "paper MAP / ARI"], body),
                  "Simulated images are grain-ID sections as in the paper (pixel value = grain id, boundaries 0, scaled "
                  "from [0, N] to [0, 1]); the rows marked extra draw the same sections as dark 1-px lines instead.", ""]
    if "table4" in config.tables:
        lines += ["## Table 4 — real fraction alone vs with synthetic images", "",
                  *table4_lines(stats, "table4", TABLE_SETTINGS["table4"], with_paper=True), *claim_lines(stats),
                  *grain_size_lines(stats, TABLE_SETTINGS["table4"])]
    if "beyond" in config.tables:
        lines += ["## Beyond the paper — virtual-microscope renders instead of / besides pix2pix", "",
                  *table4_lines(stats, "beyond", ("real", "real+microscope", "real+synthetic+microscope"), with_paper=False)]
        if config.real.source == "builtin-demo":
            lines += ["On the built-in demo data this baseline is optimistic by construction: the \"real\" images are "
                      "themselves rendered by the same virtual microscope (with its default parameters), so its "
                      "renders are far closer to the test images than they could be to real micrographs; a gain "
                      "here says nothing about real data.", ""]
    if "supplement" in config.tables:
        ratio = f"{config.supplement_ratio:g} : 1"
        body = [[f"{SETTING_NAMES[setting]} {ratio}",
                 *(_cell(stats.get(("supplement", setting, 0.0)), m) for m in METRIC_NAMES),
                 _paper(PAPER_SUPPLEMENT if setting == "simulated-split" else None)]
                for setting in TABLE_SETTINGS["supplement"]]
        lines += ["## Supplement — trained and tested on simulated images", "",
                  *_table(["split", *METRIC_NAMES.values(), "paper MAP / ARI"], body)]
    if figures:
        lines += ["## Figures", ""] + [f"![{name}](figures/{name})" for name in figures] + [""]
    lines += ["All rows with VI, boundary F1, iterations and wall time: `results.csv`.", ""]
    return "\n".join(lines)


def read_fidelity(layout: RunLayout, config: ExperimentConfig) -> dict[float, dict]:
    """{real fraction: fidelity.json} of the synthetic image sets the run has."""
    from grainforge.experiment.artefacts import style_fractions
    from grainforge.style.fidelity import REPORT_FILE

    found = {}
    for fraction in style_fractions(config):
        path = layout.synthetic(fraction) / REPORT_FILE
        if path.is_file():
            found[fraction] = json.loads(path.read_text())
    return found


def render_report(run_dir: str | Path, config: ExperimentConfig) -> Path:
    """Write RUN_DIR/report.md and RUN_DIR/figures/*.png from results.csv and the artefacts; returns report.md."""
    layout = RunLayout(Path(run_dir))
    rows = read_results(layout.results)
    stats = aggregate(rows)
    figures_dir = layout.figures
    makers = {"metrics_vs_fraction.png": lambda p: plot_fraction_curves(stats, p),
              "grain_statistics.png": lambda p: plot_grain_statistics(layout, p)}
    if not config.no_data_images:
        makers["fig3_samples.png"] = lambda p: plot_fig3(layout, config.fractions, p)
        makers["fig4_predictions.png"] = lambda p: plot_fig4(layout, stats, p)
    figures = [name for name, make in makers.items() if make(figures_dir / name)]
    path = layout.report
    with atomic_path(path) as tmp:
        tmp.write_text(report_markdown(config, rows, layout.read_timings(), figures, read_fidelity(layout, config)))
    return path
