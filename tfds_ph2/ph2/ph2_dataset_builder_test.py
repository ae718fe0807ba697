"""TFDS builder test of `ph2` on the fake database in `dummy_data/`, for every config."""

import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfds_ph2.ph2 import ph2_dataset_builder
from tfds_ph2.ph2.make_dummy_data import CASES, copy_cases, fake_lesion


class Ph2Test(tfds.testing.DatasetBuilderTestCase):
    """Prepares each config from `dummy_data/` (the test case passes it as the manual dir)."""

    DATASET_CLASS = ph2_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["original", "resized_256", "resized_128"]
    # 12 fake cases, 4 per class: 2 train, 1 validation and 1 test case per class.
    SPLITS = {"train": 6, "validation": 3, "test": 3}
    SKIP_CHECKSUMS = True  # Nothing is downloaded.


def test_split_rule_is_stratified_and_deterministic():
    # PH2's class sizes: 80 common nevi, 80 atypical nevi, 40 melanomas.
    labels = {f"IMD{i:03d}": 0 if i < 80 else 1 if i < 160 else 2 for i in range(200)}
    splits = ph2_dataset_builder.split_case_ids(labels)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [100, 50, 50]
    assert splits == ph2_dataset_builder.split_case_ids(dict(reversed(labels.items())))
    assert sorted(sum(splits.values(), [])) == sorted(labels)
    for split in splits.values():  # Each class contributes in proportion to every split.
        counts = np.bincount([labels[i] for i in split], minlength=3)
        assert counts.tolist() == [len(split) * 2 // 5, len(split) * 2 // 5, len(split) // 5]


def test_dummy_metadata_parses_like_the_generator_wrote_it():
    root = ph2_dataset_builder.DUMMY_DATA_DIR / "PH2Dataset"
    rows = ph2_dataset_builder.parse_metadata(root / "PH2_dataset.txt")
    assert sorted(rows) == sorted(case[0] for case in CASES)
    assert rows["IMD058"]["histological_diagnosis"] == "Melanoma"
    assert rows["IMD058"]["colors"] == (1, 3, 4, 5, 6)
    assert rows["IMD049"]["criteria"]["dots_globules"] == "typical"
    assert rows["IMD049"]["criteria"]["streaks"] == "present"


@pytest.fixture(scope="module")
def dummy_data_dir(tmp_path_factory):
    """A data dir with the `original` config prepared from `dummy_data/`."""
    data_dir = tmp_path_factory.mktemp("data")
    _prepare(ph2_dataset_builder.DUMMY_DATA_DIR, data_dir)
    return data_dir


def _prepare(manual_dir, data_dir, config="original"):
    builder = tfds.builder(f"ph2/{config}", data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return builder


def _examples(builder, split="train+validation+test"):
    return {ex["image_id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}


def test_examples_equal_source_files(dummy_data_dir):
    examples = _examples(tfds.builder("ph2", data_dir=dummy_data_dir))
    images = ph2_dataset_builder.DUMMY_DATA_DIR / "PH2Dataset" / "PH2 Dataset images"
    for index, (case_id, width, height, *_) in enumerate(CASES):
        example = examples[case_id]
        source = np.asarray(
            Image.open(images / case_id / f"{case_id}_Dermoscopic_Image" / f"{case_id}.bmp")
        )
        np.testing.assert_array_equal(example["image"], source)
        # IMD002's mask is a top-down 24-bit BMP, the others 1-bit BMPs: all must come out upright.
        _, mask = fake_lesion(width, height, index)
        np.testing.assert_array_equal(example["segmentation_mask"][..., 0], mask)
    assert examples["IMD058"]["colors"].tolist() == [True, False, True, True, True, True]
    assert examples["IMD058"]["histological_diagnosis"] == b"Melanoma"


def test_split_slicing(dummy_data_dir):
    def load(split):
        return len(tfds.load("ph2", split=split, data_dir=dummy_data_dir, download=False))

    assert load("train+validation") == 9
    assert load("train[:50%]") == 3
    assert load("train[:50%]+test") == 6


def test_zip_in_manual_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("PH2_MANUAL_DIR", raising=False)
    root = copy_cases(["IMD002", "IMD048", "IMD049", "IMD057"], tmp_path / "src")
    shutil.make_archive(str(tmp_path / "manual" / "PH2Dataset"), "zip", root.parent, root.name)
    builder = _prepare(tmp_path / "manual", tmp_path / "data")
    assert builder.info.splits.total_num_examples == 4


def test_png_images_and_contents_directly_in_manual_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("PH2_MANUAL_DIR", raising=False)
    root = copy_cases(["IMD002", "IMD048", "IMD049", "IMD057"], tmp_path / "manual")
    for bmp in root.glob("*/*/*_Dermoscopic_Image/*.bmp"):
        Image.open(bmp).save(bmp.with_suffix(".png"))
        bmp.unlink()
    for path in root.iterdir():  # The archive's contents, without the PH2Dataset/ folder.
        path.rename(tmp_path / "manual" / path.name)
    builder = _prepare(tmp_path / "manual", tmp_path / "data")
    assert builder.info.splits.total_num_examples == 4


def test_env_var_is_the_fallback_manual_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PH2_MANUAL_DIR", str(ph2_dataset_builder.DUMMY_DATA_DIR))
    builder = _prepare(tmp_path / "empty_manual_dir", tmp_path / "data")
    assert builder.info.splits.total_num_examples == len(CASES)


def test_load_image_scales_16_bit_grey(tmp_path):
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "IMD999.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(path)  # 16-bit: 0..65535.
    image = ph2_dataset_builder.load_image(path, "IMD999")
    np.testing.assert_array_equal(image, np.repeat(grey[..., None], 3, axis=-1))


def test_16_bit_grey_png_images_are_scaled_not_clipped(tmp_path, monkeypatch):
    monkeypatch.delenv("PH2_MANUAL_DIR", raising=False)
    root = copy_cases(["IMD002", "IMD048", "IMD049", "IMD057"], tmp_path / "manual")
    expected = {}
    for bmp in root.glob("*/*/*_Dermoscopic_Image/*.bmp"):
        grey = np.asarray(Image.open(bmp).convert("L"))
        Image.fromarray(grey.astype(np.uint16) * 257).save(bmp.with_suffix(".png"))
        bmp.unlink()
        expected[bmp.stem] = np.repeat(grey[..., None], 3, axis=-1)
    examples = _examples(_prepare(root.parent, tmp_path / "data"))
    assert sorted(examples) == sorted(expected)
    for case_id, image in expected.items():
        np.testing.assert_array_equal(examples[case_id]["image"], image)
