"""`tune`: the published study's UNet/SegNet comparison again, with Keras Tuner, measured honestly.

`python tuner_search.py` is the same command as a script of its own (`main`). Parsing and
`--help` import neither TensorFlow nor Keras Tuner; `run` imports what the work needs.
"""

import argparse
import contextlib
import dataclasses
import json
import shlex
import sys
import textwrap
import time
from pathlib import Path

from ph2_tf.cli.common import fail
from ph2_tf.experiments.study import MODES, STUDY_GRID
from ph2_tf.training.profiles import PROFILES

# Wrapped here: the raw formatter that keeps the epilog's list as written keeps this as written.
DESCRIPTION = textwrap.fill(
    "Trains the published study's 15 UNet/SegNet configurations (or a Bayesian search over "
    "the same values) once per seed, scores the final weights on the test split, writes "
    "comparison tables and plots to results/<run-name>/, and publishes the best UNet and "
    "SegNet to --saved-models-dir only if they beat the served ones on the validation split. "
    "Run it again after an interruption and it resumes where it stopped.",
    width=80,
)
EPILOG = "\n".join(
    [
        "configurations of the study's grid (names for --only):",
        *(f"  {config.name}" for config in STUDY_GRID),
        "",
        "examples:",
        "  %(prog)s --seeds 3",
        "  %(prog)s --only unet-bce-lr0.0001-e30 --epochs 2    # a smoke run",
        "  %(prog)s --mode search --max-trials 20 --profile full",
        "  %(prog)s --report-only --seeds 2 --run-name reference-grid-small-seeds2",
    ]
)


def _at_least_one(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, received {value}")
    return value


def add_arguments(parser):
    """Adds the options of `tune` to `parser`."""
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="grid",
        help="grid: exactly the study's configurations; search: Bayesian optimization over "
        "the same model/loss/learning-rate/epochs values (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds",
        type=_at_least_one,
        default=1,
        metavar="N",
        help="seeds per configuration (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="input size, width and batch (default: full on a GPU or TPU, small on a CPU, "
        "where the full grid would take days)",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        help="Keras dtype policy: float32 (the study's) or mixed_bfloat16 (default: %(default)s)",
    )
    parser.add_argument(
        "--max-trials",
        type=_at_least_one,
        default=20,
        metavar="N",
        help="trial budget of --mode search (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[config.name for config in STUDY_GRID],
        metavar="NAME",
        help="restrict the grid to these configurations (names listed below)",
    )
    parser.add_argument(
        "--epochs",
        type=_at_least_one,
        metavar="N",
        help="train every configuration for N epochs instead of its own (renames it)",
    )
    parser.add_argument(
        "--run-name", help="outputs go to RESULTS_DIR/RUN_NAME (default: <mode>-<profile>-seedsN)"
    )
    parser.add_argument(
        "--results-dir", default="results", help="parent of the run (default: %(default)s)"
    )
    parser.add_argument(
        "--saved-models-dir",
        default="saved_models",
        help="TF Serving model root the best models are published to (default: %(default)s)",
    )
    parser.add_argument("--data-dir", help="TFDS data directory (default: TFDS's)")
    parser.add_argument(
        "--manual-dir",
        help="folder holding PH2, read if the dataset is not prepared yet "
        "(default: $PH2_MANUAL_DIR)",
    )
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
        "not better than the served one on the validation split (by default only a better "
        "one is published)",
    )


