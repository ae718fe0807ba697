"""Reproduce the PH2 study's UNet/SegNet comparison with Keras Tuner, measured honestly.

With no arguments: the study's 15 configurations on the `small` profile, PH2 read from
`PH2_MANUAL_DIR` (or the TFDS default manual dir), outputs in `results/grid-small-seeds1/`
and the best model of each architecture exported to `saved_models/`. Run it again after an
interruption and it resumes where it stopped.

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

import keras
import numpy as np

from ph2_tf import data, export, report, train, tuning
from ph2_tf.heads import lesion_probability
from ph2_tf.profiles import PROFILES


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
    parser.add_argument("--profile", choices=sorted(PROFILES), default="small")
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
    parser.add_argument("--no-export", action="store_true", help="skip exporting the best models")
    return parser.parse_args(argv)


def selected_grid(args):
    grid = tuning.STUDY_GRID
    if args.only:
        known = {c.name for c in grid}
        unknown = sorted(set(args.only) - known)
        if unknown:
            raise SystemExit(f"--only: unknown configurations {unknown}; known: {sorted(known)}")
        grid = tuple(c for c in grid if c.name in args.only)
    if args.epochs:
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


def settings_from_args(args):
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be at least 1, received {args.seeds}")
    run_name = args.run_name or f"{args.mode}-{args.profile}-seeds{args.seeds}"
    return tuning.SearchSettings(
        profile=PROFILES[args.profile],
        seeds=tuple(range(args.seeds)),
        run_dir=Path(args.results_dir) / run_name,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        grid=selected_grid(args) if args.mode == "grid" else None,
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
    print(
        f"ph2-seg tuner: mode={args.mode} profile={args.profile} ({profile.image_size}x"
        f"{profile.image_size}, width x{profile.width}, batch {profile.batch_size}) "
        f"seeds={list(settings.seeds)} -> {settings.run_dir}",
        flush=True,
    )
    start = time.perf_counter()
    tuner = tuning.make_tuner(settings, mode=args.mode, max_trials=args.max_trials)
    tuner.search()
    tuner.results_summary(num_trials=5)
    print(f"search wall time: {time.perf_counter() - start:.0f} s", flush=True)

    configurations = settings.grid or _searched_configurations(tuner)
    records = report.load_records(settings.run_dir)
    records = [r for r in records if r["name"] in {c.name for c in configurations}]
    rows = report.summarize(records, configurations, tuning.STUDY_SCORES)
    run_dir = settings.run_dir
    report.write_csv(rows, run_dir / "comparison.csv")
    test_images = data.load_examples(
        "test",
        data.tfds_config_for(settings.profile.image_size),
        data_dir=settings.data_dir,
        manual_dir=settings.manual_dir,
    ).cardinality()
    report.write_markdown(
        rows, run_dir / "comparison.md", _settings_line(args, settings), test_images
    )
    report.plot_comparison(rows, run_dir / "comparison.png")
    report.plot_curves(records, run_dir / "curves.png")

    best = best_per_model(records)
    _plot_masks(settings, best)
    if not args.no_export:
        for model_name, record in best.items():
            _export(settings, record, args.saved_models_dir, f"ph2_{model_name}")
    print((run_dir / "comparison.md").read_text(), flush=True)
    print(f"total wall time: {time.perf_counter() - start:.0f} s", flush=True)


def _settings_line(args, settings):
    p = settings.profile
    return (
        f"Profile `{args.profile}`: {p.image_size}×{p.image_size} inputs, "
        f"filter counts ×{p.width}, "
        f"global batch {p.batch_size}, AdamW (weight decay {train.TrainConfig.weight_decay}), "
        "no augmentation; "
        f"seeds {list(settings.seeds)}; scores are per-image means on the fixed test split, "
        f"computed on the final weights after the configured epochs."
    )


def _searched_configurations(tuner):
    hypermodel = tuner.hypermodel
    trials = tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials))
    return tuple(hypermodel.configuration(t.hyperparameters) for t in trials)


def best_per_model(records):
    """{model: record} of the best seed of the best configuration by mean validation Jaccard."""
    best = {}
    for model_name in sorted({r["configuration"]["model"] for r in records}):
        mine = [r for r in records if r["configuration"]["model"] == model_name]
        names = {r["name"] for r in mine}

        def mean_val_jaccard(name, mine=mine):
            scores = [r["validation"]["jaccard"] for r in mine if r["name"] == name]
            return sum(scores) / len(scores)

        best_name = max(sorted(names), key=mean_val_jaccard)
        candidates = [r for r in mine if r["name"] == best_name]
        best[model_name] = max(candidates, key=lambda r: r["validation"]["jaccard"])
    return best


def _load(settings, record):
    config = tuning.Configuration(**record["configuration"])
    return keras.saving.load_model(settings.model_path(config, record["seed"]), compile=False)


def _plot_masks(settings, best, count=4):
    profile = settings.profile
    batch = next(
        iter(
            data.load_split(
                "test",
                image_size=profile.image_size,
                batch_size=count,
                data_dir=settings.data_dir,
                manual_dir=settings.manual_dir,
            )
        )
    )
    images, truths = (np.asarray(t) for t in batch)
    predictions = {}
    for model_name, record in best.items():
        probabilities = np.asarray(lesion_probability(_load(settings, record)(images)))
        predictions[f"{model_name} ({record['name']})"] = probabilities > 0.5
    report.plot_masks(images, truths, predictions, settings.run_dir / "masks.png")


def _export(settings, record, base_dir, model_name):
    summary = {
        "name": record["name"],
        "configuration": record["configuration"],
        "seed": record["seed"],
        "profile": record["profile"],
        "source_run": str(settings.run_dir),
        "validation": record["validation"],
        "test": record["test"],
        "test_original_resolution": record["test_original_resolution"],
    }
    for existing in sorted(Path(base_dir, model_name).glob("*/test_metrics.json")):
        if json.loads(existing.read_text()) == summary:  # a rerun of a finished search
            print(f"{record['name']} (seed {record['seed']}) already at {existing.parent}")
            return
    path = export.export_for_serving(
        _load(settings, record),
        base_dir=base_dir,
        model_name=model_name,
        image_size=settings.profile.image_size,
    )
    # TF Serving's Docker image conventionally sees the model root mounted at /models.
    export.write_models_config(base_dir, serving_root="/models")
    (Path(path) / "test_metrics.json").write_text(json.dumps(summary, indent=2))
    print(f"exported {record['name']} (seed {record['seed']}) to {path}", flush=True)


if __name__ == "__main__":
    main()
