"""Image and mask pairs for evaluation: PH2 at original size, and folders from other sources.

Other sources follow the ISIC layout of `../shared/external/isic2017-dev`: `images/<id>.jpg` and
`masks/<id>_segmentation.png` (lesion where non-zero). Such sets are for evaluation only: they
are never trained on or used to choose anything.
"""

import pathlib

from ph2_tf.data import arrays
from tfds_ph2.ph2.image_reading import read_image


def ph2_cases(split, *, data_dir=None, manual_dir=None):
    """The `(uint8 image, bool mask)` pairs of a PH2 split at original size.

    Args:
        split: TFDS split string.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory (see `ph2_tf.data.arrays.examples`).

    Returns:
        A list of `(image (H, W, 3) uint8, mask (H, W) bool)`.
    """
    return [
        (example["image"], example["segmentation_mask"][..., 0] > 0)
        for example in arrays.examples(split, "original", data_dir=data_dir, manual_dir=manual_dir)
    ]


def folder_cases(directory):
    """The `(uint8 image, bool mask)` pairs of an ISIC-layout folder, sorted by image name.

    Args:
        directory: folder holding `images/*.jpg` and `masks/<stem>_segmentation.png`.

    Returns:
        A list of `(image (H, W, 3) uint8, mask (H, W) bool)`; empty if `directory` does not exist
        (such sets are optional, e.g. absent from a user's clone).

    Raises:
        FileNotFoundError: an image has no mask; the message names the missing file.
        ValueError: a mask's size differs from its image's; the message names both files.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    cases = []
    for image_path in sorted((directory / "images").glob("*.jpg")):
        mask_path = directory / "masks" / f"{image_path.stem}_segmentation.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"{image_path}: its mask {mask_path} does not exist")
        image, mask = read_image(image_path), read_image(mask_path)[..., 0] > 0
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} pixels but {image_path} is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        cases.append((image, mask))
    return cases
