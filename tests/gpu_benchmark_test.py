"""The GPU throughput benchmark and its table beside the peer, run here on tiny models.

They measure on the device, where each call is scarce, so they are checked here first: the
benchmark on Keras' JAX backend without TensorFlow, and the table on records of known values.
"""

import importlib.util
import json
import math

import pytest
from conftest import REPO_ROOT, run_without_tensorflow

BENCHMARK = REPO_ROOT / "benchmarks" / "gpu_throughput.py"
COMPARE = REPO_ROOT / "benchmarks" / "device" / "compare_with_peer.py"


def load_compare():
    spec = importlib.util.spec_from_file_location("compare_with_peer", COMPARE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_on_jax_times_train_on_batch_and_queued_steps(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "ours.json"
    run_without_tensorflow(
        [BENCHMARK, "--models", "unet", "--precisions", "float32", "--batch-sizes", "2"]
        + ["--image-size", "32", "--width", "0.0625", "--steps", "3", "--warmup-steps", "1"]
        + ["--compile-cache", "", "--json", out]
    )
    report = json.loads(out.read_text())
    assert report["complete"] and report["backend"] == "jax" and not report["errors"]
    (row,) = report["results"]
    for key in ("images_per_second", "queued_images_per_second", "step_ms", "queued_step_ms"):
        assert row[key] > 0, key
    assert math.isclose(
        row["queued_images_per_second"], 1000 * 2 / row["queued_step_ms"], rel_tol=0.01
    )
    assert math.isfinite(row["loss"]) and math.isfinite(row["queued_loss"])


def ours_record(**queued):
    result = dict(
        model="unet", precision="mixed_bfloat16", batch_size=12, images_per_second=600.0,
        step_ms=20.0, compile_s=30.0, **queued,
    )  # fmt: skip
    recipe = dict(image_size=256, width=1.0, steps=30)
    return dict(backend="jax", complete=True, recipe=recipe, results=[result], errors=[])


PEER = [
    dict(model="unet", bs=12, amp=True, channels_last=True, compile=False, img_per_s=800.0),
    dict(model="segnet", bs=48, amp=True, channels_last=True, compile=False, img_per_s=900.0),
]


def table_row(lines, model):
    return next(line for line in lines if line.startswith(f"| {model} |"))


def test_table_compares_queued_steps_with_the_peer():
    compare = load_compare()
    lines = compare.table(ours_record(queued_images_per_second=720.0), PEER)
    cells = [c.strip() for c in table_row(lines, "unet").split("|")[1:-1]]
    assert cells[3:6] == ["720.0", "600.0", "30.0"]
    assert cells[6:9] == ["bf16 autocast + channels_last", "800.0", "0.90"]
    assert not any(line.startswith("`*`") for line in lines)
    # The peer cell that none of ours pairs with still gets its row.
    assert "| 900.0 |" in table_row(lines, "segnet")


def test_table_marks_a_ratio_against_train_on_batch():
    compare = load_compare()
    lines = compare.table(ours_record(), PEER)
    cells = [c.strip() for c in table_row(lines, "unet").split("|")[1:-1]]
    assert cells[3] == compare.MISSING and cells[8] == "0.75*"
    assert lines[-1].startswith("`*`: against our train_on_batch rate")