def add_parser(commands):
    """Adds the `tune` command to `commands`, the parent parser's subparsers."""
    tune = commands.add_parser(
        "tune",
        help="the study's UNet/SegNet grid (or a search) with Keras Tuner; tables, plots, "
        "publishing",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(tune)


def standalone_parser(script="tuner_search.py"):
    """The parser of `tune` as a program of its own, `python <script>`."""
    parser = argparse.ArgumentParser(
        prog=f"python {script}",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    # `fail` prints "<prog> <command>: error: ...": here "python tuner_search.py: error: ...".
    parser.set_defaults(prog="python", command=script)
    return parser


def main(argv=None, script="tuner_search.py"):
    """`python tuner_search.py`: parses `argv` (`sys.argv[1:]` when None) and runs `tune`.

    Returns:
        The exit status.
    """
    return run(standalone_parser(script).parse_args(argv))


def run(args):
    """`tune` command: trains, reports and publishes, or only reports (`--report-only`).

    Returns:
        0; 2 for invalid arguments, records that do not match them (`--report-only`) or
        missing data, each found before anything is trained.
    """
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        return fail(args, e)
    return run_search(args, settings)


def choose_profile(args):
    """Sets `args.profile` when not given.

    Returns:
        One line saying which profile was chosen and why.
    """
    from ph2_tf.training import accelerators

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
    """The run's `SearchSettings`; sets `args.profile` and `args.profile_note`.

    Raises:
        ValueError: options that contradict each other, or an unknown precision.
    """
    from ph2_tf.experiments import study
    from ph2_tf.experiments.records import SearchSettings
    from ph2_tf.training.config import PRECISIONS

    if args.mode != "grid" and (args.only or args.epochs is not None):
        raise ValueError("--only and --epochs choose the configurations of --mode grid")
    if args.mode != "grid" and args.report_only:
        raise ValueError("--report-only needs --mode grid (search trials live in the tuner)")
    if args.precision not in PRECISIONS:
        raise ValueError(
            f"--precision must be one of {', '.join(PRECISIONS)}, received {args.precision!r}"
        )
    args.profile_note = choose_profile(args)
    run_name = args.run_name or f"{args.mode}-{args.profile}-seeds{args.seeds}"
    return SearchSettings(
        profile=PROFILES[args.profile],
        seeds=tuple(range(args.seeds)),
        run_dir=Path(args.results_dir) / run_name,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        grid=study.select(args.only, args.epochs) if args.mode == "grid" else None,
        precision=args.precision,
        checkpoints=not args.no_checkpoints,
    )


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


def run_search(args, settings):
    """The work of `tune` once its settings are made, its output copied to `run.log`.

    Args:
        args: the parsed options.
        settings: `settings_from_args(args)`, or a variant of it (the tests train a smaller
            profile).

    Returns:
        The exit status.
    """
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with (
        open(settings.run_dir / "run.log", "a") as log,
        contextlib.redirect_stdout(_Tee(sys.stdout, log)),
        contextlib.redirect_stderr(_Tee(sys.stderr, log)),
    ):
        return _tune(args, settings)


def _tune(args, settings):
    from ph2_tf import provenance
    from ph2_tf.data import arrays
    from ph2_tf.experiments import publishing, records, report
    from tfds_ph2.ph2 import Ph2DataError

    start = time.perf_counter()
    profile = settings.profile
    print(f"$ {shlex.join(sys.orig_argv)}", flush=True)
    print(
        f"ph2-seg tune: mode={args.mode} profile={args.profile} ({profile.image_size}x"
        f"{profile.image_size}, width x{profile.width}, batch {profile.batch_size}) "
        f"seeds={list(settings.seeds)} -> {settings.run_dir}",
        flush=True,
    )
    print(args.profile_note, flush=True)
    print(f"provenance: {json.dumps(provenance.collect())}", flush=True)
    if args.report_only:
        configurations = settings.grid
        run_records = records.load_records(settings.run_dir, configurations)
        mismatch = _report_mismatch(args, settings, run_records)
        if mismatch:
            return fail(args, mismatch)
    else:
        try:  # Prepares the dataset if needed: missing data ends the run here, with one line.
            arrays.load_arrays(
                "test",
                profile.image_size,
                data_dir=settings.data_dir,
                manual_dir=settings.manual_dir,
            )
        except (FileNotFoundError, Ph2DataError) as e:
            return fail(args, e)
        from ph2_tf.experiments import tuning  # Keras Tuner: only when training

        tuner = tuning.make_tuner(settings, mode=args.mode, max_trials=args.max_trials)
        tuner.search()
        tuner.results_summary(num_trials=5)
        print(f"search wall time: {_duration(time.perf_counter() - start)}", flush=True)
        configurations = settings.grid or tuning.searched_configurations(tuner)
        run_records = records.load_records(settings.run_dir, configurations)
    written = report.write_report(settings, configurations, run_records, args.profile)
    if args.report_only:
        print("--report-only: nothing trained or published", flush=True)
    elif args.no_export:
        print("--no-export: nothing published", flush=True)
    else:
        publishing.publish_best(
            settings, run_records, args.saved_models_dir, force=args.force_export
        )
    print((settings.run_dir / report.MARKDOWN_TABLE).read_text(), flush=True)
    tables = [str(path) for path in written if path.suffix != ".png"]
    plots = [str(path) for path in written if path.suffix == ".png"]
    print(f"tables: {', '.join(tables)}", flush=True)
    print(f"plots: {', '.join(plots)}", flush=True)
    print(f"total wall time: {_duration(time.perf_counter() - start)}", flush=True)
    return 0


def _report_mismatch(args, settings, run_records):
    """Why `--report-only` cannot describe `run_records` with these options, or None.

    The table's settings line comes from the options, so options that do not match the records
    would print a wrong setting beside right numbers.
    """
    if not run_records:
        return (
            f"no records of the grid's configurations under {settings.run_dir / 'records'} "
            "(check --results-dir, --run-name, --only and --epochs)"
        )
    trained = [dict(t) for t in {tuple(r["profile"].items()) for r in run_records}]
    if trained != [dataclasses.asdict(settings.profile)]:
        names = [name for name, p in PROFILES.items() if dataclasses.asdict(p) in trained]
        return (
            f"the records of {settings.run_dir} were trained with profile "
            f"{' and '.join(sorted(names)) or 'not in PROFILES'}, not {args.profile}: "
            "pass --profile"
        )
    seeds = sorted({r["seed"] for r in run_records})
    if seeds[-1] >= len(settings.seeds):
        return f"the records of {settings.run_dir} hold seeds {seeds}: pass --seeds {seeds[-1] + 1}"
    return None


def _duration(seconds):
    """`"26 min 50 s"`, or `"42 s"` under a minute."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
