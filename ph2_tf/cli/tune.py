"""`tune`: the published study's UNet/SegNet comparison again, with Keras Tuner, measured honestly.

`python tuner_search.py` is the same command as a script of its own (`main`). Parsing and
`--help` import neither TensorFlow nor Keras Tuner; `run` imports what the work needs.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shlex
import sys
import textwrap
import time
from pathlib import Path

from ph2_tf.cli.common import add_data_args, fail, positive_int
from ph2_tf.experiments.study import MODES, STUDY_GRID
from ph2_tf.training.profiles import PROFILES

# Wrapped here: the raw formatter that keeps the epilog's list as written keeps this as written.
DESCRIPTION = textwrap.fill(
    "Trains the published study's 15 UNet/SegNet configurations (or a Bayesian search over "
    "the same values) once per seed, scores the final weights on the test split, writes "
    "comparison tables and plots to results/<run-name>/, and publishes the best UNet and "
    "SegNet to --saved-models-dir only if they beat the served ones on the validation split. "
    "Run it again after an interruption, or after a seed failed, and it resumes where it "
    "stopped; a run folder keeps the settings it was started with.",
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
        "",
        "exit status: 0 done; 1 a seed failed or the search stopped (the error lines name what",
        "to do); 2 invalid arguments, or a run folder that does not fit them.",
    ]
)


def _run_name(text):
    """argparse type: a folder name, neither empty nor a path."""
    if text in ("", ".", "..") or os.sep in text or (os.altsep and os.altsep in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a folder name (it goes under --results-dir)"
        )
    return text


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
        type=positive_int,
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
        type=positive_int,
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
        type=positive_int,
        metavar="N",
        help="train every configuration for N epochs instead of its own (renames it)",
    )
    parser.add_argument(
        "--run-name",
        type=_run_name,
        help="outputs go to RESULTS_DIR/RUN_NAME (default: a name made of the settings, such as "
        "grid-small-seeds1-82b7cd, so that runs of other settings never share a folder)",
    )
    parser.add_argument(
        "--results-dir", default="results", help="parent of the run (default: %(default)s)"
    )
    parser.add_argument(
        "--saved-models-dir",
        default="saved_models",
        help="TF Serving model root the best models are published to (default: %(default)s)",
    )
    add_data_args(parser)
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
        "--selection-set",
        action="append",
        default=[],
        metavar="DIR",
        help="an ISIC-layout folder (images/, masks/) to choose on beside PH2 validation when "
        "publishing, e.g. ../shared/external/isic2017-select; repeatable: the first is the "
        "selection signal, the others guards, as for `export --if-better` (docs/models.md)",
    )
    parser.add_argument(
        "--force-export",
        action="store_true",
        help="publish each architecture's best model as a new served version even when the "
        "noise rule refuses it (by default only one that beats the served version by more "
        "than noise is published, as for `export --if-better`; docs/models.md)",
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
        0 when done; 1 when a seed or trial failed or the search stopped, each named on an
        `error:` line saying what to do; 2 for invalid arguments, a run folder whose settings
        or records do not fit them, a run folder in use, or missing data, each found before
        anything is trained or written.
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
    from ph2_tf.experiments.records import SearchSettings, default_run_name
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
    settings = SearchSettings(
        profile=PROFILES[args.profile],
        seeds=tuple(range(args.seeds)),
        run_dir=Path(args.results_dir),
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        grid=study.select(args.only, args.epochs) if args.mode == "grid" else None,
        precision=args.precision,
        checkpoints=not args.no_checkpoints,
        max_trials=args.max_trials,
    )
    # The default name is made of the settings, so the folder is named once they are made.
    run_name = args.run_name or default_run_name(settings)
    return dataclasses.replace(settings, run_dir=settings.run_dir / run_name)


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

    What can be checked first is checked before the run's folder is touched: the data (or, for
    `--report-only`, the records). Then the folder is locked, so that one process at a time
    works in it, and its recorded settings (`search.json`) are compared with these.

    Args:
        args: the parsed options.
        settings: `settings_from_args(args)`, or a variant of it (the tests train a smaller
            profile).

    Returns:
        The exit status (`run`).
    """
    from ph2_tf.experiments import records
    from ph2_tf.training import runs

    run_dir = settings.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        return fail(args, f"{run_dir} exists and is not a folder: choose another --run-name")
    try:
        problem = (
            _report_only_problem(args, settings) if args.report_only else _data_problem(settings)
        )
    except records.RecordError as e:
        problem = str(e)
    missing = [path for path in args.selection_set if not pathlib.Path(path, "images").is_dir()]
    if missing:
        problem = f"--selection-set {missing[0]}: no images/ folder there"
    if problem:
        return fail(args, problem)
    lock_dir = records.lock_dir(run_dir)
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return fail(args, f"cannot create {lock_dir} (check --results-dir): {e.strerror}")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(runs.locked(lock_dir))
        except runs.RunDirError:
            return fail(args, _in_use(run_dir, lock_dir / runs.LOCK_FILE))
        if not args.report_only:
            try:
                problem = _settings_problem(args, settings)
            except records.RecordError as e:
                problem = str(e)
            if problem:
                return fail(args, problem)
            records.write_search_settings(settings)
        log = stack.enter_context(open(run_dir / "run.log", "a"))
        stack.enter_context(contextlib.redirect_stdout(_Tee(sys.stdout, log)))
        stack.enter_context(contextlib.redirect_stderr(_Tee(sys.stderr, log)))
        return _tune(args, settings)


