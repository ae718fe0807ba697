"""Tests of ph2_tf.serving.versions: a version appears whole under its number, one publisher at a
time, and what a killed publisher leaves behind is never served. No TensorFlow needed.
"""

import os
import signal
import subprocess
import sys

import pytest

from ph2_tf.serving import versions


def stage_version(staged):
    """Stands in for a SavedModel: the files `served_versions` looks for."""
    (staged / "variables").mkdir(parents=True)
    (staged / "saved_model.pb").write_bytes(b"graph")
    (staged / "variables" / "variables.index").write_bytes(b"index")


def test_a_staged_version_appears_under_the_next_number_in_one_step(tmp_path):
    model_dir = tmp_path / "ph2_unet"
    with versions.staging(model_dir) as staged:
        stage_version(staged)
        assert versions.served_versions(model_dir) == []  # staged, not served
        path = versions.promote(staged)
    assert path == model_dir / "1"
    assert (path / "variables" / "variables.index").read_bytes() == b"index"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]  # no staging folder left
    with versions.staging(model_dir) as staged:
        stage_version(staged)
        assert versions.promote(staged, 7) == model_dir / "7"
    assert [p.name for p in versions.served_versions(model_dir)] == ["1", "7"]


def test_a_first_version_that_fails_leaves_no_model_folder(tmp_path):
    with pytest.raises(RuntimeError, match="measuring failed"):
        with versions.staging(tmp_path / "ph2_unet") as staged:
            stage_version(staged)
            raise RuntimeError("measuring failed")
    assert not any(tmp_path.iterdir())


def test_a_taken_or_invalid_version_is_refused_and_nothing_moves(tmp_path):
    model_dir = tmp_path / "ph2_unet"
    (model_dir / "3").mkdir(parents=True)  # empty: a rename onto it would succeed
    with versions.staging(model_dir) as staged:
        stage_version(staged)
        with pytest.raises(versions.PublishingError, match="version 3 already exists"):
            versions.promote(staged, 3)
        for bad in (0, -1, True, "4"):
            with pytest.raises(versions.PublishingError, match="must be a positive int"):
                versions.promote(staged, bad)
        assert (staged / "saved_model.pb").exists() and not any((model_dir / "3").iterdir())
    assert sorted(p.name for p in model_dir.iterdir()) == ["3"]


def test_one_publisher_at_a_time_and_a_killed_one_leaves_no_lock(tmp_path):
    model_dir = tmp_path / "ph2_unet"
    with versions.staging(model_dir):
        with pytest.raises(versions.PublishingError, match="another process is publishing"):
            with versions.staging(model_dir):
                pass
    killed_while_staging = (
        "import os, signal, sys\n"
        "from ph2_tf.serving import versions\n"
        "with versions.staging(sys.argv[1]) as staged:\n"
        "    (staged / 'variables').mkdir(parents=True)\n"
        "    (staged / 'saved_model.pb').write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run([sys.executable, "-c", killed_while_staging, str(model_dir)])
    assert child.returncode == -signal.SIGKILL
    stray = model_dir / versions.STAGING_DIR
    assert (stray / "saved_model.pb").exists()
    # Never served or counted: TF Serving, `predict` and the next number skip it.
    assert not versions.is_version_name(stray.name)
    assert versions.served_versions(model_dir) == []
    assert versions.next_version(model_dir) == 1
    with pytest.raises(ValueError, match="no SavedModel"):
        versions.resolve(model_dir)
    with versions.staging(model_dir) as staged:  # the lock died with its process
        assert not staged.exists()  # the stray folder is removed
    assert not os.listdir(model_dir)


@pytest.mark.parametrize(
    "name, is_version", [("1", True), ("10", True), ("0012", True), ("٣", False), ("1a", False)]
)
def test_only_ascii_digit_names_are_versions(name, is_version):
    assert versions.is_version_name(name) is is_version
