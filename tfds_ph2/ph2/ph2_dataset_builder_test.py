"""TFDS builder test of `ph2` on the fake database in `dummy_data/`, for every config."""

import numpy as np
import tensorflow_datasets as tfds

from tfds_ph2.ph2 import ph2_dataset_builder
from tfds_ph2.ph2.make_dummy_data import CASES


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
