"""Where an experiment keeps its files: the run folder layout, done markers, and the names that
tie a real fraction or a result row to its folder.

Layout of RUN_DIR (each artefact folder gets ``done.json`` when complete; an incomplete one is
rebuilt, except the simulation, which resumes from its checkpoint):

    real/{train,test}/{images,labels}/   the real pairs, split (and test tiles) as the config says
    simulation/                          the Potts run (volume.zarr, log.csv, checkpoint.npz, run.json)
    sections/                            its sections: labels/, ids/, manifest.csv
    simulated-ids/{images,labels}/       sections as grain-ID images, pixel value = grain id (0 = boundary) / N
    plain/{images,labels}/               sections drawn as dark 1-px lines on a bright background
    microscope/{images,labels}/          sections rendered by the virtual microscope, random parameters
    style/f<F>/model/, style/f<F>/synthetic/{images,labels}/   pix2pix trained on F of the real data, applied
    supplement/<kind>/{train,test}/{images,labels}/   simulated (grain-ID) or synthetic (F = 1) sections split train : test
    rows/<setting>_f<F>_s<seed>/         one U-Net row: model/, pred/, per_image.csv, metrics.json
    artefacts.json                       timings and sizes (Table 1)
    results.csv, report.md, figures/     the result rows and the report
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from grainforge.data.io import write_json

#: Fraction of the real data whose pix2pix paints the supplement's images and Table 1's timing.
FULL = 1.0


def format_fraction(fraction: float) -> str:
    """A fraction as it is written to results.csv and folder names: shortest exact text, e.g. 0.05, 1."""
    return f"{float(fraction):g}"


@dataclass(frozen=True)
class RunLayout:
    """Paths of the artefacts in a run folder."""

    root: Path

    @property
    def real(self) -> Path:
        return self.root / "real"

    @property
    def real_train(self) -> Path:
        return self.real / "train"

    @property
    def real_test(self) -> Path:
        return self.real / "test"

    @property
    def simulation(self) -> Path:
        return self.root / "simulation"

    @property
    def sections(self) -> Path:
        return self.root / "sections"

    @property
    def simulated_ids(self) -> Path:
        return self.root / "simulated-ids"

    @property
    def plain(self) -> Path:
        return self.root / "plain"

    @property
    def microscope(self) -> Path:
        return self.root / "microscope"

    def style_model(self, fraction: float) -> Path:
        return self.root / "style" / f"f{format_fraction(fraction)}" / "model"

    def synthetic(self, fraction: float) -> Path:
        return self.root / "style" / f"f{format_fraction(fraction)}" / "synthetic"

    def supplement(self, kind: str) -> Path:
        """The supplement's split of ``kind`` images (``simulated``: the grain-ID sections, the paper's;
        ``synthetic``: pix2pix of F = 1), with ``train/`` and ``test/``."""
        return self.root / "supplement" / kind

    def row(self, setting: str, fraction: float, seed: int) -> Path:
        """Folder of one U-Net row (shared by the tables with the same setting, fraction and seed)."""
        return self.root / "rows" / f"{setting}_f{format_fraction(fraction)}_s{seed}"

    def row_seeds(self, setting: str, fraction: float) -> list[Path]:
        """Row folders of a setting and fraction that exist, one per seed, sorted by name."""
        return sorted((self.root / "rows").glob(f"{setting}_f{format_fraction(fraction)}_s*"))

    @property
    def results(self) -> Path:
        return self.root / "results.csv"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def timings(self) -> Path:
        return self.root / "artefacts.json"

    def read_timings(self) -> dict:
        """artefacts.json as a dict ({} before the first artefact)."""
        return json.loads(self.timings.read_text()) if self.timings.is_file() else {}

    def add_timings(self, **values) -> None:
        """Merge ``values`` into artefacts.json; a file lock keeps artefacts built at once on dask workers
        from losing each other's values."""
        from filelock import FileLock

        with FileLock(self.root / ".artefacts.json.lock"):
            write_json(self.timings, {**self.read_timings(), **values})


def is_done(folder: Path) -> bool:
    """Whether the artefact folder is complete (holds its done marker)."""
    return (folder / "done.json").is_file()


def start_fresh(folder: Path) -> None:
    """Remove an incomplete artefact folder so that it is rebuilt from scratch."""
    if folder.exists():
        shutil.rmtree(folder)


def mark_done(folder: Path, **info) -> None:
    """Write the folder's done marker (``done.json`` with ``info``)."""
    write_json(folder / "done.json", info)


def real_subset(layout: RunLayout, fraction: float, split_seed: int, patches: int | None = None,
                patch: int = 400) -> list:
    """The real training pairs of ``fraction`` (nested for a fixed split seed: 5 % inside 10 % ...).

    With ``patches`` (the paper: 2800), the fraction's images cut into their share of one fixed set of
    ``patches`` patches of ``patch`` px spread evenly over all training images
    (:func:`grainforge.data.torchdata.fixed_patch_set`), so a fraction is a share of that set.
    """
    from grainforge.data.pairs import load_pairs
    from grainforge.data.split import nested_fraction

    pairs = load_pairs(layout.real_train)
    names = [p.name for p in pairs]
    chosen = set(nested_fraction(names, fraction, split_seed))
    subset = [p for p in pairs if p.name in chosen]
    if patches is None:
        return subset
    from grainforge.data.torchdata import fixed_patch_set

    return fixed_patch_set(subset, names, patch, patches, split_seed)
