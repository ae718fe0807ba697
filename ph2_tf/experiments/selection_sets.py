"""The image sets choices are made on, and the command line the runners that score on them share.

`component_choice` and `small_lesion_levers` score published models on the same sets: PH2
validation, its stress sets (`ph2_tf.experiments.stress_sets`) and ISIC-select, the ISIC set for
choosing (never ISIC-dev, which is for reporting once). Both take the same arguments, print the
same header (command, provenance, sets) and write `output.txt` and `per_image.json` the same way.
"""

import argparse
import pathlib
import shlex
import sys
import time

from ph2_tf import files, provenance
from ph2_tf.data import external
from ph2_tf.experiments import stress_sets

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
