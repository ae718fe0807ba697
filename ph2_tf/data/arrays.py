"""PH2 as numpy arrays, for Keras backends other than TensorFlow (JAX on a GPU without TF).

Why numpy and a `keras.utils.PyDataset` rather than a loader such as grain: a split of PH2 is
at most 100 images, which preprocessed at 256×256 take 79 MB, so the whole split is decoded once
into memory and an epoch is a seeded permutation of indices. That leaves no I/O to overlap and
nothing for a loader's worker processes to do, and it adds no dependency. Pixels come from
`ph2_tf.data.preprocessing.preprocess`, the same definition the TensorFlow pipeline maps.

Examples are read with `tfds.data_source` (`ph2_tf.data.sources`), which needs no TensorFlow; on the
TensorFlow backend `examples` reads through `tfds.load` instead, so that evaluation works on
datasets prepared by `tfds.load` alone.
"""

import functools

import keras
import numpy as np

from ph2_tf.data import preprocessing
from ph2_tf.data.augmentation import augment_batch


def examples(split, config, *, data_dir=None, manual_dir=None):
    """Iterates over one split of a TFDS `ph2` config as numpy feature dicts.

    Args:
        split: TFDS split string, e.g. `'test'` or `'train[:4]'`.
        config: `ph2` builder config.
        data_dir: TFDS data directory (TFDS's default when None).
        manual_dir: PH2 manual directory, used on the TensorFlow backend to prepare the dataset
            if needed; other backends need it prepared (`python -m ph2_tf prepare`).

    Yields:
        Dicts with uint8 `image` `(H, W, 3)`, uint8 `segmentation_mask` `(H, W, 1)` and
        `image_id` (`str`), in the dataset's stored order.
    """
    if keras.backend.backend() == "tensorflow":
        from ph2_tf.data import pipeline  # imports TensorFlow

        stored = pipeline.load_examples(split, config, data_dir=data_dir, manual_dir=manual_dir)
        stored = stored.as_numpy_iterator()
    else:
        from ph2_tf.data import sources

        stored = sources.data_source(split, config, data_dir=data_dir)
    for example in stored:
        image_id = example["image_id"]
        yield {
            **example,
            "image_id": image_id.decode() if isinstance(image_id, bytes) else image_id,
        }


def load_arrays(split, image_size, *, data_dir=None, manual_dir=None):
    """Every example of a split, preprocessed for a training size, as numpy arrays.

    Decoded once per process for each set of arguments: the tuner evaluates every configuration
    on the same splits, and decoding the full-size PNGs again for each would add up over its
    grid. The arrays are read-only and shared between calls.

    Args:
        split: TFDS split string.
        image_size: side of the square model input.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory (see `examples`).

    Returns:
        `(images, masks, ids)`: float32 `(N, S, S, 3)` in [0, 1], float32 `(N, S, S, 1)` in
        {0, 1}, and the list of image ids.
    """
    images, masks, ids = _decoded_arrays(split, image_size, _path_key(data_dir), manual_dir)
    return images, masks, list(ids)


def original_masks(split, *, data_dir=None, manual_dir=None):
    """The full-size lesion masks of a split, decoded once per process (read-only).

    Args:
        split: TFDS split string.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory (see `examples`).

    Returns:
        A dict from image id to a bool `(H, W)` mask at the image's original size.
    """
    return dict(_decoded_original_masks(split, _path_key(data_dir), manual_dir))


def _path_key(path):
    return None if path is None else str(path)


@functools.lru_cache(maxsize=16)
def _decoded_arrays(split, image_size, data_dir, manual_dir):
    images, masks, ids = [], [], []
    config = preprocessing.tfds_config_for(image_size)
    for example in examples(split, config, data_dir=data_dir, manual_dir=manual_dir):
        image, mask = preprocessing.preprocess(
            example["image"], example["segmentation_mask"], image_size
        )
        images.append(keras.ops.convert_to_numpy(image))
        masks.append(keras.ops.convert_to_numpy(mask))
        ids.append(example["image_id"])
    if not ids:
        raise ValueError(f"split {split!r} of ph2/{config} has no examples")
    return _read_only(np.stack(images)), _read_only(np.stack(masks)), tuple(ids)


@functools.lru_cache(maxsize=4)
def _decoded_original_masks(split, data_dir, manual_dir):
    return tuple(
        (example["image_id"], _read_only(example["segmentation_mask"][..., 0] > 0))
        for example in examples(split, "original", data_dir=data_dir, manual_dir=manual_dir)
    )


def _read_only(array):
    array.setflags(write=False)
    return array


class Batches(keras.utils.PyDataset):
    """Batches of in-memory `(images, masks)`, optionally reshuffled and augmented from a seed.

    Epoch `e` uses the permutation drawn from `numpy.random.default_rng((seed, e))`, and batch
    `i` of it is augmented with `numpy.random.default_rng((seed, e, i))`, so a given seed always
    gives the same sequence of epochs, in whatever order Keras asks for the batches.

    Args:
        images: float32 `(N, S, S, 3)`.
        masks: float32 `(N, S, S, 1)`.
        batch_size: examples per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch; otherwise the stored order.
        seed: seed of the shuffles and the augmentation.
        augmentation: a `ph2_tf.data.augmentation.Augmentation` applied to every example; None or an
            inactive one for none.

    Example:

    ```python
    batches = Batches(images, masks, batch_size=12, shuffle=True, seed=0)
    model.fit(batches, epochs=2)
    ```
    """

    def __init__(self, images, masks, batch_size, *, shuffle=False, seed=0, augmentation=None):
        super().__init__()
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, received {batch_size!r}")
        self.images, self.masks = images, masks
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.augmentation = augmentation if augmentation and augmentation.active else None
        self.epoch = 0
        self.order = self._order()

    def _order(self):
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng((self.seed, self.epoch)).permutation(len(self.images))

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index):
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.augmentation is None:
            return self.images[chosen], self.masks[chosen]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        return augment_batch(self.augmentation, self.images[chosen], self.masks[chosen], rng)

    def on_epoch_end(self):
        self.epoch += 1
        self.order = self._order()
