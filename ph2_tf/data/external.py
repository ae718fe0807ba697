"""Image and mask pairs for evaluation: PH2 at original size, and folders from other sources.

Other sources follow the ISIC layout of `../shared/external/isic2017-dev`: `images/<id>.jpg` and
`masks/<id>_segmentation.png` (lesion where non-zero). Such sets are for evaluation only: they
are never trained on or used to choose anything.
"""

import pathlib
from typing import NamedTuple

import numpy as np

from ph2_tf.data import arrays
from tfds_ph2.ph2.image_reading import read_image

# The 38 ISIC-2017 images every experiment reports on, beside the repository when present.
ISIC2017_DEV_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared/external/isic2017-dev"


class Case(NamedTuple):
    """One evaluation image at its original size, with its ground truth."""

    image_id: str
    image: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # bool (H, W), lesion where True


def ph2_cases(split, *, data_dir=None, manual_dir=None):
    """The cases of a PH2 split at original size, in the dataset's stored order.

    Args:
        split: TFDS split string.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory (see `ph2_tf.data.arrays.examples`).

    Returns:
        A list of `Case`s, identified by PH2 image id (`IMD002`).
    """
    return [
        Case(example["image_id"], example["image"], example["segmentation_mask"][..., 0] > 0)
        for example in arrays.examples(split, "original", data_dir=data_dir, manual_dir=manual_dir)
    ]


def folder_cases(directory):
    """The cases of an ISIC-layout folder, sorted by image name.

    Args:
        directory: folder holding `images/*.jpg` (ISIC's) or `images/*.png` (lossless, as
            `ph2_tf.experiments.stress_sets` writes them) and `masks/<stem>_segmentation.png`.

    Returns:
        A list of `Case`s identified by file stem (`ISIC_0000000`); empty if `directory` does
        not exist (such sets are optional, e.g. absent from a user's clone).

    Raises:
        FileNotFoundError: an image has no mask; the message names the missing file.
        ValueError: a mask's size differs from its image's; the message names both files.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    cases = []
    image_paths = [*(directory / "images").glob("*.jpg"), *(directory / "images").glob("*.png")]
    for image_path in sorted(image_paths, key=lambda path: path.name):
        mask_path = directory / "masks" / f"{image_path.stem}_segmentation.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"{image_path}: its mask {mask_path} does not exist")
        image, mask = read_image(image_path), read_image(mask_path)[..., 0] > 0
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} pixels but {image_path} is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        cases.append(Case(image_path.stem, image, mask))
    return cases


def evaluation_sets(*, data_dir=None, manual_dir=None, isic_dir=ISIC2017_DEV_DIR):
    """The image sets the experiments report: the split to choose on, then evaluation only.

    Args:
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.
        isic_dir: ISIC-layout folder of the third set.

    Returns:
        `{"ph2_validation": cases, "ph2_test": cases, "isic2017_dev": cases}`, the last empty
        when `isic_dir` does not exist.
    """
    common = dict(data_dir=data_dir, manual_dir=manual_dir)
    return {
        "ph2_validation": ph2_cases("validation", **common),
        "ph2_test": ph2_cases("test", **common),
        "isic2017_dev": folder_cases(isic_dir),
    }
