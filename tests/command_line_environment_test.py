"""The environment `import ph2_tf` leaves alone and the command line sets before TensorFlow loads.

The start-up filter is checked on a stand-in `tensorflow` package that writes what TensorFlow's
libraries write while they load, so that these tests run without loading TensorFlow.
"""

import json
import os
import sys

import pytest
from conftest import REPO_ROOT, run_python, subprocess_env

from ph2_tf.cli import environment

# What TensorFlow 2.21 writes to stderr while `import tensorflow` runs on a CPU-only machine
# (abridged), and lines that must get through.
START_UP_INFO = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796168588.042775   18240 port.cc:153] oneDNN custom operations are on.\n",
    "I0000 00:00:1796168588.043187   18240 cudart_stub.cc:31] Could not find cuda drivers.\n",
]
KEPT = [
    "W0000 00:00:1796168588.043187   18240 dso_loader.cc:1] a warning\n",
    "E0000 00:00:1796168588.043187   18240 cuda_dnn.cc:2] an error\n",
    "not a log line\n",
]
STAND_IN = f"""\
import os
os.write(2, {"".join(START_UP_INFO[:2] + KEPT + START_UP_INFO[2:]).encode()!r})
if os.environ.get("STAND_IN_FAILS"):
    raise ImportError("the stand-in failed to load")
"""
PROBE = """\
from ph2_tf.cli.environment import set_up_command_line
set_up_command_line()
import tensorflow
print(type(tensorflow.__loader__).__name__, type(tensorflow.__spec__.loader).__name__)
"""


def test_importing_ph2_tf_changes_no_environment_variable():
    env = subprocess_env()
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    code = (
        "import json, os; before = dict(os.environ); import ph2_tf, ph2_tf.cli; "
        "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))"
    )
    proc = run_python(["-c", code], env=env)
    assert json.loads(proc.stdout) == []


def test_command_line_defaults(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # No GPU: TensorFlow's cuInit fails.
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))

    environment.set_up_command_line()

    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert isinstance(sys.meta_path[0], environment.TensorFlowStartUpInfoFilter)


def test_the_users_settings_are_kept(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    meta_path = list(sys.meta_path)
    monkeypatch.setattr(sys, "meta_path", list(meta_path))

    environment.set_up_command_line()

    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert sys.meta_path == meta_path  # Asked for every line: none is dropped.


@pytest.mark.parametrize("line", START_UP_INFO)
def test_start_up_info_lines(line):
    assert environment.is_start_up_info(line)


@pytest.mark.parametrize("line", KEPT + ["predict: I0000 in a message\n", "\n"])
def test_other_lines_are_not_start_up_info(line):
    assert not environment.is_start_up_info(line)


@pytest.fixture
def stand_in_env(tmp_path):
    """An environment in which `import tensorflow` finds the stand-in package."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(STAND_IN)
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO_ROOT)]))
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    return env


def test_start_up_info_is_dropped_and_the_rest_kept(stand_in_env):
    proc = run_python(["-c", PROBE], env=stand_in_env)
    assert proc.stderr == "".join(KEPT)
    # Once loaded, the package has its own loader, as without the filter.
    assert proc.stdout.split() == ["SourceFileLoader", "SourceFileLoader"]


def test_a_failed_import_shows_everything(stand_in_env):
    proc = run_python(["-c", PROBE], env=dict(stand_in_env, STAND_IN_FAILS="1"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("".join(START_UP_INFO[:2] + KEPT + START_UP_INFO[2:]))
    assert proc.stderr.rstrip().endswith("ImportError: the stand-in failed to load")


def test_a_log_level_set_by_the_user_shows_everything(stand_in_env):
    proc = run_python(["-c", PROBE], env=dict(stand_in_env, TF_CPP_MIN_LOG_LEVEL="0"))
    assert proc.stderr == "".join(START_UP_INFO[:2] + KEPT + START_UP_INFO[2:])
