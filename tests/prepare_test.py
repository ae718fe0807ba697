"""`ph2_tf.data.prepare` and `ph2_tf.data.sources` on the dummy PH2 data: one data dir, both
readers.
"""

import json
import shutil
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import run_without_tensorflow

import tfds_ph2
from ph2_tf import cli
from ph2_tf.data import prepare, sources

VERSION = str(tfds_ph2.ph2.Builder.VERSION)

MANUAL_DIR = str(tfds_ph2.ph2.DUMMY_DATA_DIR)
# `original` has images of varying sizes, `resized_128` of one; the two cover both cases and
# are the quickest to prepare.
CONFIGS = ("original", "resized_128")
SPLITS = ("train", "validation", "test")


def _load(config, split, data_dir):
    """The examples `tfds.load` yields, as numpy, in stored order."""
    dataset = tfds.load(f"ph2/{config}", split=split, data_dir=str(data_dir), shuffle_files=False)
    return list(tfds.as_numpy(dataset))


def _assert_same_examples(actual, expected):
    assert [e["image_id"] for e in actual] == [e["image_id"] for e in expected]
    for got, want in zip(actual, expected, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert np.array_equal(got[key], want[key]), (want["image_id"], key)


def _file_states(directory):
    """{path: (size, mtime)} of every file below `directory`."""
    return {
        path: (path.stat().st_size, path.stat().st_mtime_ns)
        for path in directory.rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="module")
def tfrecord_dir(tmp_path_factory):
    """A data dir where TFDS alone prepared `CONFIGS` (tfrecord only), the reference."""
    data_dir = tmp_path_factory.mktemp("tfrecord")
    for config in CONFIGS:
        tfds.builder(f"ph2/{config}", data_dir=str(data_dir)).download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR)
        )
    return data_dir


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """`prepare` run on an empty data dir: `(data_dir, results)`."""
    data_dir = tmp_path_factory.mktemp("prepared")
    return data_dir, prepare.prepare(data_dir, manual_dir=MANUAL_DIR, configs=CONFIGS)


def test_prepare_reports_each_config(prepared):
    data_dir, results = prepared
    assert [r.config for r in results] == list(CONFIGS)
    for result in results:
        assert result.steps == ("prepared tfrecord", "added array_record")
        assert result.version_dir == data_dir / "ph2" / result.config / VERSION
        assert result.tfrecord_bytes > 0 and result.array_record_bytes > 0
        assert "ph2/" + result.config in result.summary()
    # The temporary array_record preparations are gone.
    assert not list(data_dir.glob(".ph2-array_record-*"))


@pytest.mark.parametrize("config", CONFIGS)
def test_tfds_load_reads_the_same_examples(prepared, tfrecord_dir, config):
    data_dir, _ = prepared
    for split in SPLITS:
        _assert_same_examples(_load(config, split, data_dir), _load(config, split, tfrecord_dir))


@pytest.mark.parametrize("config", CONFIGS)
def test_data_source_reads_what_tfds_load_reads(prepared, config):
    data_dir, _ = prepared
    for split in SPLITS:
        expected = _load(config, split, data_dir)
        source = sources.data_source(split, config, data_dir=data_dir)
        assert len(source) == len(expected)
        _assert_same_examples(list(source), expected)
    head = sources.data_source("train[:2]", config, data_dir=data_dir)
    _assert_same_examples(list(head), _load(config, "train", data_dir)[:2])


def test_data_source_example_types(prepared):
    data_dir, _ = prepared
    example = sources.data_source("test", "resized_128", data_dir=data_dir)[0]
    assert example["image"].dtype == np.uint8 and example["image"].shape == (128, 128, 3)
    mask = example["segmentation_mask"]
    assert mask.dtype == np.uint8 and mask.shape == (128, 128, 1)
    assert set(np.unique(mask)) <= {0, 1}
    assert isinstance(example["image_id"], bytes)


def test_builder_from_directory_sees_array_record(prepared):
    data_dir, _ = prepared
    builder = tfds.builder_from_directory(data_dir / "ph2" / "resized_128" / VERSION)
    assert tfds.core.FileFormat.ARRAY_RECORD in builder.info.alternative_file_formats
    source = builder.as_data_source(split="validation", file_format=sources.ARRAY_RECORD)
    assert len(source) == builder.info.splits["validation"].num_examples


