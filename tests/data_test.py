"""Tests of ph2_tf.data.pipeline: TFDS config choice, pipeline shapes and values, shuffling,
augmentation.
"""

import numpy as np
import pytest
import tensorflow as tf

from ph2_tf.data import pipeline
from ph2_tf.data.augmentation import AUGMENTATIONS

SIZE = 32


def split_arrays(ph2_dummy, split, **kwargs):
    """All `(images, masks)` of one pass over `load_split`, as concatenated NumPy arrays."""
    ds = pipeline.load_split(
        split,
        image_size=SIZE,
        batch_size=4,
        data_dir=ph2_dummy.data_dir,
        manual_dir=ph2_dummy.manual_dir,
        **kwargs,
    )
    batches = list(ds.as_numpy_iterator())
    return tuple(np.concatenate(parts) for parts in zip(*batches, strict=True))


@pytest.mark.parametrize(
    ("image_size", "config"), [(128, "resized_128"), (256, "resized_256"), (64, "original")]
)
def test_tfds_config_for(image_size, config):
    assert pipeline.tfds_config_for(image_size) == config


@pytest.mark.parametrize(("name", "value"), [("image_size", 0), ("batch_size", 2.5)])
def test_load_split_rejects_bad_sizes(name, value):
    kwargs = {"image_size": SIZE, "batch_size": 4, name: value}
    with pytest.raises(ValueError, match=f"{name} must be a positive int, got {value}"):
        pipeline.load_split("train", **kwargs)


def test_eval_pipeline_shapes_values_and_order(ph2_dummy):
    images, masks = split_arrays(ph2_dummy, "validation")
    examples = pipeline.load_examples("validation", data_dir=ph2_dummy.data_dir)
    assert len(images) == len(masks) == int(examples.cardinality())
    assert images.shape[1:] == (SIZE, SIZE, 3) and images.dtype == np.float32
    assert masks.shape[1:] == (SIZE, SIZE, 1) and masks.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(np.unique(masks)) <= {0.0, 1.0}
    again, _ = split_arrays(ph2_dummy, "validation")
    np.testing.assert_array_equal(images, again)  # evaluation order is fixed


def test_training_shuffle_is_seeded_and_changes_each_epoch(ph2_dummy):
    reference, _ = split_arrays(ph2_dummy, "train")
    first, _ = split_arrays(ph2_dummy, "train", training=True, seed=3)
    same, _ = split_arrays(ph2_dummy, "train", training=True, seed=3)
    np.testing.assert_array_equal(first, same)

    def order(images):
        return [int(np.argmin(np.abs(reference - image).sum(axis=(1, 2, 3)))) for image in images]

    assert sorted(order(first)) == list(range(len(reference)))  # a permutation of the split
    ds = pipeline.load_split(
        "train",
        image_size=SIZE,
        batch_size=64,
        training=True,
        seed=3,
        data_dir=ph2_dummy.data_dir,
    )
    epochs = [order(next(iter(ds))[0].numpy()) for _ in range(3)]
    assert epochs[0] == order(first)
    assert epochs[1] != epochs[0] or epochs[2] != epochs[0]


def test_augmented_training_batches_keep_ranges(ph2_dummy):
    images, masks = split_arrays(
        ph2_dummy, "train", training=True, augmentation=AUGMENTATIONS["all"], seed=1
    )
    assert images.shape[1:] == (SIZE, SIZE, 3) and 0.0 <= images.min() and images.max() <= 1.0
    assert set(np.unique(masks)) <= {0.0, 1.0}


def test_tf_data_augments_with_the_numpy_definition():
    yy, xx = np.mgrid[:SIZE, :SIZE]
    lesion = ((yy - 10) ** 2 + (xx - 20) ** 2 < 60) | ((yy > 24) & (xx < 8))
    image = np.where(lesion[..., None], 0.85, 0.15).astype(np.float32) * np.ones(3, np.float32)
    mask = lesion[..., None].astype(np.float32)
    augmentation = AUGMENTATIONS["all"]
    for seed in ([0, 7], [-3, 2**40]):
        outputs = pipeline.augment_example(
            augmentation, tf.constant(image), tf.constant(mask), tf.constant(seed, tf.int64)
        )
        expected = augmentation(
            image, mask, np.random.default_rng(np.array(seed, np.int64).astype(np.uint64))
        )
        assert outputs[0].shape == image.shape and outputs[1].shape == mask.shape
        np.testing.assert_array_equal(outputs[0], expected[0])
        np.testing.assert_array_equal(outputs[1], expected[1])


def test_distributed_dataset_through_a_strategy(ph2_dummy):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    ds = pipeline.load_split(
        "test", image_size=SIZE, batch_size=2, data_dir=ph2_dummy.data_dir, strategy=strategy
    )
    assert isinstance(ds, tf.distribute.DistributedDataset)
    images, masks = next(iter(ds))
    assert images.shape == (2, SIZE, SIZE, 3) and masks.shape == (2, SIZE, SIZE, 1)


def test_extra_examples_join_the_training_split(ph2_dummy):
    own, own_masks = split_arrays(ph2_dummy, "train")
    extra = np.full((3, SIZE, SIZE, 3), 0.25, np.float32), np.ones((3, SIZE, SIZE, 1), np.float32)

    images, masks = split_arrays(ph2_dummy, "train", training=True, seed=1, extra_examples=extra)

    assert len(images) == len(own) + 3

    # The same examples, shuffled together: compare them as sorted rows.
    def rows(*arrays):
        return sorted(np.concatenate([a.reshape(len(a), -1) for a in arrays], axis=1).tolist())

    assert rows(images, masks) == rows(
        np.concatenate([own, extra[0]]), np.concatenate([own_masks, extra[1]])
    )
