"""The PH2 dermoscopy database as a TFDS dataset (`ph2`)."""

from tfds_ph2.ph2.ph2_dataset_builder import (
    DUMMY_DATA_DIR,
    Builder,
    Ph2Config,
    Ph2DataError,
    Ph2FileNotFoundError,
)

__all__ = ["DUMMY_DATA_DIR", "Builder", "Ph2Config", "Ph2DataError", "Ph2FileNotFoundError"]
