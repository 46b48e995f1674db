"""The figures of an experiment report (PNG, under RUN_DIR/figures/): MAP/ARI against the real
fraction beside the paper's curves, sample grids (paper Figs. 3 and 4) and the grain statistics
of real vs simulated labels (paper Fig. 5). Each plot function returns False, drawing nothing,
when the rows or artefacts it needs do not exist."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from grainforge.data.io import list_images, read_grey, save_figure
from grainforge.experiment.layout import RunLayout
from grainforge.experiment.paper import PAPER_TABLE4
from grainforge.experiment.runner import SETTING_NAMES


def percent(fraction: float) -> str:
    """A fraction as a percentage label, e.g. 0.25 -> "25 %"."""
    return f"{fraction * 100:g} %"


def plot_fraction_curves(stats: dict, path: Path) -> bool:
    """MAP and ARI against real fraction: one line per setting, shaded ± std over seeds. False if no rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(dict)
    for (table, setting, f), s in stats.items():
        if table in ("table4", "beyond"):
            series[setting][f] = s
    if not series:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, name in zip(axes, ("map", "ari"), ("MAP", "ARI")):
        for k, (setting, by_f) in enumerate(sorted(series.items())):
            fs = sorted(by_f)
            mean = np.array([by_f[f][metric][0] for f in fs])
            std = np.array([by_f[f][metric][1] for f in fs])
            ax.plot(np.array(fs) * 100, mean, "o-", color=f"C{k}", label=SETTING_NAMES[setting])
            ax.fill_between(np.array(fs) * 100, mean - std, mean + std, color=f"C{k}", alpha=0.2)
        paper_fs = [f for f in sorted(PAPER_TABLE4) if PAPER_TABLE4[f][1] is not None]
        for which, style, label in ((0, ":", "paper real"), (1, "--", "paper real + synthetic")):
            ax.plot(np.array(paper_fs) * 100, [PAPER_TABLE4[f][which][metric == "ari"] for f in paper_fs],
                    style, color="grey", label=label)
        ax.set(xlabel="real training data (%)", ylabel=name, title=f"{name} vs real fraction")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
    return True


def _first_images(folder: Path, n: int) -> list[Path]:
    return list_images(folder)[:n] if folder.is_dir() else []


def _grid(columns: dict[str, list[np.ndarray]], path: Path) -> None:
    """A figure with one column per entry (title -> images of equal count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = min(len(images) for images in columns.values())
    fig, axes = plt.subplots(n_rows, len(columns), figsize=(2.6 * len(columns), 2.6 * n_rows), squeeze=False)
    for c, (title, images) in enumerate(columns.items()):
        for r in range(n_rows):
            axes[r, c].imshow(images[r], cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_axis_off()
        axes[0, c].set_title(title, fontsize=9)
    save_figure(fig, path)


def plot_fig3(layout: RunLayout, fractions: Sequence[float], path: Path, n: int = 3) -> bool:
    """Paper Fig. 3: real image | simulated (grain IDs) | simulated (plain) | label | synthetic (pix2pix of
    the largest fraction) | microscope render, where those artefacts exist."""
    synthetic = next((layout.synthetic(f) for f in sorted(fractions, reverse=True) if layout.synthetic(f).is_dir()), None)
    real = _first_images(layout.real_train / "images", n)
    if synthetic is None or not real:
        return False
    stems = [p.stem for p in _first_images(synthetic / "labels", n)]
    columns = {"real": [read_grey(p) for p in real]}
    if layout.simulated_ids.is_dir():
        columns["simulated (grain IDs)"] = [read_grey(layout.simulated_ids / "images" / f"{s}.png") for s in stems]
    if layout.plain.is_dir():
        columns["simulated (plain)"] = [read_grey(layout.plain / "images" / f"{s}.png") for s in stems]
    columns["label"] = [read_grey(synthetic / "labels" / f"{s}.png") for s in stems]
    columns["synthetic (pix2pix)"] = [read_grey(synthetic / "images" / f"{s}.png") for s in stems]
    if layout.microscope.is_dir():
        columns["microscope"] = [read_grey(layout.microscope / "images" / f"{s}.png") for s in stems]
    _grid(columns, path)
    return True


def plot_fig4(layout: RunLayout, stats: dict, path: Path, n: int = 3) -> bool:
    """Paper Fig. 4: test image | truth | real-only prediction | mixed prediction, at the smallest fraction
    with both rows (seed 0 or the first seed found)."""
    fractions = sorted(f for (t, s, f) in stats if t == "table4" and s == "real+synthetic" and ("table4", "real", f) in stats)
    for f in fractions:
        real_pred = [row / "pred" / "boundaries" for row in layout.row_seeds("real", f)]
        mixed_pred = [row / "pred" / "boundaries" for row in layout.row_seeds("real+synthetic", f)]
        if real_pred and mixed_pred:
            images = _first_images(layout.real_test / "images", n)
            stems = [p.stem for p in images]
            _grid({"test image": [read_grey(p) for p in images],
                   "truth": [read_grey(layout.real_test / "labels" / f"{s}.png") for s in stems],
                   f"real {percent(f)} only": [read_grey(real_pred[0] / f"{s}.png") for s in stems],
                   f"real {percent(f)} + synthetic": [read_grey(mixed_pred[0] / f"{s}.png") for s in stems]}, path)
            return True
    return False


def plot_grain_statistics(layout: RunLayout, path: Path) -> bool:
    """Paper Fig. 5: grain areas and edge counts of real training labels vs simulated sections."""
    from grainforge.grainstats import folder_grain_tables, plot_grain_distributions

    real, simulated = layout.real_train / "labels", layout.sections / "labels"
    if not (real.is_dir() and simulated.is_dir()):
        return False
    plot_grain_distributions({"real": folder_grain_tables(real), "simulated": folder_grain_tables(simulated)}, path)
    return True
