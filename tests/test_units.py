"""Physical units (docs/design.md §3.6): pixel sizes read from TIFF resolution tags, ImageJ and OME
metadata and written into grainforge's TIFFs; areas with units; µm columns in grain statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from grainforge import grainstats
from grainforge.data.io import area_in_px, check_pixel_size, read_csv, read_pixel_size, write_png, write_tiff
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids

IMAGE = np.zeros((6, 8), dtype=np.uint16)


def test_write_tiff_stores_the_pixel_size_that_read_pixel_size_and_tifffile_read_back(tmp_path: Path):
    write_tiff(tmp_path / "a.tif", IMAGE, um_per_px=0.2252)
    assert read_pixel_size(tmp_path / "a.tif") == pytest.approx(0.2252, rel=1e-6)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:  # standard tags: pixels per centimetre
        page = tif.pages.first
        assert page.resolutionunit == tifffile.RESUNIT.CENTIMETER
        assert page.get_resolution()[0] == pytest.approx(1e4 / 0.2252, rel=1e-6)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), IMAGE)
    write_tiff(tmp_path / "plain.tif", IMAGE)
    assert read_pixel_size(tmp_path / "plain.tif") is None
    with pytest.raises(UserError, match="must be > 0"):
        write_tiff(tmp_path / "bad.tif", IMAGE, um_per_px=0.0)


@pytest.mark.parametrize(("unit", "resolution", "expected"), [
    ("um", 2.0, 0.5), ("micron", 4.0, 0.25), ("\\u00B5m", 2.0, 0.5), ("nm", 0.01, 100 * 1e-3), ("mm", 1000.0, 1.0),
])
def test_imagej_unit_and_resolution_give_the_pixel_size(tmp_path: Path, unit: str, resolution: float, expected: float):
    tifffile.imwrite(tmp_path / "ij.tif", IMAGE, imagej=True, resolution=(resolution, resolution), metadata={"unit": unit})
    assert read_pixel_size(tmp_path / "ij.tif") == pytest.approx(expected)


def test_ome_physical_size_gives_the_pixel_size(tmp_path: Path):
    tifffile.imwrite(tmp_path / "ome.tif", IMAGE, ome=True, metadata={"PhysicalSizeX": 150.0, "PhysicalSizeXUnit": "nm",
                                                                      "PhysicalSizeY": 150.0, "PhysicalSizeYUnit": "nm"})
    assert read_pixel_size(tmp_path / "ome.tif") == pytest.approx(0.15)
    tifffile.imwrite(tmp_path / "ome_um.tif", IMAGE, ome=True, metadata={"PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3})
    assert read_pixel_size(tmp_path / "ome_um.tif") == pytest.approx(0.3)  # OME's default unit is µm


def test_missing_or_meaningless_metadata_gives_no_pixel_size(tmp_path: Path):
    tifffile.imwrite(tmp_path / "dpi.tif", IMAGE, resolution=(72, 72), resolutionunit="INCH")  # an image editor's default
    tifffile.imwrite(tmp_path / "ij_px.tif", IMAGE, imagej=True)  # ImageJ without a calibration
    write_png(tmp_path / "a.png", IMAGE.astype(np.uint8))
    assert [read_pixel_size(tmp_path / name) for name in ("dpi.tif", "ij_px.tif", "a.png")] == [None, None, None]


def test_bad_metadata_is_a_user_error_naming_the_file(tmp_path: Path):
    tifffile.imwrite(tmp_path / "furlong.tif", IMAGE, imagej=True, resolution=(2, 2), metadata={"unit": "furlong"})
    with pytest.raises(UserError, match=r"furlong\.tif: ImageJ metadata .*unknown length unit 'furlong'"):
        read_pixel_size(tmp_path / "furlong.tif")
    tifffile.imwrite(tmp_path / "rect.tif", IMAGE, resolution=(1e4, 2e4), resolutionunit="CENTIMETER")
    with pytest.raises(UserError, match="rect.tif: non-square pixels"):
        read_pixel_size(tmp_path / "rect.tif")
    for bad in (0, -1.5, float("nan")):
        with pytest.raises(UserError, match="--um-per-px .*must be > 0"):
            check_pixel_size(bad)


def test_area_in_px_converts_physical_areas_with_the_pixel_size():
    assert area_in_px("1500", None) == area_in_px("1500px", None) == area_in_px("1500 px²", None) == 1500.0
    assert area_in_px("75um2", 0.5) == area_in_px("75 µm²", 0.5) == area_in_px("7.5e-5 mm^2", 0.5) == pytest.approx(300.0)
    with pytest.raises(UserError, match="--um-per-px"):
        area_in_px("75um2", None)
    with pytest.raises(UserError, match="unknown area unit 'um'"):
        area_in_px("75 um", 0.5)
    with pytest.raises(UserError, match="must be > 0"):
        area_in_px("0", 0.5)


def test_grain_statistics_carry_micrometre_columns_with_a_pixel_size(tmp_path: Path):
    index = np.repeat(np.arange(8), np.arange(8, 16))  # cells 8..15 px wide
    boundary = boundary_from_ids(np.add.outer(index * 8, index))
    write_png(tmp_path / "grains" / "a.png", boundary.astype(np.uint8) * 255)
    result = grainstats.stats_run(tmp_path / "out", [tmp_path / "grains"], progress=False, um_per_px=2.0)
    summary, plain = result["datasets"]["grains"], grainstats.summarize(grainstats.folder_grain_tables(tmp_path / "grains"))
    assert summary["mean_area_px"] == plain["mean_area_px"] and summary["mean_area_um2"] == plain["mean_area_px"] * 4.0
    assert summary["median_area_um2"] == plain["median_area_px"] * 4.0 and summary["std_area_um2"] == plain["std_area_px"] * 4.0
    assert summary["mean_equivalent_diameter_um"] == pytest.approx(2.0 * plain["mean_equivalent_diameter_px"])
    row = read_csv(tmp_path / "out" / "grains.csv")[0]
    assert float(row["area_um2"]) == float(row["area_px"]) * 4.0
    assert float(row["equivalent_diameter_um"]) == pytest.approx(2.0 * float(row["equivalent_diameter_px"]))
    with pytest.raises(UserError, match="um_per_px -1"):
        grainstats.stats_run(tmp_path / "o2", [tmp_path / "grains"], progress=False, um_per_px=-1.0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # small fields: fewer than E112's 50 grains
def test_predict_takes_the_pixel_size_from_tiff_metadata_and_hands_it_to_grainsize(tmp_path: Path):
    from grainforge.grainsize import grainsize_run
    from grainforge.segment import ForestConfig, predict, train_forest

    rows, cols = (np.indices((72, 72)) + 6) // 12
    boundary = boundary_from_ids(rows * 100 + cols)
    image = np.where(boundary, 50, 200).astype(np.uint8)
    write_png(tmp_path / "train" / "images" / "a.png", image)
    write_png(tmp_path / "train" / "labels" / "a.png", boundary.astype(np.uint8) * 255)
    model = train_forest(tmp_path / "train", tmp_path / "forest", ForestConfig(n_estimators=5, pixels_per_image=2000, n_jobs=1),
                         seed=0, progress=False)
    (tmp_path / "micrographs").mkdir()
    tifffile.imwrite(tmp_path / "micrographs" / "m.tif", image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "micron"})
    summary = predict(model, [tmp_path / "micrographs"], tmp_path / "pred", progress=False)
    assert summary[0]["um_per_px"] == 0.5
    assert summary[0]["grains_per_mm2"] == summary[0]["n_grains_weighted"] / (72 * 72 * 0.5e-3**2)
    assert read_pixel_size(tmp_path / "pred" / "labels" / "m.tif") == pytest.approx(0.5)  # written back into the labels
    result = grainsize_run(tmp_path / "pred", tmp_path / "size", angles_deg=(0, 90))
    assert result["fields"][0]["um_per_px"] == 0.5  # from the prediction's run.json
    assert result["fields"][0]["grains_per_mm2"] == pytest.approx(summary[0]["grains_per_mm2"])
