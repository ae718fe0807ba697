"""The image sets choices are made on, and the command line the runners that score on them share.

`component_choice`, `small_lesion_levers`, `multi_scale` and `threshold_choice` score published
models on the same sets: PH2 validation, its stress sets (`ph2_tf.experiments.stress_sets`) and
ISIC-select, the ISIC set for choosing (never ISIC-dev, which is for reporting once). They take
the same arguments, print the same header (command, provenance, sets) and tables, and write
`output.txt` and `per_image.json` the same way; the last three share their whole `main`
(`score_published_versions`).
"""

import argparse
import pathlib
import shlex
import sys
import time

import numpy as np

from ph2_tf import files, provenance
from ph2_tf.data import external
from ph2_tf.experiments import stress_sets
from ph2_tf.serving import selection

# The lever every other lever of a runner is compared with: the served computation.
BASELINE = "served"
ISIC2017_SELECT_DIR = external.ISIC2017_DEV_DIR.with_name("isic2017-select")
SET_LABELS = {
    "ph2_validation": "PH2 validation",
    "artefacts": "PH2 validation + artefacts",
    "small_lesions": "PH2 validation, small lesions",
    "small_lesions_artefacts": "PH2 validation, small lesions + artefacts",
    "isic2017_select": "ISIC-select",
}


def module_name(module):
    """A runner's importable name, also when it runs as `python -m` (then `__name__` is
    `__main__`)."""
    spec = getattr(module, "__spec__", None)
    return spec.name if spec is not None else module.__name__


def image_sets(data_dir, isic_select, seed):
    """`{set name: cases}` of `SET_LABELS`: PH2 validation, its stress sets, ISIC-select."""
    validation = external.ph2_cases("validation", data_dir=data_dir)
    small_lesions = stress_sets.small_lesion_cases(validation, seed=seed)
    return {
        "ph2_validation": validation,
        "artefacts": stress_sets.artefact_cases(validation, seed=seed),
        "small_lesions": small_lesions,
        "small_lesions_artefacts": stress_sets.artefact_cases(small_lesions, seed=seed),
        "isic2017_select": external.folder_cases(isic_select),
    }


