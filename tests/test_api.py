"""The notebook API (grainforge.api, docs/api.md): the documented example runs as written, the arrays it
returns agree with the file-writing pipeline, and bad inputs get one-line UserErrors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from grainforge import api as gf
from grainforge.data.io import read_csv, read_image, to_uint8, write_png
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids
from grainforge.segment import predict

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _code_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The namespace after running every python cell of docs/api.md, in order, in a fresh folder."""
    folder = tmp_path_factory.mktemp("api-doc")
    blocks = _code_blocks(DOC.read_text())
    assert len(blocks) == 5
    namespace: dict = {}
    cwd = Path.cwd()
    try:
        os.chdir(folder)
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)
    finally:
        os.chdir(cwd)
    namespace["folder"] = folder
    return namespace


def test_doc_example_runs_and_its_numbers_hold_together(example):
    volume, sections, labels, table = example["volume"], example["sections"], example["labels"], example["table"]
    assert volume.shape == (24, 24, 24) and volume.dtype == np.uint32
    assert list(sections) == ["z0000", "z0008", "z0016"]
    assert len({b.shape for b in sections.values()}) == 1
    image, boundary = example["image"], example["boundary"]
    assert image.shape == boundary.shape == labels.shape == example["truth"].shape
    # the table describes the label map: one row per grain, areas that add up, units that convert
    assert np.array_equal(table["grain"], np.arange(1, labels.max() + 1))
    assert np.array_equal(table["area_px"], np.bincount(labels.ravel())[1:])
    np.testing.assert_allclose(table["area_um2"], table["area_px"] * 0.25)
    np.testing.assert_allclose(table["equivalent_diameter_px"], np.sqrt(4 * table["area_px"] / np.pi))
    size = example["size"]
    interior = ~table["touches_border"]
    assert size["n_grains"] == labels.max() and size["n_interior_grains"] == interior.sum()
    area_mm2 = labels.size * (0.5e-3) ** 2
    from grainforge.grainsize import field_grain_size, planimetric_count

    assert size["grains_per_mm2"] == pytest.approx(planimetric_count(labels)["n_weighted"] / area_mm2)  # corners 1/4
    assert size["mean_intercept_um"] == pytest.approx(field_grain_size(gf.label_grains(labels == 0), 0.5).mean_intercept)
    assert size["astm_g"] == pytest.approx(3.321928 * np.log10(size["grains_per_mm2"]) - 2.954)
    scores = example["scores"]
    assert scores == gf.evaluate(example["truth"], boundary)
    assert scores["ari"] > 0.5 and 0 < scores["map"] <= 1  # a forest on a rendered section finds most grains
    assert gf.evaluate(example["truth"], example["truth"])["map"] == 1.0
    assert example["synthetic"].shape == example["synthetic_label"].shape == sections["z0000"].shape
    assert 0 <= example["synthetic"].min() <= example["synthetic"].max() <= 1


def test_segment_image_gives_what_segment_predict_writes(example, tmp_path):
    """The arrays of the API equal the files of the command-line pipeline, model and image the same."""
    model_dir = example["folder"] / "runs" / "api-demo" / "forest"
    image = to_uint8(example["image"])
    write_png(tmp_path / "in" / "m.png", image)
    predict(model_dir, [tmp_path / "in"], tmp_path / "out", um_per_px=0.5, progress=False)
    boundary, labels, table = gf.segment_image(gf.load_segmenter(model_dir), image, um_per_px=0.5)
    np.testing.assert_array_equal(boundary, read_image(tmp_path / "out" / "boundaries" / "m.png") > 0)
    np.testing.assert_array_equal(labels, read_image(tmp_path / "out" / "labels" / "m.tif"))
    rows = read_csv(tmp_path / "out" / "grains" / "m.csv")
    for column in ("area_px", "perimeter_px", "n_neighbours", "area_um2"):
        np.testing.assert_allclose(table[column], [float(row[column]) for row in rows], rtol=1e-12)
    summary = read_csv(tmp_path / "out" / "summary.csv")[0]
    size = gf.grain_size(labels, um_per_px=0.5)
    for key in ("n_grains", "n_interior_grains", "mean_area_px", "grains_per_mm2", "astm_g"):
        assert size[key] == pytest.approx(float(summary[key]), rel=1e-9)


def test_grain_size_of_a_known_grid_and_units():
    rows, cols = np.indices((40, 40)) // 10  # 16 square grains; the 1-px rule makes the inner four 9 x 9
    labels = gf.label_grains(boundary_from_ids(4 * rows + cols))
    size = gf.grain_size(labels)
    assert (size["n_grains"], size["n_interior_grains"], size["mean_area_px"]) == (16, 4, 81.0)
    assert "astm_g" not in size
    same = gf.grain_size(labels == 0, um_per_px=2.0)  # a boundary map gives the same figures
    assert same["mean_area_um2"] == 324.0 and same["n_grains"] == 16
    # 4 interior + 8 edge grains halved + 4 corner grains quartered on 80 x 80 um = 0.0064 mm^2
    assert same["grains_per_mm2"] == pytest.approx(9 / 0.0064)


def test_bad_inputs_are_one_line_user_errors():
    boundary = np.zeros((8, 8), bool)
    boundary[4] = True
    sparse = np.where(boundary, 255, 0).astype(np.uint8)
    sparse[:, 6:] = 128
    cases = [
        (lambda: gf.grain_size(boundary, um_per_px=0), "um_per_px 0: the pixel size must be > 0"),
        (lambda: gf.grain_size(np.zeros((2, 3, 4), int)), "labels: shape (2, 3, 4)"),
        (lambda: gf.grain_size(np.zeros((4, 4), float)), "labels: dtype float64"),
        (lambda: gf.evaluate(sparse, boundary), "truth: a sparse label (16 untraced pixels of value 128)"),
        (lambda: gf.evaluate(boundary, np.full((8, 8), 7)), "prediction: not a boundary map"),
        (lambda: gf.evaluate(boundary, boundary[:4]), "differ in shape"),
        (lambda: gf.evaluate(boundary, boundary, ari_mode="x"), "ari_mode 'x'"),
        (lambda: gf.as_grey(np.zeros((2, 3, 5))), "is not one image"),
        (lambda: gf.slice(np.zeros((4, 4)), axes="z"), "pass a 3D integer grain-id array"),
        (lambda: gf.slice(np.zeros((4, 4, 4), int), axes="w"), "axes 'w'"),
        (lambda: gf.slice(np.zeros((4, 4, 4), int), boundary_width=0.5), "boundary_width 0.5"),
        (lambda: gf.load_segmenter("no/such/model"), "no/such/model"),
    ]
    for call, fragment in cases:
        with pytest.raises(UserError) as info:
            call()
        assert fragment in str(info.value) and "\n" not in str(info.value), (fragment, str(info.value))
    # 0/1 and 0/255 arrays count as boundary maps
    assert gf.evaluate(boundary.astype(np.uint8), np.where(boundary, 255, 0))["map"] == 1.0
