"""Tests of ph2_tf.data.external: evaluation pairs from PH2 and from ISIC-layout folders."""

import numpy as np
import pytest
from PIL import Image

from ph2_tf.data import external


def _write_case(directory, stem, size=(8, 6), mask_size=None):
    (directory / "images").mkdir(parents=True, exist_ok=True)
    (directory / "masks").mkdir(exist_ok=True)
    width, height = size
    Image.new("RGB", size, (200, 10, 10)).save(directory / "images" / f"{stem}.jpg")
    mask = np.zeros((height, width), np.uint8)
    mask[1:3, 2:5] = 255
    mask_image = Image.fromarray(mask)
    if mask_size:
        mask_image = mask_image.resize(mask_size)
    mask_image.save(directory / "masks" / f"{stem}_segmentation.png")


def test_folder_cases_pairs_images_and_masks(tmp_path):
    _write_case(tmp_path, "ISIC_2")
    _write_case(tmp_path, "ISIC_1")
    cases = external.folder_cases(tmp_path)
    assert [case.image_id for case in cases] == ["ISIC_1", "ISIC_2"]
    image_id, image, mask = cases[0]
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8
    assert mask.dtype == bool and mask.sum() == 6 and mask[1:3, 2:5].all()


def test_folder_cases_of_an_absent_folder_is_empty(tmp_path):
    assert external.folder_cases(tmp_path / "not_here") == []


def test_folder_cases_names_a_missing_or_mis_sized_mask(tmp_path):
    _write_case(tmp_path, "ISIC_1", mask_size=(4, 3))
    with pytest.raises(ValueError, match="ISIC_1_segmentation.png is 4x3 pixels but .*ISIC_1.jpg"):
        external.folder_cases(tmp_path)
    (tmp_path / "masks" / "ISIC_1_segmentation.png").unlink()
    with pytest.raises(FileNotFoundError, match="ISIC_1_segmentation.png does not exist"):
        external.folder_cases(tmp_path)


def test_ph2_cases_are_original_size_pairs_with_ids(ph2_dummy):
    cases = external.ph2_cases("test", data_dir=ph2_dummy.data_dir, manual_dir=ph2_dummy.manual_dir)
    assert cases
    assert len({case.image_id for case in cases}) == len(cases)
    for image_id, image, mask in cases:
        assert image_id.startswith("IMD")
        assert image.dtype == np.uint8 and image.shape[:2] == mask.shape and mask.dtype == bool


def test_split_folds_partitions_by_position():
    cases = list(range(10))
    kept, held_out = external.split_folds(cases, 3, 1)
    assert held_out == [1, 4, 7]
    assert kept == [0, 2, 3, 5, 6, 8, 9]
    all_held_out = [external.split_folds(cases, 3, fold)[1] for fold in range(3)]
    assert sorted(sum(all_held_out, [])) == cases  # each case held out exactly once


@pytest.mark.parametrize(
    ("folds", "held_out_fold", "message"),
    [(1, 0, "folds must be an integer >= 2"), (3, 3, r"held_out_fold must be in \[0, 3\)")],
)
def test_split_folds_refuses_bad_folds(folds, held_out_fold, message):
    with pytest.raises(ValueError, match=message):
        external.split_folds([1, 2, 3], folds, held_out_fold)


def test_training_arrays_are_preprocessed_pairs_without_the_held_out_fold(tmp_path):
    for index in range(4):
        _write_case(tmp_path, f"ISIC_{index}", size=(20, 12))

    images, masks = external.training_arrays(tmp_path, 32)
    kept_images, _ = external.training_arrays(tmp_path, 32, folds=2, held_out_fold=0)

    assert images.shape == (4, 32, 32, 3) and images.dtype == np.float32
    assert masks.shape == (4, 32, 32, 1) and set(np.unique(masks)) == {0.0, 1.0}
    # The image is one colour: (200, 10, 10) scaled to [0, 1], up to JPEG's rounding.
    np.testing.assert_allclose(images[0, 16, 16], np.array([200, 10, 10]) / 255, atol=0.05)
    np.testing.assert_array_equal(kept_images, images[[1, 3]])


def test_training_arrays_of_an_empty_folder_name_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no image and mask pairs"):
        external.training_arrays(tmp_path, 32)
