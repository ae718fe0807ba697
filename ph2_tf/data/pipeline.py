"""PH2 input pipelines: TFDS examples to batched, optionally distributed `tf.data` datasets.

The pipeline for one split is: read the TFDS `ph2` config that matches the training size (so that
full-size images are not decoded when a pre-resized config exists), preprocess with
`ph2_tf.data.preprocessing.preprocess` (the definition every backend and the serving signature use:
image scaled to [0, 1] and resized bilinearly with anti-aliasing, mask nearest), cache, and for
training shuffle with a seed and optionally augment; then batch by the global batch size, prefetch
and, given a `tf.distribute` strategy, distribute (each replica gets `batch_size / replicas`).
"""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import tfds_ph2  # noqa: F401  (registers the 'ph2' builder)
from ph2_tf.data import preprocessing
from ph2_tf.data.preprocessing import tfds_config_for


def load_examples(split, config="original", *, data_dir=None, manual_dir=None):
    """Loads one split of a TFDS `ph2` config, preparing it first if needed.

    Args:
        split: TFDS split string, e.g. `'train'`, `'validation'`, `'test'` or `'train[:4]'`.
        config: `ph2` builder config: `'original'`, `'resized_128'` or `'resized_256'`.
        data_dir: TFDS data directory (TFDS's default when None).
        manual_dir: directory holding the PH2 archive's contents, used if the dataset has not
            been prepared yet (TFDS's default manual dir when None).

    Returns:
        A `tf.data.Dataset` of feature dicts (`image`, `segmentation_mask`, `image_id`, ...), in
        the dataset's stored order.
    """
    download_config = tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else str(manual_dir)
    )
    return tfds.load(
        f"ph2/{config}",
        split=split,
        data_dir=None if data_dir is None else str(data_dir),
        shuffle_files=False,
        download_and_prepare_kwargs={"download_config": download_config},
    )


def preprocess(example, image_size):
    """Turns one TFDS example into training tensors (`preprocessing.preprocess` on its features).

    Args:
        example: feature dict with uint8 `image` `(H, W, 3)` and `segmentation_mask` `(H, W, 1)`.
        image_size: side of the square output, in pixels.

    Returns:
        `(image, mask)`: float32 `(image_size, image_size, 3)` in [0, 1] and float32
        `(image_size, image_size, 1)` in {0, 1}.
    """
    return preprocessing.preprocess(example["image"], example["segmentation_mask"], image_size)


def augment_example(augmentation, image, mask, seed):
    """Applies `augmentation` (numpy, see `ph2_tf.data.augmentation`) to one example inside tf.data.

    Args:
        augmentation: a `ph2_tf.data.augmentation.Augmentation`.
        image: float32 `(S, S, 3)` in [0, 1].
        mask: float32 `(S, S, 1)` in {0, 1}.
        seed: int64 tensor of shape `(2,)`; seeds the example's `numpy.random.Generator`.

    Returns:
        The augmented `(image, mask)`, same shapes and value ranges.
    """

    def apply(image, mask, seed):
        rng = np.random.default_rng(seed.astype(np.uint64))
        return augmentation(image, mask, rng)

    new_image, new_mask = tf.numpy_function(apply, [image, mask, seed], [tf.float32, tf.float32])
    return tf.ensure_shape(new_image, image.shape), tf.ensure_shape(new_mask, mask.shape)


def load_split(
    split,
    *,
    image_size,
    batch_size,
    training=False,
    augmentation=None,
    seed=0,
    data_dir=None,
    manual_dir=None,
    strategy=None,
    extra_examples=None,
):
    """Builds the batched input pipeline for one PH2 split.

    Args:
        split: TFDS split string (`'train'`, `'validation'`, `'test'`, or a slice of one).
        image_size: side of the square training images, in pixels.
        batch_size: GLOBAL batch size (per-replica batch size x replicas in sync).
        training: shuffle (seeded, reshuffled each epoch) and allow augmentation.
        augmentation: a `ph2_tf.data.augmentation.Augmentation` for the training examples; ignored
            unless `training`.
        seed: seed for the shuffle order and the augmentation.
        data_dir: TFDS data directory (TFDS's default when None).
        manual_dir: PH2 manual directory used to prepare the dataset if needed.
        strategy: optional `tf.distribute.Strategy`; when given, the result is
            `strategy.experimental_distribute_dataset(...)` of the batched dataset.
        extra_examples: optional `(images, masks)` arrays, already preprocessed to
            `image_size` (`ph2_tf.data.external.training_arrays`), appended to the split's
            examples before shuffling.

    Returns:
        A dataset (distributed when `strategy` is given) of `(image, mask)` batches: float32
        `(B, S, S, 3)` in [0, 1] and float32 `(B, S, S, 1)` in {0, 1}.
    """
    if not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    examples = load_examples(
        split, tfds_config_for(image_size), data_dir=data_dir, manual_dir=manual_dir
    )
    ds = examples.map(
        lambda example: preprocess(example, image_size), num_parallel_calls=tf.data.AUTOTUNE
    )
    if extra_examples is not None:
        ds = ds.concatenate(tf.data.Dataset.from_tensor_slices(tuple(extra_examples)))
    ds = ds.cache()
    if training:
        num_examples = int(ds.cardinality())
        ds = ds.shuffle(max(num_examples, 1), seed=seed, reshuffle_each_iteration=True)
        if augmentation is not None and augmentation.active:
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda pair, pair_seed: augment_example(augmentation, *pair, pair_seed),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    # The TFDS files are too few to shard by file across workers; shard by element instead.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    if strategy is not None:
        ds = strategy.experimental_distribute_dataset(ds)
    return ds