def _in_use(run_dir, lock_file):
    """The error of a run folder that another process holds, naming that process if it can."""
    try:
        holder = f"process {lock_file.read_text().strip()}"
    except OSError:
        holder = "another process"
    return (
        f"{run_dir} is in use by {holder} (another tune of this run): wait for it to end, "
        "or choose another --run-name"
    )


def _data_problem(settings):
    """Why the run cannot read PH2 (after preparing it if needed), or None."""
    from ph2_tf.data import arrays
    from tfds_ph2.ph2 import Ph2DataError

    try:
        arrays.load_arrays(
            "test",
            settings.profile.image_size,
            data_dir=settings.data_dir,
            manual_dir=settings.manual_dir,
        )
    except (FileNotFoundError, Ph2DataError) as e:
        return str(e)
    return None


def _settings_problem(args, settings):
    """Why the run folder cannot take a run of `settings`, or None.

    Its `search.json` must record the same settings (a grid may add configurations), and its
    records must be readable and of the same profile (which matters where there is no
    `search.json`: a folder given only records, or from before `search.json`).
    """
    from ph2_tf.experiments import records

    recorded = records.read_search_settings(settings.run_dir)
    run_records = records.load_records(settings.run_dir)  # each must be readable
    differences = [] if recorded is None else records.settings_differences(recorded, settings)
    if differences:
        return (
            f"{settings.run_dir} holds a run of other settings ({'; '.join(differences)}): "
            f"choose another --run-name, or repeat the settings its {records.SEARCH_FILE} records"
        )
    return _profile_mismatch(args, settings, run_records)


def _report_only_problem(args, settings):
    """Why `--report-only` cannot describe the run's records with these options, or None.

    The table's settings line comes from the options, so options that do not match the records
    would print a wrong setting beside right numbers.
    """
    from ph2_tf.experiments import records, report

    run_records = records.load_records(settings.run_dir, settings.grid)
    if not run_records:
        return (
            f"no records of the grid's configurations under {settings.run_dir / 'records'} "
            "(check --results-dir, --run-name, --only and --epochs)"
        )
    problem = _profile_mismatch(args, settings, run_records)
    if problem:
        return problem
    seeds = sorted({r["seed"] for r in run_records})
    if seeds[-1] >= len(settings.seeds):
        return f"the records of {settings.run_dir} hold seeds {seeds}: pass --seeds {seeds[-1] + 1}"
    try:
        report.test_split_size(settings)
    except FileNotFoundError as e:
        return str(e)
    return None


