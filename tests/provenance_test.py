"""Tests of ph2_tf.provenance: what every record says about the code and machine behind it."""

import json
import subprocess

from conftest import REPO_ROOT

from ph2_tf import provenance


def test_collect_names_code_packages_backend_device_and_precision(monkeypatch):
    monkeypatch.delenv("PH2_GIT_COMMIT", raising=False)
    info = provenance.collect()
    json.dumps(info)  # goes into JSON records as it is
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert info["git"]["commit"] == head and isinstance(info["git"]["dirty"], bool)
    assert info["packages"]["keras"] and info["packages"]["tensorflow"]
    assert info["backend"] == "tensorflow" and info["precision"] == "float32"
    assert info["device"].startswith("CPU: ")  # no GPU on CI
    # conftest turns oneDNN on before TensorFlow loads, as the command line does.
    assert info["onednn"] is True


def test_outside_a_checkout_the_commit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_REPO_ROOT", tmp_path)  # not a git checkout
    monkeypatch.delenv("PH2_GIT_COMMIT", raising=False)
    assert provenance.git_state() == {"commit": None, "dirty": None}
    monkeypatch.setenv("PH2_GIT_COMMIT", "0123abcd")
    monkeypatch.setenv("PH2_GIT_DIRTY", "1")
    assert provenance.git_state() == {"commit": "0123abcd", "dirty": True, "from": "PH2_GIT_COMMIT"}


def test_the_environment_wins_over_a_checkout_that_travelled_with_a_copy(monkeypatch):
    # The GPU machine's copy of the tree can carry a .git older than the code beside it.
    monkeypatch.setenv("PH2_GIT_COMMIT", "0123abcd")
    monkeypatch.setenv("PH2_GIT_DIRTY", "0")
    expected = {"commit": "0123abcd", "dirty": False, "from": "PH2_GIT_COMMIT"}
    assert provenance.git_state() == expected
