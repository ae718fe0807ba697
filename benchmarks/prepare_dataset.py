"""Times preparing each `ph2` config from the real data: wall time, peak memory, size on disk.

    .venv/bin/python benchmarks/prepare_dataset.py [--manual_dir ../shared/ph2] [--configs ...]

Each config is prepared in a fresh Python process into a temporary data dir, so that its peak
resident memory (`ru_maxrss`) and its time include importing TensorFlow and nothing else's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = ("original", "resized_256", "resized_128")


def prepare_one(config: str, manual_dir: str, data_dir: str) -> dict:
    """Prepares one config in this process and returns its measurements."""
    start = time.perf_counter()
    import tensorflow_datasets as tfds

    import tfds_ph2  # noqa: F401  (registers `ph2`)

    imported = time.perf_counter()
    builder = tfds.builder(f"ph2/{config}", data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    done = time.perf_counter()
    files = [p for p in Path(builder.data_dir).rglob("*") if p.is_file()]
    return {
        "config": config,
        "examples": builder.info.splits.total_num_examples,
        "import_s": imported - start,
        "prepare_s": done - imported,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "disk_mib": sum(p.stat().st_size for p in files) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manual_dir", default=os.environ.get("PH2_MANUAL_DIR", "../shared/ph2"))
    parser.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # config to prepare in this process
    parser.add_argument("--data_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    manual_dir = str(Path(args.manual_dir).expanduser().resolve())
    if args.child:
        print(json.dumps(prepare_one(args.child, manual_dir, args.data_dir)))
        return

    repo = Path(__file__).resolve().parent.parent
    # The child imports `tfds_ph2` from this checkout even when the project is not installed.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
    }
    results = []
    for config in args.configs:
        with tempfile.TemporaryDirectory(prefix="ph2_bench_") as data_dir:
            start = time.perf_counter()
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    config,
                    "--manual_dir",
                    manual_dir,
                    "--data_dir",
                    data_dir,
                ],
                capture_output=True,
                text=True,
                check=False,
                env=env,
            )
            if child.returncode:
                sys.exit(f"preparing {config} failed:\n{child.stderr[-4000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            result["wall_s"] = time.perf_counter() - start
            results.append(result)

    print(f"PH2 from {manual_dir}, {os.cpu_count()} CPUs")
    print("| config | examples | wall (s) | prepare (s) | peak RSS (MiB) | on disk (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['config']} | {r['examples']} | {r['wall_s']:.1f} | {r['prepare_s']:.1f} |"
            f" {r['peak_rss_mib']:.0f} | {r['disk_mib']:.1f} |"
        )


if __name__ == "__main__":
    main()
