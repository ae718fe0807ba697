"""Trains stages of a declared experiment on the GPU machine and packs the runs to bring back.

    KERAS_BACKEND=jax python3 benchmarks/device/run_experiment.py \\
        configs/experiments/NAME.json --stage base --data-dir .device_data --out "$OUT"

An experiment (`configs/experiments/`) is declared and committed before its runs, and judged
afterwards on a machine with TensorFlow by `soup --config` and `export --config --if-better`,
which read the runs from `<runs root>/<recipe name>/<run name>/`. This trains those runs where
the GPU is, with what that machine has and can return:

- **Keras on JAX, no TensorFlow.** Each run is `python -m ph2_tf train --config … --stage …
  --seed k`, exactly as on the CPU; a stage's seeds train at once, one process each, sharing
  the GPU (the compact models use little of it; their augmentation runs on the CPU cores). The
  stages go in the order given, so a stage can start from one trained earlier in the call. A
  stage that starts from a published version is refused before anything trains: reading a
  SavedModel needs TensorFlow.
- **A time limit.** Every run is stopped at `--time-limit` seconds after the first started. A
  run stopped early comes back without its models (it is no candidate: its recipe says how many
  epochs), with its log showing how far it got and how fast.
- **What a call returns** is at most 8 files of 16 MiB each. All runs go into one tar,
  `<recipe name>.tar`, cut into parts of `PART_BYTES` (`<recipe name>.tar.00`, `.01`, …), with
  `best.keras` and `last.keras` saved without the optimizer's state (a third of the size: all
  that soups and export read). If the parts would be more than `--max-parts`, the archive is
  made again without the `last.keras` files, and says so. Weights do not compress, so the tar
  is not gzipped.

Unpack on the machine with TensorFlow into the runs root, then judge as usual:

    cat <files_at>/NAME.tar.* | tar -xf - -C runs

With `--resume-dir` (a folder holding an earlier call's parts), the runs that finished there are
unpacked first and not trained again; the others train again from their first epoch.

Each run folder gets `provenance.json` (commit, packages, backend, GPU, precision) and
`train.out`, what its process printed. The summary printed at the end gives, per run, its
epochs, its best `val_jaccard` and its seconds per epoch in this call.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PART_BYTES = 15 * 2**20  # under the 16 MiB a returned file may have
MAX_PARTS = 7  # a call returns 8 files: the parts and this script's log
STOP_GRACE_SECONDS = 30  # between SIGTERM and SIGKILL for a run past the time limit
OUTPUT_FILE = "train.out"
PROVENANCE_FILE = "provenance.json"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a recipe, e.g. configs/experiments/NAME.json")
    parser.add_argument(
        "--stage", action="append", required=True, help="a stage to train; repeat, in order"
    )
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2 prepared")
    parser.add_argument("--out", required=True, help="folder for the parts ($OUT)")
    parser.add_argument("--work", default="/tmp/experiment", help="runs root on this machine")
    parser.add_argument(
        "--time-limit", type=float, default=500.0, help="seconds for every stage together"
    )
    parser.add_argument("--max-parts", type=int, default=MAX_PARTS, help="parts the call returns")
    parser.add_argument("--resume-dir", help="a folder with an earlier call's parts")
    return parser.parse_args(argv)


def plan(recipe, stage_names):
    """The stages to train, checked before anything trains.

    Raises:
        ValueError: a stage starts from a published version, or from a stage that is neither
            trained earlier in the call nor given.
    """
    stages = [recipe.stage(name) for name in stage_names]
    for index, stage in enumerate(stages):
        if stage.init_from_version is not None:
            raise ValueError(
                f"{recipe.path}: stage {stage.name!r} starts from the published version "
                f"{stage.init_from_version}, whose SavedModel needs TensorFlow to read; train it "
                "on a machine with TensorFlow"
            )
        if stage.init_from is not None and stage.init_from not in stage_names[:index]:
            raise ValueError(
                f"{recipe.path}: stage {stage.name!r} starts from stage {stage.init_from!r}: "
                f"pass --stage {stage.init_from} before --stage {stage.name}"
            )
    return stages


def resume(recipe, stages, resume_dir, runs_root):
    """Unpacks an earlier call's finished runs of `stages` under `runs_root`.

    Returns:
        The names of the runs unpacked.
    """
    from ph2_tf.training import recipes
    from ph2_tf.training.runs import RunDirError, run_state

    parts = sorted(pathlib.Path(resume_dir).glob(f"{recipe.name}.tar.[0-9][0-9]"))
    if not parts:
        return []
    unpacked = pathlib.Path(runs_root) / "resumed"
    unpacked.mkdir(parents=True, exist_ok=True)
    joined = unpacked / f"{recipe.name}.tar"
    with open(joined, "wb") as whole:
        for part in parts:
            whole.write(part.read_bytes())
    with tarfile.open(joined) as tar:
        tar.extractall(unpacked, filter="data")
    names = []
    for stage in stages:
        for cfg in recipes.stage_configs(recipe, stage.name, unpacked):
            try:
                state = run_state(cfg)
            except RunDirError:  # the recipe changed since: that run is not this recipe's
                state = "of another config"
            if state == "finished":
                target = recipes.run_dir(recipe, stage.name, cfg.seed, runs_root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(cfg.out_dir, target)
                names.append(target.name)
            elif state != "new":
                name = recipes.run_name(stage, cfg.seed)
                print(f"{name}: {state} in the earlier call; trains again from its start")
    shutil.rmtree(unpacked)
    return names


def train_stage(args, recipe, stage, deadline):
    """Trains every seed of `stage` at once; returns `{seed: exit status}` (None: stopped)."""
    from ph2_tf.training import recipes

    processes = {}
    for seed in stage.seeds:
        out_dir = recipes.run_dir(recipe, stage.name, seed, args.work)
        out_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "ph2_tf", "train", "--config", args.config,
            "--stage", stage.name, "--seed", str(seed),
            "--runs-root", args.work, "--data-dir", args.data_dir,
        ]  # fmt: skip
        output = open(out_dir / OUTPUT_FILE, "a")  # noqa: SIM115 (the child writes it)
        processes[seed] = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
        output.close()
        print(f"== {time.strftime('%H:%M:%S', time.gmtime())} {stage.name} seed {seed}")
    statuses = {}
    for seed, process in processes.items():
        try:
            statuses[seed] = process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            statuses[seed] = None
    return statuses


def summarise(recipe, stage, statuses, seconds, runs_root, resumed):
    """One line per run: how it ended, its epochs, best val_jaccard and seconds per epoch."""
    from ph2_tf.training import recipes
    from ph2_tf.training.runs import read_log, run_state

    lines = []
    for cfg in recipes.stage_configs(recipe, stage.name, runs_root):
        name = recipes.run_name(stage, cfg.seed)
        status = statuses[cfg.seed]
        log = read_log(cfg.out_dir)
        epochs = len(log.get("epoch", []))
        line = f"{name}: {run_state(cfg)}, {epochs} of {cfg.epochs} epochs"
        scores = log.get("val_jaccard", [])
        if scores:
            best = max(scores)
            line += f", best val_jaccard {best:.4f} at epoch {scores.index(best) + 1}"
        if name in resumed:
            line += ", trained in an earlier call"
        elif status:
            line += f", failed (exit status {status}): see its {OUTPUT_FILE}"
        else:
            line += ", stopped at the time limit" if status is None else ""
            line += (
                f", {seconds / epochs:.2f} s per epoch with start and compile"
                if epochs
                else f", no epoch in {seconds:.0f} s"
            )
        lines.append(line)
    return lines


def prepare_run(run_dir, finished, provenance):
    """Leaves in a run folder only what comes back: its records, and its models if it finished
    (without the optimizer's slots: all that soups and export read)."""
    import json

    import ph2_tf.models  # noqa: F401 (registers the layers the models hold)
    from ph2_tf.training.runs import (
        BEST_MODEL_FILE,
        CONFIG_FILE,
        LAST_MODEL_FILE,
        LOG_FILE,
        load_keras_model,
    )

    (run_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    models = (BEST_MODEL_FILE, LAST_MODEL_FILE) if finished else ()
    for path in run_dir.iterdir():  # a backup, TensorBoard logs, a write cut off by the limit
        if path.name not in (CONFIG_FILE, LOG_FILE, OUTPUT_FILE, PROVENANCE_FILE, *models):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    for name in models:
        path = run_dir / name
        if path.exists():
            lighter = path.with_suffix(".lighter.keras")
            load_keras_model(path).save(lighter)
            os.replace(lighter, path)


def pack(runs_root, recipe_name, out_dir, max_parts):
    """Writes `<recipe_name>.tar.NN` parts into `out_dir`; returns their paths.

    Drops the `last.keras` files if the parts would be more than `max_parts`.

    Raises:
        ValueError: still more than `max_parts` parts without them.
    """
    from ph2_tf.training.runs import LAST_MODEL_FILE

    archive = pathlib.Path(runs_root) / f"{recipe_name}.tar"

    def without_last(member):
        return None if member.name.endswith(f"/{LAST_MODEL_FILE}") else member

    for keep_last in (True, False):
        with tarfile.open(archive, "w") as tar:
            tar.add(
                pathlib.Path(runs_root) / recipe_name,
                arcname=recipe_name,
                filter=None if keep_last else without_last,
            )
        size = archive.stat().st_size
        if -(-size // PART_BYTES) <= max_parts:
            break
        if keep_last:
            print(f"{size / 2**20:.0f} MiB is over {max_parts} parts: packed without last.keras")
    else:
        archive.unlink()
        raise ValueError(f"the runs' best.keras files alone take more than {max_parts} parts")
    parts = []
    with open(archive, "rb") as whole:
        while chunk := whole.read(PART_BYTES):
            parts.append(pathlib.Path(out_dir) / f"{archive.name}.{len(parts):02d}")
            parts[-1].write_bytes(chunk)
    archive.unlink()
    return parts


def main(argv=None):
    args = parse_args(argv)
    from ph2_tf import provenance
    from ph2_tf.training import recipes

    started = time.monotonic()
    try:
        recipe = recipes.load(args.config)
        stages = plan(recipe, args.stage)
    except ValueError as error:  # RecipeError is one
        print(f"run_experiment: error: {error}", file=sys.stderr)
        return 2
    args.work = str(pathlib.Path(args.work).resolve())
    args.data_dir = str(pathlib.Path(args.data_dir).resolve())
    resumed = resume(recipe, stages, args.resume_dir, args.work) if args.resume_dir else []
    print(f"resumed: {len(resumed)} finished runs from an earlier call")
    deadline = started + args.time_limit
    all_finished = True
    for index, stage in enumerate(stages):
        stage_start = time.monotonic()
        statuses = train_stage(args, recipe, stage, deadline)
        seconds = time.monotonic() - stage_start
        print("\n".join(summarise(recipe, stage, statuses, seconds, args.work, resumed)))
        if any(status != 0 for status in statuses.values()):
            all_finished = False
            later = [s.name for s in stages[index + 1 :]]
            if later:
                print(f"not trained: {', '.join(later)}, since {stage.name} did not finish")
            break

    from ph2_tf.training.runs import run_state

    record = provenance.collect()
    for stage in stages:
        for cfg in recipes.stage_configs(recipe, stage.name, args.work):
            run_dir = pathlib.Path(cfg.out_dir)
            if run_dir.exists() and run_dir.name not in resumed:
                prepare_run(run_dir, run_state(cfg) == "finished", record)
    try:
        parts = pack(args.work, recipe.name, args.out, args.max_parts)
    except ValueError as error:
        print(f"run_experiment: error: {error}", file=sys.stderr)
        return 1
    print(f"packed: {', '.join(p.name for p in parts)} after {time.monotonic() - started:.0f} s")
    return 0 if all_finished else 3


if __name__ == "__main__":
    sys.exit(main())
