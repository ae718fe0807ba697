"""Prepares the TFDS `ph2` configs for both readers: `tfds.load` and `ph2_tf.data.sources`.

`tfds.load` (the TensorFlow input pipeline) reads TFDS's default `tfrecord` files;
`tfds.data_source` (`ph2_tf.data.sources`, for machines without TensorFlow) reads `array_record`
files, which `tfds.load` cannot read. `prepare` stores every config in both formats in one data
directory:

1. the config is prepared as usual, in `tfrecord` (skipped when already prepared);
2. it is prepared again in `array_record` into a temporary directory inside the data
   directory; its splits must have the same names and shard lengths as the `tfrecord` ones;
3. those shard files are moved next to the `tfrecord` ones (each through a temporary name, so
   that no file is ever half-written under its final name), and `array_record` is added to the
   `alternativeFileFormats` of the version's `dataset_info.json`, last, so that a listed format
   always has its files.

TFDS's own format converter (`tfds convert_format`) would do step 2 from the `tfrecord` files,
but it needs Apache Beam.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile

import tensorflow_datasets as tfds

from ph2_tf.data import sources
from tfds_ph2.ph2 import Builder

CONFIGS = tuple(config.name for config in Builder.BUILDER_CONFIGS)
_INFO_FILE = "dataset_info.json"
_STAGED_SUFFIX = ".incomplete"  # Files being written; TFDS never reads such names.


class PrepareError(RuntimeError):
    """A prepared dataset that `prepare` cannot complete; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class PreparedConfig:
    """What `prepare` did for one config.

    Attributes:
        config: the `ph2` builder config.
        version_dir: the dataset's version directory.
        steps: what was done, e.g. `("prepared tfrecord", "added array_record")`; empty when
            the config was already complete.
        tfrecord_bytes: size on disk of its `tfrecord` shards.
        array_record_bytes: size on disk of its `array_record` shards.
    """

    config: str
    version_dir: pathlib.Path
    steps: tuple[str, ...]
    tfrecord_bytes: int
    array_record_bytes: int

    def summary(self):
        """One line: the config, what was done and the sizes on disk."""
        done = ", ".join(self.steps) or "already complete"
        return (
            f"ph2/{self.config}: {done} (tfrecord {_size(self.tfrecord_bytes)}, array_record "
            f"{_size(self.array_record_bytes)}) in {self.version_dir}"
        )


def _size(num_bytes):
    if num_bytes < 2**20:
        return f"{num_bytes / 2**10:.1f} KiB"
    return f"{num_bytes / 2**20:.1f} MiB"


def prepare(data_dir=None, manual_dir=None, configs=CONFIGS):
    """Prepares `ph2` configs in the `tfrecord` and the `array_record` format.

    Configs already complete are left untouched, so running it again does nothing. Prints one
    line per config (`PreparedConfig.summary`).

    Args:
        data_dir: TFDS data directory (TFDS's default when None).
        manual_dir: directory holding the PH2 archive's contents (TFDS's default manual dir
            when None, then `$PH2_MANUAL_DIR`); needed unless every config is complete.
        configs: names of the `ph2` builder configs to prepare (default: all of `CONFIGS`).

    Returns:
        A list of `PreparedConfig`, one per config, in the order of `configs`.

    Raises:
        ValueError: a name in `configs` is not a `ph2` config.
        tfds_ph2.ph2.Ph2FileNotFoundError: PH2 data is needed but not found.
        tfds_ph2.ph2.Ph2DataError: the PH2 data is unreadable or inconsistent.
        PrepareError: a config is prepared in another format than `tfrecord`, or its
            `array_record` preparation does not match its `tfrecord` one.
    """
    unknown = [name for name in configs if name not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown ph2 configs {unknown}; the configs are {list(CONFIGS)}")
    download_config = tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else str(manual_dir)
    )
    data_dir = None if data_dir is None else str(data_dir)
    results = []
    for config in configs:
        results.append(_prepare_config(config, data_dir, download_config))
        print(results[-1].summary(), flush=True)
    return results


def _prepare_config(config, data_dir, download_config):
    builder = tfds.builder(f"ph2/{config}", data_dir=data_dir)
    steps = []
    if not builder.is_prepared():
        builder.download_and_prepare(download_config=download_config)
        steps.append("prepared tfrecord")
        builder = tfds.builder(f"ph2/{config}", data_dir=data_dir)  # Its info, read from disk.
    version_dir = pathlib.Path(builder.data_path)
    if builder.info.file_format != tfds.core.FileFormat.TFRECORD:
        raise PrepareError(
            f"ph2/{config} in {version_dir} is stored as {builder.info.file_format.value}, "
            f"which tfds.load cannot read. Delete {version_dir} and run again."
        )
    if not sources.has_array_record(builder.info):
        _add_array_record(builder, download_config)
        steps.append("added array_record")
    tfrecord_paths = [path for split in builder.info.splits.values() for path in split.filepaths]
    return PreparedConfig(
        config=config,
        version_dir=version_dir,
        steps=tuple(steps),
        tfrecord_bytes=sum(os.path.getsize(path) for path in tfrecord_paths),
        array_record_bytes=sum(
            os.path.getsize(path) for path in sources.array_record_paths(builder.info)
        ),
    )


def _add_array_record(builder, download_config):
    """Adds `array_record` shards and lists the format in `dataset_info.json`."""
    name = f"{builder.name}/{builder.builder_config.name}"
    version_dir = pathlib.Path(builder.data_path)
    root = pathlib.Path(builder.data_dir_root)
    # Inside the data directory, so that moving the shards is a rename, not a copy.
    with tempfile.TemporaryDirectory(prefix=".ph2-array_record-", dir=root) as temp_dir:
        other = tfds.builder(name, data_dir=temp_dir, file_format=sources.ARRAY_RECORD)
        # The same downloads directory as the tfrecord preparation, hence the same default
        # manual dir.
        other.download_and_prepare(
            download_dir=str(root / "downloads"), download_config=download_config
        )
        expected = {split: info.shard_lengths for split, info in builder.info.splits.items()}
        found = {split: info.shard_lengths for split, info in other.info.splits.items()}
        if found != expected:
            raise PrepareError(
                f"{name}: the array_record preparation has other splits or shard lengths "
                f"({found}) than the tfrecord one in {version_dir} ({expected}): was that "
                f"prepared from other PH2 data? Delete {version_dir} and run again."
            )
        for split in other.info.splits.values():
            for source in split.filepaths:
                final = version_dir / source.name
                staged = final.with_name(final.name + _STAGED_SUFFIX)
                shutil.move(source, staged)
                os.replace(staged, final)
    info_path = version_dir / _INFO_FILE
    info = json.loads(info_path.read_text())
    formats = info.setdefault("alternativeFileFormats", [])
    if sources.ARRAY_RECORD not in formats:
        formats.append(sources.ARRAY_RECORD)
    staged = info_path.with_name(info_path.name + _STAGED_SUFFIX)
    staged.write_text(json.dumps(info, indent=2, sort_keys=True))
    os.replace(staged, info_path)
