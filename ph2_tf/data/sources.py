"""Random-access PH2 examples as numpy, read without TensorFlow (`tfds.data_source`).

A machine without TensorFlow (e.g. a GPU machine running Keras on JAX) cannot use `tfds.load`,
which returns a `tf.data.Dataset`; TFDS's data sources read the `array_record` file format
instead. `tfds.load` in turn cannot read `array_record`, so `python -m ph2_tf prepare`
(`ph2_tf.data.prepare`, run where TensorFlow is installed) stores each `ph2` config in both formats
in one data directory, which can then be copied to the machine without TensorFlow.

This module imports neither TensorFlow nor any module that does: `tensorflow_datasets` and
`tfds_ph2` work without it.

An example, as returned by `data_source(...)[i]` (nothing is converted; text comes back as
bytes):

| feature | type |
|---|---|
| `image` | `np.ndarray`, uint8, `(H, W, 3)`; `H = W = 128` or `256` in the resized configs |
| `segmentation_mask` | `np.ndarray`, uint8, `(H, W, 1)`, values {0, 1} |
| `image_id` | `bytes`, e.g. `b'IMD002'` |
| `histological_diagnosis` | `bytes`, often `b''` |
| `label`, `asymmetry` and the dermoscopic criteria | `int` (class index) |
| `colors` | `np.ndarray`, bool, `(6,)` |
"""

import tensorflow_datasets as tfds

import tfds_ph2  # noqa: F401  (registers the 'ph2' builder)

ARRAY_RECORD = tfds.core.FileFormat.ARRAY_RECORD.file_suffix  # "array_record"


class DatasetNotPreparedError(FileNotFoundError):
    """A `ph2` config has no `array_record` files in the data directory.

    Attributes:
        config: the `ph2` builder config.
        path: the dataset version directory that was searched.
    """

    def __init__(self, message, *, config, path):
        super().__init__(message)
        self.config = config
        self.path = path


def array_record_paths(info):
    """The `array_record` shard files that go with a dataset's splits.

    Args:
        info: the `tfds.core.DatasetInfo` of a prepared dataset (in any file format).

    Returns:
        A list of `epath.Path`: for each split, as many shards as the split has in `info`,
        named as TFDS names `array_record` shards in the dataset's version directory.
    """
    paths = []
    for split_info in info.splits.values():
        template = split_info.filename_template.replace(filetype_suffix=ARRAY_RECORD)
        paths += template.sharded_filepaths(split_info.num_shards)
    return paths


def has_array_record(info):
    """Whether a prepared dataset can be read as `array_record`.

    Args:
        info: the `tfds.core.DatasetInfo` of a prepared dataset.

    Returns:
        True when it was prepared in `array_record`, or when its `dataset_info.json` lists
        `array_record` among its `alternativeFileFormats` and every shard file is present.
    """
    if info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
        return True
    # `read_from_directory` restores this list into the proto only, not into
    # `info.alternative_file_formats` (TFDS 4.9.10).
    listed = ARRAY_RECORD in info.as_proto.alternative_file_formats
    return listed and all(path.exists() for path in array_record_paths(info))


def data_source(split, config="original", *, data_dir=None):
    """Random-access examples of one split of a TFDS `ph2` config, read without TensorFlow.

    Args:
        split: TFDS split string, e.g. `'train'`, `'validation'`, `'test'` or `'train[:4]'`.
        config: `ph2` builder config: `'original'`, `'resized_128'` or `'resized_256'`.
        data_dir: TFDS data directory (TFDS's default when None).

    Returns:
        A TFDS `ArrayRecordDataSource`: a sequence (`len`, indexing, iteration) of numpy
        feature dicts in the dataset's stored order, the same examples `tfds.load` yields (see
        the module docstring for their types).

    Raises:
        DatasetNotPreparedError: the config is not prepared in `data_dir`, or has no
            `array_record` files there.
    """
    builder = tfds.builder(f"ph2/{config}", data_dir=None if data_dir is None else str(data_dir))
    version_dir = builder.data_path
    if not builder.is_prepared():
        problem = "is not prepared"
    elif not has_array_record(builder.info):
        problem = (
            "has no array_record files, TFDS's random-access format (it was prepared for "
            "`tfds.load` only)"
        )
    else:
        problem = None
    if problem:
        raise DatasetNotPreparedError(
            f"ph2/{config} in {version_dir} {problem}. Run `python -m ph2_tf prepare "
            f"--data-dir {builder.data_dir_root}` where TensorFlow is installed (and copy that "
            "directory here if it is another machine).",
            config=config,
            path=version_dir,
        )
    info = builder.info
    if info.file_format != tfds.core.FileFormat.ARRAY_RECORD and (
        tfds.core.FileFormat.ARRAY_RECORD not in info.alternative_file_formats
    ):
        info.add_alternative_file_format(ARRAY_RECORD)
    return builder.as_data_source(split=split, file_format=ARRAY_RECORD)
