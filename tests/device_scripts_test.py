"""The GPU machine's grid script, run here on dummy data: its process groups, merge and resume.

Device time is scarce, so `benchmarks/device/run_reference_grid.sh` must work on its first call
there. This runs it as the device would (two tuner processes at once on Keras' JAX backend),
only with a tiny grid, then once more from what the first call brought back.
"""

import os
import subprocess
import sys
import tarfile

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

pytest.importorskip("jax")

SCRIPT = REPO_ROOT / "benchmarks" / "device" / "run_reference_grid.sh"
GROUPS = "unet-bce-lr0.0001-e30;segnet-dice-lr0.0001-e10"
RUN_NAME = "device-script-test"  # not a folder of results/, whose records the script would read


def _run_grid(tmp_path, data_dir, call, **extra):
    out = tmp_path / f"out{call}"
    out.mkdir()
    env = dict(
        os.environ,
        OUT=str(out),
        SKIP_INSTALL="1",
        DATA_DIR=data_dir,
        WORK=str(tmp_path / f"work{call}"),
        RUN_NAME=RUN_NAME,
        HOME=str(tmp_path),  # JAX's compilation cache goes under it
        TUNER_ARGS="--profile small --seeds 1 --epochs 1 --no-checkpoints",
        GRID_GROUPS=GROUPS,
        GRID_TIMEOUT="500",
        RESUME_DIR=str(tmp_path / "none"),
        PYTHON=sys.executable,  # this interpreter has the project, whether or not in a venv
    )
    env.update(extra)
    proc = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


def _members(archive):
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_grid_script_merges_its_processes_and_resumes_from_what_came_back(ph2_prepared, tmp_path):
    out, log = _run_grid(tmp_path, ph2_prepared, 1)
    assert "resumed: 0 seed records" in log and "records: 2 of 45" in log
    assert log.count("exit status 0") == 2  # both tuner processes finished
    names = _members(out / f"{RUN_NAME}.tar.gz")
    records = sorted(n.rsplit("/", 1)[1] for n in names if "/records/" in n)
    assert records == ["segnet-dice-lr0.0001-e1__seed0.json", "unet-bce-lr0.0001-e1__seed0.json"]
    assert sum("/logs/" in n and n.endswith(".log") for n in names) == 2
    assert any(n.endswith("seed0/log.csv") for n in names)
    assert not any(n.endswith((".keras", ".h5")) for n in names)  # models stay on the device
    assert (out / "grid.log").read_text() == log

    # A fresh machine, given what the first call brought back, trains nothing again.
    again, log = _run_grid(tmp_path, ph2_prepared, 2, RESUME_DIR=str(out))
    assert "resumed: 2 seed records" in log and "records: 2 of 45" in log
    with tarfile.open(again / f"{RUN_NAME}.tar.gz") as tar:
        new_logs = [
            tar.extractfile(member).read().decode()
            for member in tar.getnames()
            if "/logs/" in member and member.endswith(".log") and member not in names
        ]
    assert len(new_logs) == 2
    assert not any(", seed 0 ---" in text for text in new_logs)
