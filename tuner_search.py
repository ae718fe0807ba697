"""Reproduce the PH2 study's UNet/SegNet comparison with Keras Tuner, measured honestly.

With no arguments: the study's 15 configurations, on the `full` profile (the study's scale) when
an accelerator is present and on the CPU-sized `small` profile otherwise, PH2 read from
`PH2_MANUAL_DIR` (or the TFDS default manual dir), outputs in `results/grid-small-seeds1/`
and the best model of each architecture published to `saved_models/` as a new version if it
beats the served one on the validation split. Run it again after an interruption and it
resumes where it stopped.

    python tuner_search.py --seeds 3
    python tuner_search.py --mode search --max-trials 20 --profile full
"""

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

from ph2_tf import provenance
from ph2_tf.data import arrays
from ph2_tf.experiments import tuning
from ph2_tf.training import accelerators
from ph2_tf.training.config import PRECISIONS
from ph2_tf.training.profiles import PROFILES
from tfds_ph2.ph2 import Ph2DataError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--mode",
        choices=["grid", "search"],
        default="grid",
        help="grid: exactly the study's 15 configurations; search: Bayesian optimization "
        "over the same model/loss/learning-rate/epochs values",
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds per configuration")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="default: full on a GPU or TPU, small on a CPU (the full grid would take days there)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="Keras dtype policy (the study trained in float32)",
    )
    parser.add_argument("--max-trials", type=int, default=20, help="trial budget of --mode search")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="restrict the grid to these configuration names (e.g. unet-bce-lr0.0001-e30)",
    )
    parser.add_argument("--epochs", type=int, help="override every configuration's epochs")
    parser.add_argument("--run-name", help="results/<run-name> (default: <mode>-<profile>-seedsN)")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--saved-models-dir", default="saved_models")
    parser.add_argument("--data-dir", help="TFDS data dir (default: TFDS's)")
    parser.add_argument("--manual-dir", help="folder holding PH2 (default: $PH2_MANUAL_DIR)")
    parser.add_argument(
        "--no-export", action="store_true", help="do not publish the best models at all"
    )
    parser.add_argument(
        "--no-checkpoints",
        action="store_true",
        help="write no per-seed best checkpoint or per-epoch backup (the final weights are "
        "scored either way; a seed cut off mid-way then restarts from its first epoch). At "
        "full size each write is about 0.4 GB, beside GPU epochs of about a second",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rewrite the tables and plots of --mode grid from the run's records "
        "(masks.png only where the models are present), publish nothing",
    )
    parser.add_argument(
        "--force-export",
        action="store_true",
        help="publish each architecture's best model as a new served version even when it is "
        "not better than the served one on the validation split (the default publishes only "
        "a better one)",
    )
    return parser.parse_args(argv)


def selected_grid(args):
    grid = tuning.STUDY_GRID
    if args.only:
        known = {c.name for c in grid}
        unknown = sorted(set(args.only) - known)
        if unknown:
            raise SystemExit(f"--only: unknown configurations {unknown}; known: {sorted(known)}")
        grid = tuple(c for c in grid if c.name in args.only)
    if args.epochs is not None:
        grid = tuple(dataclasses.replace(c, epochs=args.epochs) for c in grid)
    return grid


class _Tee:
    """Writes to the terminal and to the run's log file."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
            stream.flush()

    def flush(self):
        for stream in self.streams:
            stream.flush()

    def isatty(self):
        return False


def choose_profile(args):
    """Sets `args.profile` when not given.

    Returns:
        One line saying which profile was chosen and why.
    """
    if args.profile is not None:
        return f"profile {args.profile}: chosen with --profile"
    count = accelerators.accelerator_count()
    args.profile = "full" if count else "small"
    why = (
        f"{count} accelerator(s) found: the study's scale"
        if count
        else "no GPU or TPU found, and the full profile would take days on a CPU"
    )
    return f"profile {args.profile}: {why} (choose with --profile)"


def settings_from_args(args):
    for option, value in (
        ("seeds", args.seeds),
        ("epochs", args.epochs),
        ("max-trials", args.max_trials),
    ):
        if value is not None and value < 1:
            raise SystemExit(f"--{option} must be at least 1, received {value}")
    args.profile_note = choose_profile(args)
    run_name = args.run_name or f"{args.mode}-{args.profile}-seeds{args.seeds}"
    return tuning.SearchSettings(
        profile=PROFILES[args.profile],
        seeds=tuple(range(args.seeds)),
        run_dir=Path(args.results_dir) / run_name,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        grid=selected_grid(args) if args.mode == "grid" else None,
        precision=args.precision,
        checkpoints=not args.no_checkpoints,
    )


def main(argv=None):
    args = parse_args(argv)
    settings = settings_from_args(args)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with (
        open(settings.run_dir / "run.log", "a") as log,
        contextlib.redirect_stdout(_Tee(sys.stdout, log)),
        contextlib.redirect_stderr(_Tee(sys.stderr, log)),
    ):
        run(args, settings)


def run(args, settings):
    profile = settings.profile
    print(f"$ python {' '.join(sys.argv)}", flush=True)
    print(
        f"ph2-seg tuner: mode={args.mode} profile={args.profile} ({profile.image_size}x"
        f"{profile.image_size}, width x{profile.width}, batch {profile.batch_size}) "
        f"seeds={list(settings.seeds)} -> {settings.run_dir}",
        flush=True,
    )
    print(args.profile_note, flush=True)
    print(f"provenance: {json.dumps(provenance.collect())}", flush=True)
    start = time.perf_counter()
    if args.report_only:
        if settings.grid is None:
            raise SystemExit("--report-only needs --mode grid (search trials live in the tuner)")
        tuning.write_report(settings, settings.grid, args.profile)
        print((settings.run_dir / "comparison.md").read_text(), flush=True)
        return
    try:  # Prepares the dataset if needed: missing data ends the run here, with one message.
        arrays.load_arrays(
            "test", profile.image_size, data_dir=settings.data_dir, manual_dir=settings.manual_dir
        )
    except (FileNotFoundError, Ph2DataError) as e:
        raise SystemExit(f"tuner_search.py: error: {e}") from None
    tuner = tuning.make_tuner(settings, mode=args.mode, max_trials=args.max_trials)
    tuner.search()
    tuner.results_summary(num_trials=5)
    print(f"search wall time: {time.perf_counter() - start:.0f} s", flush=True)

    configurations = settings.grid or tuning.searched_configurations(tuner)
    records = tuning.write_report(settings, configurations, args.profile)
    if args.no_export:
        print("--no-export: nothing published", flush=True)
    else:
        tuning.publish_best(settings, records, args.saved_models_dir, force=args.force_export)
    print((settings.run_dir / "comparison.md").read_text(), flush=True)
    print(f"total wall time: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
