"""Bad input to the `ph2` builder: each problem gives one error naming the case and the file.

Every test copies a few cases of the fake database to a temporary manual dir, corrupts the copy
and prepares it; a failed preparation must leave no `ph2/<config>/<version>` directory behind.
"""

import re
import shutil

import pytest
import tensorflow_datasets as tfds
from PIL import Image

import tfds_ph2  # registers `ph2`
from tfds_ph2.ph2 import Ph2DataError, Ph2FileNotFoundError
from tfds_ph2.ph2.image_reading import ImageReadError
from tfds_ph2.ph2.make_dummy_data import copy_cases
from tfds_ph2.ph2.ph2_dataset_builder import load_image

CASE_IDS = ["IMD002", "IMD048", "IMD049", "IMD057"]  # One class, so each split gets a case.
IMAGES = "PH2 Dataset images"


@pytest.fixture(autouse=True)
def _no_fallback_dir(monkeypatch):
    # CI sets PH2_MANUAL_DIR to the real data, which the builder would fall back to.
    monkeypatch.delenv("PH2_MANUAL_DIR", raising=False)


@pytest.fixture
def root(tmp_path):
    """A manual dir holding a copy of a few fake cases in `PH2Dataset/`."""
    return copy_cases(CASE_IDS, tmp_path / "manual")


def _prepare(manual_dir, data_dir, config="original"):
    builder = tfds.builder(f"ph2/{config}", data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return builder


def _assert_fails(root, error, *patterns):
    """Preparing `root`'s manual dir raises `error` matching all patterns and writes nothing."""
    data_dir = root.parent.parent / "data"
    with pytest.raises(error) as info:
        _prepare(root.parent, data_dir)
    for pattern in patterns:
        assert re.search(pattern, str(info.value)), (pattern, str(info.value))
    # Neither the version dir nor TFDS's temporary `incomplete.*` dir may remain.
    config_dir = data_dir / "ph2" / "original"
    assert not (config_dir.exists() and list(config_dir.iterdir())), list(config_dir.iterdir())
    return info.value


def test_copy_prepares(root, tmp_path):
    builder = _prepare(root.parent, tmp_path / "data")
    assert builder.info.splits.total_num_examples == len(CASE_IDS)


def test_missing_manual_dir(tmp_path):
    with pytest.raises(Ph2FileNotFoundError, match="PH2 data not found.*does not exist"):
        _prepare(tmp_path / "nowhere", tmp_path / "data")
    assert not (tmp_path / "data" / "ph2" / "original" / str(tfds_ph2.ph2.Builder.VERSION)).exists()


def test_manual_dir_without_data(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "notes.txt").write_text("no PH2 here")
    with pytest.raises(Ph2FileNotFoundError, match=r"holds no PH2 data.*PH2_MANUAL_DIR is not set"):
        _prepare(tmp_path / "manual", tmp_path / "data")


def test_lone_rar_explains_how_to_extract(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "PH2Dataset.rar").write_bytes(b"Rar!\x1a\x07\x00")
    with pytest.raises(Ph2FileNotFoundError, match=r"PH2Dataset\.rar.*unrar x PH2Dataset\.rar"):
        _prepare(tmp_path / "manual", tmp_path / "data")


def test_case_without_image(root):
    (root / IMAGES / "IMD049" / "IMD049_Dermoscopic_Image" / "IMD049.bmp").unlink()
    error = _assert_fails(root, Ph2FileNotFoundError, "IMD049", "dermoscopic image", r"IMD049\.bmp")
    assert error.case_id == "IMD049"


def test_case_without_mask(root):
    (root / IMAGES / "IMD048" / "IMD048_lesion" / "IMD048_lesion.bmp").unlink()
    _assert_fails(root, Ph2FileNotFoundError, "case IMD048", r"IMD048_lesion\.bmp")


def test_unreadable_image(root):
    (root / IMAGES / "IMD057" / "IMD057_Dermoscopic_Image" / "IMD057.bmp").write_text("not a BMP")
    _assert_fails(root, Ph2DataError, "case IMD057", "cannot read", r"IMD057\.bmp")


def test_truncated_image(root):
    # The header is intact, so the up-front check passes and decoding fails while writing.
    path = root / IMAGES / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.bmp"
    path.write_bytes(path.read_bytes()[:1000])
    error = _assert_fails(root, Ph2DataError, "case IMD002", "cannot decode", r"IMD002\.bmp")
    assert error.path.name == "IMD002.bmp"


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "the file is empty"), (b"BM not a bitmap", "not a readable image")],
    ids=["empty", "garbage"],
)
def test_load_image_names_the_case_of_an_unreadable_image(tmp_path, content, reason):
    path = tmp_path / "IMD057.bmp"
    path.write_bytes(content)
    with pytest.raises(Ph2DataError) as info:
        load_image(path, "IMD057")
    assert str(info.value).startswith(f"PH2 case IMD057: cannot decode {path}: {reason}")
    assert info.value.case_id == "IMD057" and info.value.path == path
    assert isinstance(info.value.__cause__, ImageReadError)


def test_truncated_mask(root):
    path = root / IMAGES / "IMD049" / "IMD049_lesion" / "IMD049_lesion.bmp"
    path.write_bytes(path.read_bytes()[:-100])
    _assert_fails(root, Ph2DataError, "case IMD049", r"IMD049_lesion\.bmp")


def test_mask_size_differs_from_image(root):
    path = root / IMAGES / "IMD048" / "IMD048_lesion" / "IMD048_lesion.bmp"
    Image.new("1", (12, 10)).save(path)
    _assert_fails(root, Ph2DataError, "case IMD048", r"IMD048_lesion\.bmp is 12x10", "44x33")


def test_case_missing_from_table(root):
    table = root / "PH2_dataset.txt"
    table.write_bytes(
        b"\r\n".join(row for row in table.read_bytes().split(b"\r\n") if b"IMD057" not in row)
    )
    _assert_fails(root, Ph2DataError, "case IMD057", "no row in", "PH2_dataset.txt")


def test_table_row_without_case(root):
    shutil.rmtree(root / IMAGES / "IMD048")
    _assert_fails(root, Ph2FileNotFoundError, "case IMD048 is listed in", "PH2_dataset.txt")


def test_malformed_table_row(root):
    table = root / "PH2_dataset.txt"
    table.write_bytes(table.read_bytes().replace(b"|  AT |  AT |", b"|  AT |   Q |", 1))
    _assert_fails(root, Ph2DataError, "case IMD048", "dots_globules code 'Q'", "line 3")


def test_too_few_cases_for_every_split(tmp_path):
    root = copy_cases(["IMD002", "IMD003"], tmp_path / "manual")
    _assert_fails(root, Ph2DataError, "Only 2 PH2 cases", "'validation' split would be empty")
