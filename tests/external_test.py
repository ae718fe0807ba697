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
