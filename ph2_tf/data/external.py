"""Image and mask pairs for evaluation: PH2 at original size, and folders from other sources.

Other sources follow the ISIC layout of `../shared/external/isic2017-dev`: `images/<id>.jpg` and
`masks/<id>_segmentation.png` (lesion where non-zero). Most such sets are for evaluation or
selection only. A model that says so in its name may train on one (ISIC-select), in folds
(`split_folds`) so that each fold is scored by a model that did not see it.
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


def split_folds(cases, folds, held_out_fold):
    """Splits cases into k folds by position: case `i` is in fold `i % folds`.

    By position in the sorted order, so that the folds are fixed by the folder alone and
    interleave ISIC's ids, which come roughly in order of the clinic that contributed them.

    Args:
        cases: a list, e.g. `folder_cases(...)` (sorted by image name).
        folds: the number of folds, at least 2.
        held_out_fold: the fold to hold out, in `[0, folds)`.

    Returns:
        `(kept, held_out)`: the cases of the other folds, and those of `held_out_fold`.

    Raises:
        ValueError: `folds` or `held_out_fold` out of range.
    """
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, received {folds!r}")
    if held_out_fold not in range(folds):
        raise ValueError(f"held_out_fold must be in [0, {folds}), received {held_out_fold!r}")
    kept = [case for position, case in enumerate(cases) if position % folds != held_out_fold]
    held_out = [case for position, case in enumerate(cases) if position % folds == held_out_fold]
    return kept, held_out


def training_arrays(directory, image_size, *, folds=None, held_out_fold=None):
    """The pairs of an ISIC-layout folder as training arrays, with one fold left out.

    Args:
        directory: an ISIC-layout folder (`folder_cases`).
        image_size: side of the square model input.
        folds: split the pairs into this many folds (`split_folds`); None: train on all.
        held_out_fold: with `folds`, the fold left out.

    Returns:
        `(images, masks)`: float32 `(N, S, S, 3)` in [0, 1] and `(N, S, S, 1)` in {0, 1},
        preprocessed as PH2's (`ph2_tf.data.preprocessing.preprocess`).

    Raises:
        FileNotFoundError: `directory` holds no pairs; the message names it.
    """
    from ph2_tf.data import preprocessing

    cases = folder_cases(directory)
    if not cases:
        raise FileNotFoundError(f"{directory}: no image and mask pairs (images/, masks/) there")
    if folds is not None:
        cases, _ = split_folds(cases, folds, held_out_fold)
    pairs = [
        preprocessing.preprocess(case.image, case.mask[..., None], image_size) for case in cases
    ]
    images = np.stack([np.asarray(image) for image, _ in pairs]).astype(np.float32)
    masks = np.stack([np.asarray(mask) for _, mask in pairs]).astype(np.float32)
    return images, masks


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
