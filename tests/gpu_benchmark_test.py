"""The GPU throughput benchmark and its table beside the peer, run here on tiny models.

They measure on the device, where each call is scarce, so they are checked here first: the
benchmark on Keras' JAX backend without TensorFlow, and the table on records of known values.
"""

import importlib.util
import json
import math

import pytest
from conftest import REPO_ROOT, run_without_tensorflow

pytestmark = pytest.mark.slow

BENCHMARK = REPO_ROOT / "benchmarks" / "gpu_throughput.py"
COMPARE = REPO_ROOT / "benchmarks" / "device" / "compare_with_peer.py"


def load_module(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_on_jax_times_train_on_batch_and_queued_steps(tmp_path, monkeypatch):
    pytest.importorskip("jax")
    out = tmp_path / "ours.json"
    # XLA writes each program it compiles: the queued steps must reuse train_on_batch's.
    dump = tmp_path / "hlo"
    monkeypatch.setenv("XLA_FLAGS", f"--xla_dump_to={dump} --xla_dump_hlo_module_re=.*train_step.*")
    run_without_tensorflow(
        [BENCHMARK, "--models", "unet", "--precisions", "float32", "--batch-sizes", "2"]
        + ["--image-size", "32", "--width", "0.0625", "--steps", "3", "--warmup-steps", "1"]
        + ["--compile-cache", "", "--json", out]
        + ["--profile", "unet:float32:2", "--profile-dir", tmp_path / "profile"]
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
    assert len(list(dump.glob("*train_step*after_optimizations.txt"))) == 1
    # The traced steps were summarised: on a CPU, the host process ran XLA's work.
    profile = tmp_path / "profile" / "unet-float32-b2"
    summary = json.loads((profile / "summary.json").read_text())
    host = summary["/host:CPU"]
    assert 0 < host["busy_us"] <= host["span_us"] and host["top"]
    assert (profile / "summary.md").read_text().startswith("### /host:CPU")


def test_benchmark_refuses_a_malformed_profile_cell():
    proc = run_without_tensorflow([BENCHMARK, "--profile", "unet:fp16:12"], check=False)
    assert proc.returncode == 2
    assert "--profile takes MODEL:PRECISION:BATCH" in proc.stderr


def test_trace_summary_counts_busy_time_once_and_ranks_events():
    trace_summary = load_module(REPO_ROOT / "benchmarks" / "trace_summary.py")
    events = [
        dict(pid=1, ts=0, dur=10, name="sm90_xmma_fprop_implicit_gemm_bf16"),
        dict(pid=1, ts=5, dur=10, name="loop_convert_fusion"),  # overlaps on another stream
        dict(pid=1, ts=40, dur=20, name="sm90_xmma_fprop_implicit_gemm_bf16"),
        dict(pid=2, ts=0, dur=100, name="PjitFunction(train_step)"),
    ]
    summary = trace_summary.summarise(events, {1: "/device:GPU:0"}, top=1)
    gpu = summary["/device:GPU:0"]
    assert (gpu["span_us"], gpu["busy_us"], gpu["events"]) == (60, 35, 3)
    assert gpu["top"] == [
        dict(
            name="sm90_xmma_fprop_implicit_gemm_bf16", category="convolution", total_us=30, count=2
        )
    ]
    assert gpu["total_us_by_category"] == {"convolution": 30, "fusion": 10}
    assert summary["2"]["busy_us"] == 100  # a process without a name keeps its id


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
    compare = load_module(COMPARE)
    lines = compare.table(ours_record(queued_images_per_second=720.0), PEER)
    cells = [c.strip() for c in table_row(lines, "unet").split("|")[1:-1]]
    assert cells[3:6] == ["720.0", "600.0", "30.0"]
    assert cells[6:9] == ["bf16 autocast + channels_last", "800.0", "0.90"]
    assert not any(line.startswith("`*`") for line in lines)
    # The peer cell that none of ours pairs with still gets its row.
    assert "| 900.0 |" in table_row(lines, "segnet")


def test_table_marks_a_ratio_against_train_on_batch():
    compare = load_module(COMPARE)
    lines = compare.table(ours_record(), PEER)
    cells = [c.strip() for c in table_row(lines, "unet").split("|")[1:-1]]
    assert cells[3] == compare.MISSING and cells[8] == "0.75*"
    assert lines[-1].startswith("`*`: against our train_on_batch rate")
