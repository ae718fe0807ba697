"""A two-worker MultiWorkerMirroredStrategy run on localhost, through
`ph2_tf.training.train.train`.
"""

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, SCRIPTS_DIR, subprocess_env

from ph2_tf.training.config import TrainConfig
from ph2_tf.training.runs import BEST_MODEL_FILE, read_log

pytestmark = pytest.mark.slow

NUM_WORKERS = 2


def free_ports(count):
    """`count` distinct TCP ports free on localhost right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# Also with a moving average of the weights, which each worker swaps in to validate and save.
@pytest.mark.parametrize("ema_momentum", [None, 0.9])
def test_two_workers_finish_an_epoch_with_equal_weights(ph2_dummy, tmp_path, ema_momentum):
    cfg = TrainConfig(
        model="unet",
        loss="bce",
        epochs=1,
        image_size=32,
        width=0.125,
        batch_size=4,
        data_dir=ph2_dummy.data_dir,
        manual_dir=ph2_dummy.manual_dir,
        out_dir=str(tmp_path / "run"),
        ema_momentum=ema_momentum,
    )
    cfg.save(tmp_path / "config.json")
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(NUM_WORKERS)]}
    workers = []
    for index in range(NUM_WORKERS):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(SCRIPTS_DIR / "train_run.py"),
                    str(tmp_path / "config.json"),
                    str(tmp_path / f"weights_{index}.npz"),
                ],
                env=subprocess_env(TF_CONFIG=json.dumps(tf_config)),
                cwd=str(REPO_ROOT),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300)[0])
    finally:
        for worker in workers:
            worker.kill()
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output

    chief_dir = tmp_path / "run"
    logs = [read_log(chief_dir), read_log(chief_dir / "worker_1")]
    for log in logs:
        assert log["epoch"] == [0]  # epoch 0 finished and logged
    assert logs[0]["val_loss"] == pytest.approx(logs[1]["val_loss"], rel=1e-6)
    assert (chief_dir / BEST_MODEL_FILE).exists()
    first, second = (np.load(tmp_path / f"weights_{i}.npz") for i in range(NUM_WORKERS))
    for key in first.files:
        np.testing.assert_allclose(first[key], second[key], rtol=0, atol=1e-6)
