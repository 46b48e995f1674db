"""`grainforge evaluate PRED_DIR TRUE_DIR --out metrics.csv`: MAP, ARI, VI, boundary F1 and grain-size error per image."""

from __future__ import annotations

from pathlib import Path

import typer

from grainforge.errors import UserError


def evaluate(
    pred_dir: Path = typer.Argument(..., help="Folder of predicted boundary maps (or a run folder with boundaries/)."),
    true_dir: Path = typer.Argument(..., help="Folder of true boundary labels with the same file stems."),
    out: Path = typer.Option(Path("metrics.csv"), "--out", help="Per-image metrics CSV to write."),
    boundary_value: str = typer.Option("auto", "--boundary-value",
                                       help="Pixel value of boundaries in the TRUE labels: 0, 255 or auto (the rarer "
                                            "value of each true label)."),
    pred_boundary_value: int = typer.Option(255, "--pred-boundary-value",
                                            help="Pixel value of boundaries in the predictions: 255 (what grainforge "
                                                 "writes) or 0; never guessed per file."),
    ari: str = typer.Option("paper", "--ari", help="ARI convention: paper (boundary = cluster 0) or grains."),
    truth_lines: str = typer.Option("auto", "--truth-lines",
                                    help="auto: thin true boundaries wider than 1 px before scoring; as-is: score them as traced."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0 = all CPUs)."),
    um_per_px: float | None = typer.Option(None, "--um-per-px", help="Pixel size in micrometres: mean intercepts in um "
                                                                     "and absolute ASTM G (ΔG needs no pixel size)."),
) -> None:
    """Score predicted grain boundaries against true labels (conventions of docs/design.md §4)."""
    if boundary_value not in ("auto", "0", "255"):
        raise UserError(f"--boundary-value: '{boundary_value}' is not 0, 255 or auto; pass the label value of boundaries")
    if pred_boundary_value not in (0, 255):
        raise UserError(f"--pred-boundary-value: {pred_boundary_value} is not 0 or 255; pass the predictions' boundary value")
    if workers < 0:
        raise UserError(f"--workers: {workers} is negative; pass 0 (all CPUs) or a positive count")
    import sys

    from rich.console import Console
    from rich.table import Table

    from grainforge.data.io import check_pixel_size, write_csv
    from grainforge.metrics import ROW_COLUMNS, evaluate_folders, summarize

    rows = evaluate_folders(pred_dir, true_dir, boundary_value=boundary_value if boundary_value == "auto" else int(boundary_value),
                            ari_mode=ari, workers=workers or None, pred_boundary_value=pred_boundary_value,
                            truth_lines=truth_lines,
                            progress=sys.stderr.isatty())  # a non-terminal would keep the bar's last line
    um_per_px = check_pixel_size(um_per_px)
    size_rows = _grain_size_errors(pred_dir, true_dir, boundary_value, um_per_px, truth_lines, pred_boundary_value)
    by_image = {size_row["image"]: size_row for size_row in size_rows}
    for row in rows:
        row.update(by_image[row["image"]])
    write_csv(out, rows, columns=[*ROW_COLUMNS, *(key for key in size_rows[0] if key != "image")])

    table = Table(title=f"{len(rows)} images, ARI convention: {ari}, true lines: {truth_lines}")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    for name, (mean, std) in summarize(rows).items():
        table.add_row(name, f"{mean:.4f}", f"{std:.4f}")
    console = Console()
    console.print(table)
    grains = sum(row["n_true"] for row in rows), sum(row["n_pred"] for row in rows)
    console.print(f"{pred_dir} vs {true_dir}: {grains[1]} predicted / {grains[0]} true grains; per-image metrics in {out}")
    _print_grain_size_error(console, size_rows)


def _grain_size_errors(pred_dir: Path, true_dir: Path, boundary_value: str, um_per_px: float | None,
                       truth_lines: str, pred_boundary_value: int) -> list[dict]:
    """Per-image grain-size error rows (docs/design.md §3.6), the truth read as the metrics read it."""
    from grainforge.grainsize import folder_grain_size_errors

    return folder_grain_size_errors(pred_dir, true_dir, boundary_value if boundary_value == "auto" else int(boundary_value),
                                    um_per_px, truth_lines, pred_boundary_value)


def _print_grain_size_error(console, size_rows: list[dict]) -> None:
    from grainforge.grainsize import pooled_delta_g

    pooled = pooled_delta_g(size_rows)
    console.print(f"grain size: ΔG intercept {pooled['delta_G_intercept']:+.2f} (G of the mean ℓ̄, predicted − true), "
                  f"mean intercept {100 * pooled['mean_intercept_rel_error']:+.1f} %, "
                  f"ΔG planimetric {pooled['delta_G_planimetric']:+.2f}")