def test_second_prepare_changes_nothing(prepared):
    data_dir, _ = prepared
    before = _file_states(data_dir)
    results = prepare.prepare(data_dir, manual_dir=MANUAL_DIR, configs=CONFIGS)
    assert [r.steps for r in results] == [()] * len(CONFIGS)
    assert _file_states(data_dir) == before


def test_adds_array_record_next_to_existing_tfrecord(tfrecord_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(tfrecord_dir, data_dir)
    version_dir = data_dir / "ph2" / "resized_128" / VERSION
    tfrecords = _file_states(data_dir)
    tfrecords = {p: s for p, s in tfrecords.items() if ".tfrecord-" in p.name}
    before = {split: _load("resized_128", split, data_dir) for split in SPLITS}

    (result,) = prepare.prepare(data_dir, manual_dir=MANUAL_DIR, configs=["resized_128"])

    assert result.steps == ("added array_record",)
    assert {p: s for p, s in _file_states(data_dir).items() if p in tfrecords} == tfrecords
    assert len(list(version_dir.glob("*.array_record-*"))) == len(SPLITS)
    for split in SPLITS:
        _assert_same_examples(_load("resized_128", split, data_dir), before[split])
        source = sources.data_source(split, "resized_128", data_dir=data_dir)
        _assert_same_examples(list(source), before[split])


def test_mismatching_shards_raise_and_write_nothing(tfrecord_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(tfrecord_dir, data_dir)
    info_path = data_dir / "ph2" / "resized_128" / VERSION / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["splits"][0]["shardLengths"] = ["5"]  # As if prepared from other data.
    info_path.write_text(json.dumps(info))
    before = _file_states(data_dir)

    with pytest.raises(prepare.PrepareError, match="shard lengths"):
        prepare.prepare(data_dir, manual_dir=MANUAL_DIR, configs=["resized_128"])

    assert _file_states(data_dir) == before  # No shard, no temporary directory left.


def test_unknown_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="resized_64"):
        prepare.prepare(tmp_path, manual_dir=MANUAL_DIR, configs=["resized_64"])


@pytest.mark.parametrize("what", ["tfrecord only", "nothing"])
def test_data_source_without_array_record_says_how_to_fix(tfrecord_dir, tmp_path, what):
    data_dir = tfrecord_dir if what == "tfrecord only" else tmp_path
    with pytest.raises(sources.DatasetNotPreparedError) as raised:
        sources.data_source("train", "resized_128", data_dir=data_dir)
    error = raised.value
    assert isinstance(error, FileNotFoundError)
    assert error.config == "resized_128"
    assert error.path == data_dir / "ph2" / "resized_128" / VERSION
    message = str(error)
    assert f"ph2/resized_128 in {error.path}" in message
    assert f"python -m ph2_tf prepare --data-dir {data_dir}" in message


def test_data_source_works_without_tensorflow(prepared, tmp_path):
    data_dir, _ = prepared
    script = tmp_path / "read.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json
            from ph2_tf.data import sources

            source = sources.data_source("test", "resized_128", data_dir={str(data_dir)!r})
            examples = list(source)
            print(json.dumps({{
                "ids": [e["image_id"].decode() for e in examples],
                "image_sums": [int(e["image"].sum()) for e in examples],
            }}))
            """
        )
    )
    # Exit status 3 if TensorFlow got imported.
    result = json.loads(run_without_tensorflow([script]).stdout.splitlines()[-1])
    expected = _load("resized_128", "test", data_dir)
    assert result["ids"] == [e["image_id"].decode() for e in expected]
    assert result["image_sums"] == [int(e["image"].sum()) for e in expected]


def test_cli_without_ph2_data_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(tfds_ph2.ph2.ph2_dataset_builder.MANUAL_DIR_ENV, raising=False)
    empty = tmp_path / "manual"
    empty.mkdir()
    argv = ["prepare", "--data-dir", str(tmp_path / "data"), "--manual-dir", str(empty)]
    argv += ["--configs", "resized_128"]

    assert cli.main(argv) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [errors[0]] and errors[0].startswith(
        "python -m ph2_tf prepare: error: PH2 data not found."
    )