def parse_args(module, argv, *, output_dir, model_file, model_kind):
    """Parses and checks a runner's arguments; a bad one exits with one `error:` line naming it.

    Args:
        module: the runner's module (its `__name__` and docstring make the usage).
        argv: the arguments, or None for `sys.argv[1:]`.
        output_dir: the default `--output-dir`.
        model_file: the file each positional model directory must hold (`saved_model.pb`).
        model_kind: what such a directory is called in the error (`a SavedModel directory`).

    Returns:
        The `argparse.Namespace`: `saved_models`, `data_dir`, `isic_select`, `seed`,
        `output_dir`.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m {module_name(module)}", description=module.__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "saved_models", nargs="+", help=f"model directories, each with {model_file}"
    )
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    parser.add_argument(
        "--isic-select",
        type=pathlib.Path,
        default=ISIC2017_SELECT_DIR,
        help="ISIC-layout folder of the selection set (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=stress_sets.SEED, help="stress sets' seed")
    parser.add_argument(
        "--output-dir", type=pathlib.Path, default=output_dir, help="default: %(default)s"
    )
    args = parser.parse_args(argv)
    for path in args.saved_models:
        if not (pathlib.Path(path) / model_file).is_file():
            parser.error(f"{path} is not {model_kind} (no {model_file})")
    if not (pathlib.Path(args.data_dir) / "ph2" / "original").is_dir():
        parser.error(f"--data-dir {args.data_dir} has no prepared ph2/original")
    if not list(args.isic_select.glob("images/*.jpg")):
        parser.error(f"--isic-select {args.isic_select} has no images/*.jpg")
    return args


class Report:
    """What a runner prints, kept to be written as `output.txt` with its per-image scores.

    Created after the arguments are checked: it reads the provenance and the image sets, and
    prints the header (the command, the provenance, `settings`, the sets' sizes).

    Attributes:
        record: the provenance (`ph2_tf.provenance.collect()`).
        sets: `image_sets` of the arguments.
        lines: every line printed so far.
    """

    def __init__(self, module, argv, args, settings):
        self._started = time.perf_counter()
        self.record = provenance.collect()
        self.sets = image_sets(args.data_dir, args.isic_select, args.seed)
        self.lines = []
        git = self.record["git"]
        packages = self.record["packages"]
        self.print(
            f"python -m {module_name(module)} "
            + shlex.join(sys.argv[1:] if argv is None else argv),
            f"commit {git['commit']} (tracked files changed: {git['dirty']}); "
            f"TensorFlow {packages['tensorflow']}, Keras {packages['keras']}; "
            f"{self.record['device']}; {self.record['precision']}; "
            f"oneDNN {self.record['onednn']}",
            f"stress sets' seed {args.seed}; {settings}",
            "images: "
            + ", ".join(f"{SET_LABELS[name]} {len(cases)}" for name, cases in self.sets.items()),
        )

    def print(self, *lines):
        for line in lines:
            print(line, flush=True)
        self.lines += lines

    def write(self, output_dir, per_image):
        """Prints the time taken, then writes `output.txt` and `per_image.json` (with the
        command and provenance added to `per_image`) atomically to `output_dir`."""
        elapsed = f"\n{time.perf_counter() - self._started:.0f} s"
        print(elapsed)
        output_dir.mkdir(parents=True, exist_ok=True)
        files.write_text(output_dir / "output.txt", "\n".join(self.lines) + elapsed + "\n")
        files.write_json(
            output_dir / "per_image.json",
            {"command": self.lines[0], "provenance": self.record, **per_image},
        )


def model_table(jaccards, baseline=BASELINE, column="lever", digits=4):
    """Markdown rows of one model: per set and `column` (lever, rule), mean Jaccard and paired
    gain over `baseline` ± its standard error, with `digits` decimals."""
    lines = [
        f"| set | images | {column} | mean Jaccard | gain vs {baseline} ± SE | "
        "images at Jaccard 0 |",
        "|---|---|---|---|---|---|",
    ]
    for set_name, by_lever in jaccards.items():
        for lever, scores in by_lever.items():
            values = np.array(list(scores.values()))
            if lever == baseline:
                gain = "(baseline)"
            else:
                paired = selection.paired_gain(scores, by_lever[baseline])
                gain = f"{paired.gain:+.{digits}f} ± {paired.standard_error:.{digits}f}"
            mean = f"{values.mean():.{digits}f}"
            lines.append(
                f"| {SET_LABELS[set_name]} | {len(values)} | {lever} | {mean} | {gain} | "
                f"{np.count_nonzero(values == 0)} |"
            )
    return lines


def decisions(jaccards, rules):
    """Per rule of `rules` (`{name: (signal set, guard sets)}`; PH2 validation is always a
    guard), one line per lever: the decision on serving it instead of `served`."""

    def gain(set_name, lever):
        return selection.paired_gain(jaccards[set_name][lever], jaccards[set_name][BASELINE])

    lines = []
    for rule, (signal, guards) in rules.items():
        lines.append(f"Publishing rule, {rule} (gain > 2 SE, no loss beyond 2 SE):")
        for lever in jaccards[signal]:
            if lever == BASELINE:
                continue
            decision = selection.decide(
                gain(signal, lever),
                gain("ph2_validation", lever),
                guards={SET_LABELS[name]: gain(name, lever) for name in guards},
            )
            verdict = "publish" if decision.publish else "keep served"
            lines.append(f"- {lever}: {verdict} ({decision.reason})")
    return lines


def score_published_versions(module, argv, output_dir, settings, score_version, rules):
    """The `main` of a runner that scores levers of published versions on the sets of
    `image_sets`: checks the arguments, prints the header, then per version the table of
    `model_table` and the `decisions` of `rules`, and writes `output.txt` and `per_image.json`.

    Args:
        module: the runner's module.
        argv: the arguments, or None for `sys.argv[1:]`.
        output_dir: the default `--output-dir`.
        settings: one line of the runner's settings, printed in the header.
        score_version: function of a version directory returning `(score, suffix)`:
            `score(cases)` gives `{lever: {image_id: Jaccard}}`, with `BASELINE` among the
            levers, and `suffix` ends the version's heading.
        rules: `{name: (signal set, guard sets)}` for `decisions`.
    """
    args = parse_args(
        module,
        argv,
        output_dir=output_dir,
        model_file="metrics.json",
        model_kind="a published version",
    )
    report = Report(module, argv, args, settings)
    per_model = {}
    for path in args.saved_models:
        score, suffix = score_version(path)
        per_model[path] = {name: score(cases) for name, cases in report.sets.items()}
        report.print(
            "",
            f"## {path}{suffix}",
            "",
            *model_table(per_model[path]),
            "",
            *decisions(per_model[path], rules),
        )
    levers = list(next(iter(next(iter(per_model.values())).values())))
    report.write(args.output_dir, {"seed": args.seed, "levers": levers, "jaccard": per_model})
