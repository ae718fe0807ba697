"""The `ph2` builder on the real PH2 data; skipped unless PH2_MANUAL_DIR names it.

CI sets PH2_MANUAL_DIR=../shared/ph2. The `original` config is prepared once per session into a
temporary data dir (conftest's `ph2_real`); the resized configs are covered by the builder test on
the fake data, by `resize_pair` below and by `preprocessing_test.py`.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import tfds_ph2  # noqa: F401  (registers `ph2`)
from tfds_ph2.ph2.make_splits import SPLITS_JSON
from tfds_ph2.ph2.ph2_dataset_builder import (
    CLASS_NAMES,
    IMAGES_DIR,
    collect_cases,
    find_data_root,
    load_image,
    load_mask,
    resize_pair,
)

MANUAL_DIR = os.environ.get("PH2_MANUAL_DIR")
pytestmark = pytest.mark.skipif(not MANUAL_DIR, reason="PH2_MANUAL_DIR is not set")


@pytest.fixture(scope="session")
def manual_dir():
    return Path(MANUAL_DIR).expanduser().resolve()


@pytest.fixture(scope="session")
def builder(ph2_real):
    return ph2_real.builder


@pytest.fixture(scope="session")
def examples(builder):
    """{split: {case id: example}} for all 200 examples."""
    return {
        split: {ex["image_id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split))}
        for split in ("train", "validation", "test")
    }


def _source(manual_dir, case_id, folder, stem):
    """The source file of a case, as a Pillow image (PNG or BMP dermoscopic image)."""
    directory = find_data_root(manual_dir) / IMAGES_DIR / case_id / f"{case_id}_{folder}"
    return Image.open(next(directory.glob(f"{stem}.*")))


def test_split_sizes(builder):
    splits = builder.info.splits
    assert splits.total_num_examples == 200
    assert [splits[s].num_examples for s in ("train", "validation", "test")] == [100, 50, 50]


def test_labels_are_stratified(examples):
    def counts(split_examples):
        labels = [ex["label"] for ex in split_examples]
        return np.bincount(labels, minlength=len(CLASS_NAMES)).tolist()

    everything = [ex for split in examples.values() for ex in split.values()]
    assert counts(everything) == [80, 80, 40]
    assert counts(examples["train"].values()) == [40, 40, 20]
    assert counts(examples["validation"].values()) == [20, 20, 10]
    assert counts(examples["test"].values()) == [20, 20, 10]


def test_splits_are_disjoint_and_documented(examples):
    documented = json.loads(SPLITS_JSON.read_text())
    assert {split: sorted(exs) for split, exs in examples.items()} == documented
    ids = [i for exs in examples.values() for i in exs]
    assert len(set(ids)) == len(ids) == 200


def test_masks_are_binary_and_image_sized(examples):
    for split in examples.values():
        for case_id, ex in split.items():
            assert ex["image"].shape[2] == 3 and ex["image"].dtype == np.uint8, case_id
            assert ex["segmentation_mask"].shape == ex["image"].shape[:2] + (1,), case_id
            assert set(np.unique(ex["segmentation_mask"])) <= {0, 1}, case_id
            assert ex["segmentation_mask"].any(), case_id


@pytest.mark.parametrize("case_id", ["IMD002", "IMD003", "IMD435"])
def test_pixels_equal_source_files(manual_dir, examples, case_id):
    # IMD002's mask is a top-down 24-bit BMP, the other two 1-bit BMPs.
    ex = next(split[case_id] for split in examples.values() if case_id in split)
    image = np.asarray(_source(manual_dir, case_id, "Dermoscopic_Image", case_id).convert("RGB"))
    np.testing.assert_array_equal(ex["image"], image)
    mask = np.asarray(_source(manual_dir, case_id, "lesion", f"{case_id}_lesion"))
    mask = mask.max(axis=-1) if mask.ndim == 3 else mask
    np.testing.assert_array_equal(ex["segmentation_mask"][..., 0], (mask > 0).astype(np.uint8))


def test_metadata_of_a_melanoma(examples):
    ex = next(split["IMD348"] for split in examples.values() if "IMD348" in split)
    assert CLASS_NAMES[ex["label"]] == "melanoma"
    assert ex["histological_diagnosis"] == b"Melanoma"
    assert ex["asymmetry"] == 2
    assert ex["colors"].tolist() == [True, False, False, True, True, True]  # 1 4 5 6


def test_resized_pair_is_square_and_binary(manual_dir):
    case = collect_cases(find_data_root(manual_dir))[0]
    image, mask = load_image(case.image_path, case.case_id), load_mask(case.mask_path, case.case_id)
    small_image, small_mask = resize_pair(image, mask, 128)
    assert small_image.shape == (128, 128, 3) and small_image.dtype == np.uint8
    assert small_mask.shape == (128, 128, 1) and set(np.unique(small_mask)) == {0, 1}
    # Anti-aliased downsampling keeps the mean colour and roughly the lesion's share of pixels.
    assert abs(small_image.mean() - image.mean()) < 1.0
    assert abs(small_mask.mean() - mask.mean()) < 0.01
