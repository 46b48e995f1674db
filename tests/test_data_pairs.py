import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import assert_user_error, run_cli
from grainforge.data.io import write_png, write_tiff
from grainforge.data.pairs import Pair, label_to_boundary, load_boundaries, load_pairs, read_boundary
from grainforge.errors import UserError
from grainforge.grains import boundary_from_ids, label_grains


def _ids(size=48):
    """Four rectangular grains."""
    ids = np.ones((size, size), dtype=np.int32)
    ids[size // 2 :, :] += 1
    ids[:, size // 3 :] += 2
    return ids


BOUNDARY = boundary_from_ids(_ids())
IMAGE8 = (np.arange(48 * 48).reshape(48, 48) % 251).astype(np.uint8)


def _pair_folder(root, stems=("a", "b"), label=None, image=None):
    for stem in stems:
        write_png(root / "images" / f"{stem}.png", IMAGE8 if image is None else image)
        write_png(root / "labels" / f"{stem}.png", BOUNDARY.astype(np.uint8) * 255 if label is None else label)
    return root


def test_load_folder_png_pairs(tmp_path):
    pairs = load_pairs(_pair_folder(tmp_path))
    assert [p.name for p in pairs] == ["a", "b"]
    assert isinstance(pairs[0], Pair)
    assert pairs[0].image.dtype == np.float32 and np.allclose(pairs[0].image, IMAGE8 / 255.0)
    assert pairs[0].boundary.dtype == bool and np.array_equal(pairs[0].boundary, BOUNDARY)


def test_mixed_formats_16bit_rgb_and_suffixed_labels(tmp_path):
    image16 = (IMAGE8.astype(np.uint16) * 257)
    (tmp_path / "labels").mkdir()
    write_tiff(tmp_path / "images" / "t16.tif", image16)
    rgb = np.stack([IMAGE8] * 3, -1)
    Image.fromarray(rgb).save(tmp_path / "images" / "rgb.png")
    Image.fromarray(IMAGE8).save(tmp_path / "images" / "jpg.jpg", quality=95)
    tifffile.imwrite(tmp_path / "labels" / "t16_mask.tif", BOUNDARY.astype(np.uint16) * 65535)
    write_png(tmp_path / "labels" / "rgb.png", np.where(BOUNDARY, 0, 255).astype(np.uint8))  # boundary drawn black
    write_png(tmp_path / "labels" / "jpg_label.png", BOUNDARY.astype(np.uint8))  # 0/1 label
    pairs = {p.name: p for p in load_pairs(tmp_path)}
    assert sorted(pairs) == ["jpg", "rgb", "t16"]
    for pair in pairs.values():
        assert np.array_equal(pair.boundary, BOUNDARY)  # auto: the minority value is boundary
        assert np.abs(pair.image - IMAGE8 / 255.0).max() < 0.05


def test_boundary_value_explicit_and_auto():
    white = BOUNDARY.astype(np.uint8) * 255
    assert np.array_equal(label_to_boundary(white, "x", 255), BOUNDARY)
    assert np.array_equal(label_to_boundary(white, "x", "0"), ~BOUNDARY)
    assert np.array_equal(label_to_boundary(255 - white, "x", "auto"), BOUNDARY)
    with pytest.raises(UserError, match="boundary_value 'black'"):
        label_to_boundary(white, "x", "black")


def test_threshold_for_antialiased_labels():
    soft = BOUNDARY.astype(np.float64) * 255
    soft[1:-1, 1:-1] = np.maximum(soft[1:-1, 1:-1], 0.6 * soft[2:, 1:-1])  # a 153-grey fringe
    soft = soft.astype(np.uint8)
    assert np.array_equal(label_to_boundary(soft, "x", 255, threshold=127), soft > 127)
    assert np.array_equal(label_to_boundary(soft, "x", 255, threshold=200), BOUNDARY)
    with pytest.raises(UserError, match=r"x: label is not binary .*pass threshold 127"):
        label_to_boundary(soft, "x", 255, threshold=None)


def test_thin_thick_labels():
    thick = np.zeros((40, 40), dtype=np.uint8)
    thick[:, 18:22] = 255  # a 4-px vertical band
    thick[18:21, :] = 255  # and a 3-px horizontal one
    boundary = label_to_boundary(thick, "x", 255, thin=True)
    assert boundary[:, 5:15].sum(axis=0).max() == 1 and boundary[25:, :].sum(axis=1).max() == 1  # 1 px wide
    assert label_grains(boundary).max() == 4  # still separates the four grains, up to the image edges


def test_hdf5_boundary_label_and_groups(tmp_path):
    ids = np.stack([_ids(), _ids()[::-1]])
    images = np.stack([IMAGE8, IMAGE8[::-1]])
    with h5py.File(tmp_path / "root.h5", "w") as f:
        f["image"] = images
        f["boundary"] = np.stack([boundary_from_ids(i) for i in ids]).astype(np.uint8)
    with h5py.File(tmp_path / "ids.h5", "w") as f:
        f.create_group("real")["image"] = images.astype(np.float32) / 255
        f["real"]["label"] = ids
    root, by_ids = load_pairs(tmp_path / "root.h5"), load_pairs(tmp_path / "ids.h5")
    explicit = load_pairs(f"{tmp_path / 'ids.h5'}:real")
    assert [p.name for p in root] == ["root_0000", "root_0001"]
    for a, b, c, i in zip(root, by_ids, explicit, ids):
        assert np.array_equal(a.boundary, boundary_from_ids(i)) and np.array_equal(b.boundary, a.boundary)
        assert np.array_equal(c.boundary, a.boundary)
        assert np.allclose(a.image, b.image)


def test_load_boundaries_folder(tmp_path):
    write_png(tmp_path / "x.png", BOUNDARY.astype(np.uint8) * 255)
    write_png(tmp_path / "y.png", np.where(BOUNDARY, 0, 255).astype(np.uint8))
    found = load_boundaries(tmp_path)
    assert [name for name, _ in found] == ["x", "y"]
    assert all(np.array_equal(b, BOUNDARY) for _, b in found)
    assert np.array_equal(read_boundary(tmp_path / "y.png", boundary_value=0), BOUNDARY)


# ---- bad input: one-line UserError naming the file ------------------------------------------------


def test_missing_partner(tmp_path):
    _pair_folder(tmp_path)
    (tmp_path / "labels" / "b.png").unlink()
    with pytest.raises(UserError, match=r"images/b.png: no label with the same name"):
        load_pairs(tmp_path)
    (tmp_path / "images" / "b.png").unlink()
    write_png(tmp_path / "labels" / "c.png", BOUNDARY.astype(np.uint8) * 255)
    with pytest.raises(UserError, match=r"labels/c.png: label has no image"):
        load_pairs(tmp_path)


def test_two_labels_for_one_image(tmp_path):
    _pair_folder(tmp_path, stems=("a",))
    write_png(tmp_path / "labels" / "a_mask.png", BOUNDARY.astype(np.uint8) * 255)
    with pytest.raises(UserError, match=r"images/a.png: several labels match"):
        load_pairs(tmp_path)


def test_size_mismatch(tmp_path):
    _pair_folder(tmp_path, stems=("a",), label=BOUNDARY[:40].astype(np.uint8) * 255)
    with pytest.raises(UserError, match=r"labels/a.png: size 48x40 differs from its image a.png \(48x48\)"):
        load_pairs(tmp_path)


def test_unreadable_file(tmp_path):
    _pair_folder(tmp_path, stems=("a",))
    (tmp_path / "images" / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(UserError, match=r"images/a.png: unreadable image"):
        load_pairs(tmp_path)


@pytest.mark.parametrize("label, value, fragment", [
    (np.zeros((48, 48), np.uint8), "auto", "label has no boundary pixels"),
    (np.zeros((48, 48), np.uint8), "255", "label has no boundary pixels"),
    (np.full((48, 48), 255, np.uint8), "255", "label has no grain pixels"),
    (IMAGE8, "auto", "label is not binary"),
])
def test_bad_labels(tmp_path, label, value, fragment):
    _pair_folder(tmp_path, stems=("a",), label=label)
    with pytest.raises(UserError, match=rf"labels/a.png: {fragment}"):
        load_pairs(tmp_path, boundary_value=value)


def test_empty_and_malformed_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(UserError, match=r"images holds no images"):
        load_pairs(tmp_path)
    with pytest.raises(UserError, match=r"expected subfolders images/ and labels/"):
        load_pairs(tmp_path / "images")
    (tmp_path / "demo" / "train" / "images").mkdir(parents=True)
    with pytest.raises(UserError, match=r"it has train/"):
        load_pairs(tmp_path / "demo")
    with pytest.raises(UserError, match=r"nowhere: no such folder"):
        load_pairs(tmp_path / "nowhere")


def test_bad_hdf5(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"junk.h5: unreadable HDF5 file"):
        load_pairs(tmp_path / "junk.h5")
    with pytest.raises(UserError, match=r"missing.h5: no such file"):
        load_pairs(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "noimage.h5", "w") as f:
        f["boundary"] = np.zeros((1, 8, 8), np.uint8)
    with pytest.raises(UserError, match=r"noimage.h5: no 'image' dataset \(found: boundary\)"):
        load_pairs(tmp_path / "noimage.h5")
    with h5py.File(tmp_path / "nolabel.h5", "w") as f:
        f["image"] = np.zeros((1, 8, 8), np.uint8)
    with pytest.raises(UserError, match=r"nolabel.h5: no 'boundary' or 'label' dataset"):
        load_pairs(tmp_path / "nolabel.h5")
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f["image"] = np.zeros((2, 48, 48), np.uint8)
        f["boundary"] = np.zeros((2, 40, 48), np.uint8)
    with pytest.raises(UserError, match=r"shape.h5: 'image' shape \(2, 48, 48\) does not match 'boundary'"):
        load_pairs(tmp_path / "shape.h5")
    with h5py.File(tmp_path / "groups.h5", "w") as f:
        for group in ("real", "simulated"):
            f.create_group(group)["image"] = np.zeros((1, 8, 8), np.uint8)
    with pytest.raises(UserError, match=r"groups.h5: several groups hold an image dataset \(real, simulated\)"):
        load_pairs(tmp_path / "groups.h5")
    with pytest.raises(UserError, match=r"groups.h5: no group 'nope'"):
        load_pairs(f"{tmp_path / 'groups.h5'}:nope")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["image"] = np.zeros((1, 48, 48), np.uint8)
        f["boundary"] = np.zeros((1, 48, 48), np.uint8)
    with pytest.raises(UserError, match=r"flat.h5\[boundary\]\[0\]: label has no boundary pixels"):
        load_pairs(tmp_path / "flat.h5")


# ---- the same errors through the command line (demo-data --from-labels reads label folders) --------


@pytest.mark.parametrize("setup, fragment", [
    (lambda d: d.mkdir(), "holds no images"),
    (lambda d: write_png(d / "a.png", np.zeros((32, 32), np.uint8)), "a.png: label has no boundary pixels"),
    (lambda d: write_png(d / "a.png", IMAGE8), "a.png: label is not binary"),
    (lambda d: (d.mkdir(), (d / "a.png").write_bytes(b"garbage")), "a.png: unreadable image"),
])
def test_cli_label_errors(tmp_path, setup, fragment):
    labels = tmp_path / "labels"
    setup(labels)
    result = run_cli("demo-data", "--from-labels", labels, "--out", tmp_path / "out", "--no-progress")
    assert_user_error(result, fragment)


def test_cli_boundary_value_option(tmp_path):
    write_png(tmp_path / "labels" / "a.png", np.full((32, 32), 255, np.uint8))
    result = run_cli("demo-data", "--from-labels", tmp_path / "labels", "--boundary-value", "255",
                     "--out", tmp_path / "out", "--no-progress")
    assert_user_error(result, "a.png: label has no grain pixels", "check boundary_value (255)")
    result = run_cli("demo-data", "--from-labels", tmp_path / "labels", "--boundary-value", "7",
                     "--out", tmp_path / "out", "--no-progress")
    assert_user_error(result, "boundary_value '7': must be 0, 255 or auto")