def _profile_mismatch(args, settings, run_records):
    """Why `run_records` were not trained with `settings.profile`, or None."""
    trained = [dict(t) for t in {tuple(r["profile"].items()) for r in run_records}]
    if trained in ([], [dataclasses.asdict(settings.profile)]):
        return None
    names = [name for name, p in PROFILES.items() if dataclasses.asdict(p) in trained]
    return (
        f"the records of {settings.run_dir} were trained with profile "
        f"{' and '.join(sorted(names)) or 'not in PROFILES'}, not {args.profile}: "
        "pass --profile, or choose another --run-name"
    )


def _tune(args, settings):
    from ph2_tf import provenance
    from ph2_tf.experiments import publishing, records, report

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
    errors = []
    if args.report_only:
        configurations = settings.grid
    else:
        configurations, errors = _search(settings)
        print(f"search wall time: {_duration(time.perf_counter() - start)}", flush=True)
    run_records = records.load_records(settings.run_dir, configurations, settings.seeds)
    if run_records:
        written = report.write_report(settings, configurations, run_records, args.profile)
    else:
        written = []
        errors = errors or [f"no seed of {settings.run_dir} has a record: nothing to report"]
        print("no record: no table or plot written", flush=True)
    if args.report_only:
        print("--report-only: nothing trained or published", flush=True)
    elif args.no_export:
        print("--no-export: nothing published", flush=True)
    elif errors:
        print("nothing published: the run is not complete", flush=True)
    else:
        publishing.publish_best(
            settings,
            run_records,
            args.saved_models_dir,
            force=args.force_export,
            selection_dirs=args.selection_set,
        )
    if written:
        print((settings.run_dir / report.MARKDOWN_TABLE).read_text(), flush=True)
        tables = [str(path) for path in written if path.suffix != ".png"]
        plots = [str(path) for path in written if path.suffix == ".png"]
        print(f"tables: {', '.join(tables)}", flush=True)
        print(f"plots: {', '.join(plots)}", flush=True)
    print(f"total wall time: {_duration(time.perf_counter() - start)}", flush=True)
    for error in errors:
        fail(args, error, status=1)
    return 1 if errors else 0


def _search(settings):
    """Runs the tuner.

    Returns:
        `(configurations, errors)`: the configurations to report, in row order, and one line
        per seed or trial that failed, saying what to do.
    """
    from ph2_tf.experiments import tuning

    if settings.grid is not None:
        pending = tuning.pending_configurations(settings)
        recorded = len(settings.grid) - len(pending)
        if recorded:
            print(
                f"{recorded} of {len(settings.grid)} configurations have every seed recorded: "
                + (f"training the other {len(pending)}" if pending else "nothing to train"),
                flush=True,
            )
        if not pending:
            return settings.grid, []
    tuner = tuning.make_tuner(settings)
    failures = tuner.hypermodel.failures
    try:
        tuner.search()
    except RuntimeError as e:
        if not failures:
            raise
        # Keras Tuner's limit of consecutive failed trials: the next would likely fail alike.
        print(f"the search stopped early: {str(e).splitlines()[0]}", flush=True)
    if settings.grid is None:  # a grid's summary is its comparison table
        tuner.results_summary(num_trials=5)
    log = settings.run_dir / "run.log"
    errors = [
        f"{f.name} seed {f.seed} failed: {f.reason} (details in {log}); run the same command "
        f"again to train it, first removing {f.seed_dir} if the error is in its files"
        for f in failures
    ]
    failed_names = {f.name for f in failures}
    for trial in tuning.failed_trials(tuner):
        config = tuner.hypermodel.configuration(trial.hyperparameters)
        if config.name not in failed_names:  # failed before any seed trained, e.g. building
            reason = (trial.message or "").strip().splitlines() or ["no message"]
            errors.append(
                f"trial {config.name} failed before training: {reason[-1]} (details in {log}); "
                "run the same command again to retry it"
            )
    configurations = settings.grid or tuning.searched_configurations(tuner)
    return configurations, errors


def _duration(seconds):
    """`"26 min 50 s"`, or `"42 s"` under a minute."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
