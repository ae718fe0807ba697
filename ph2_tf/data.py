"""PH2 input pipelines: TFDS examples to batched, optionally distributed `tf.data` datasets.

The pipeline for one split is: read the TFDS `ph2` config that matches the training size (so that
full-size images are not decoded when a pre-resized config exists), preprocess with
`ph2_tf.preprocessing.preprocess` (the definition every backend and the serving signature use:
image scaled to [0, 1] and resized bilinearly with anti-aliasing, mask nearest), cache, and for
training shuffle with a seed and optionally augment; then batch by the global batch size, prefetch
and, given a `tf.distribute` strategy, distribute (each replica gets `batch_size / replicas`).
"""

import tensorflow as tf
import tensorflow_datasets as tfds

import tfds_ph2  # noqa: F401  (registers the 'ph2' builder)
from ph2_tf import preprocessing
from ph2_tf.preprocessing import tfds_config_for

# Augmentation strengths: small on purpose (dermoscopy colour carries diagnostic information).
_MIN_CROP_FRACTION = 0.85
_BRIGHTNESS_DELTA = 0.05
_CONTRAST_RANGE = (0.9, 1.1)
_SATURATION_RANGE = (0.9, 1.1)
_HUE_DELTA = 0.02


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


def augment_example(image, mask, seed):
    """Applies the same random geometric transform to an image and its mask, then colour jitter.

    Geometric: horizontal and vertical flips, a multiple of 90 degrees rotation, and a random crop
    of 85-100 % of the side resized back (a small zoom). Colour (image only): brightness, contrast,
    saturation and hue jitter. Stateless, so a given seed always gives the same result.

    Args:
        image: float32 `(S, S, 3)` in [0, 1] (square, so that rotations keep the shape).
        mask: float32 `(S, S, 1)` in {0, 1}.
        seed: int tensor of shape `(2,)`.

    Returns:
        The augmented `(image, mask)`, same shapes and value ranges.
    """
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=9))
    size = tf.shape(image)[:2]
    both = tf.concat([image, mask], axis=-1)
    both = tf.image.stateless_random_flip_left_right(both, seeds[0])
    both = tf.image.stateless_random_flip_up_down(both, seeds[1])
    quarter_turns = tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32)
    both = tf.image.rot90(both, quarter_turns)
    fraction = tf.random.stateless_uniform([], seeds[3], _MIN_CROP_FRACTION, 1.0)
    crop = tf.cast(tf.round(tf.cast(size, tf.float32) * fraction), tf.int32)
    both = tf.image.stateless_random_crop(both, tf.concat([crop, [4]], axis=0), seeds[4])
    both = tf.image.resize(both, size, method="bilinear")
    image, mask = both[..., :3], tf.cast(both[..., 3:] >= 0.5, tf.float32)
    image = tf.image.stateless_random_brightness(image, _BRIGHTNESS_DELTA, seeds[5])
    image = tf.image.stateless_random_contrast(image, *_CONTRAST_RANGE, seeds[6])
    image = tf.image.stateless_random_saturation(image, *_SATURATION_RANGE, seeds[7])
    image = tf.image.stateless_random_hue(image, _HUE_DELTA, seeds[8])
    return tf.clip_by_value(image, 0.0, 1.0), mask


def load_split(
    split,
    *,
    image_size,
    batch_size,
    training=False,
    augment=False,
    seed=0,
    data_dir=None,
    manual_dir=None,
    strategy=None,
):
    """Builds the batched input pipeline for one PH2 split.

    Args:
        split: TFDS split string (`'train'`, `'validation'`, `'test'`, or a slice of one).
        image_size: side of the square training images, in pixels.
        batch_size: GLOBAL batch size (per-replica batch size x replicas in sync).
        training: shuffle (seeded, reshuffled each epoch) and allow augmentation.
        augment: apply `augment_example` to training examples; ignored unless `training`.
        seed: seed for the shuffle order and the augmentation.
        data_dir: TFDS data directory (TFDS's default when None).
        manual_dir: PH2 manual directory used to prepare the dataset if needed.
        strategy: optional `tf.distribute.Strategy`; when given, the result is
            `strategy.experimental_distribute_dataset(...)` of the batched dataset.

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
    ).cache()
    if training:
        num_examples = int(ds.cardinality())
        ds = ds.shuffle(max(num_examples, 1), seed=seed, reshuffle_each_iteration=True)
        if augment:
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda pair, pair_seed: augment_example(*pair, pair_seed),
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
