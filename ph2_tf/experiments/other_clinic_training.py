"""Training on other clinics' images: PH2 train plus ISIC-select in k folds, against PH2 alone.

Each fold run (`ph2-seg train ... --extra-train-dir <ISIC-select> --extra-folds k
--extra-held-out-fold i`) trained on PH2's train split and on every fold of ISIC-select but
one. This runner scores each fold run on the fold it did not see, paired with a served PH2-only
version on the same images, and on PH2 validation and test. Given the model made of the fold
runs (`--combined`, e.g. `ph2-seg soup` of them), it scores that on PH2 validation and test and
once on ISIC-2017 dev, beside the served version. Every model is scored through the serving
function with the served version's options (threshold, largest component, refinement), at each
image's original size. The held-out folds together cover ISIC-select once: their pooled paired
gain is the cross-validated estimate of what training on ISIC-select brings. A control run
(`--control`), trained the same way on PH2 alone, separates that from the training itself.
"""

import argparse
import pathlib
import shlex
import sys
import time

from ph2_tf import files, provenance
from ph2_tf.data import external
from ph2_tf.evaluation import scoring
from ph2_tf.serving import export, publish, selection
from ph2_tf.training import runs

OUTPUT_DIR = pathlib.Path("results/other-clinic-training")
MODULE = __spec__.name  # this module's name, also when it runs as `python -m` (`__main__`)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("fold_runs", nargs="+", help="the fold runs' directories (train --out-dir)")
    parser.add_argument("--served", required=True, help="the PH2-only published version to beat")
    parser.add_argument("--combined", help="a run directory of the fold runs combined (a soup)")
    parser.add_argument(
        "--control",
        help="a run trained as the fold runs but on PH2 alone: what the other images add beyond "
        "the training itself",
    )
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    parser.add_argument(
        "--isic-dev",
        type=pathlib.Path,
        default=external.ISIC2017_DEV_DIR,
        help="ISIC-layout evaluation folder, scored once with --combined (default: %(default)s)",
    )
    parser.add_argument(
        "--output-dir", type=pathlib.Path, default=OUTPUT_DIR, help="default: %(default)s"
    )
    args = parser.parse_args(argv)
    for run_dir in [*args.fold_runs, *[path for path in (args.combined, args.control) if path]]:
        if not (pathlib.Path(run_dir) / runs.BEST_MODEL_FILE).is_file():
            parser.error(f"{run_dir} is not a finished run (no {runs.BEST_MODEL_FILE})")
    if not (pathlib.Path(args.served) / "metrics.json").is_file():
        parser.error(f"--served {args.served} is not a published version (no metrics.json)")
    if not (pathlib.Path(args.data_dir) / "ph2" / "original").is_dir():
        parser.error(f"--data-dir {args.data_dir} has no prepared ph2/original")
    return args


def fold_runs(run_dirs):
    """`[(run_dir, model, cfg)]` of the fold runs, checked to hold out different folds of one set.

    Raises:
        ValueError: a run trained on no extra folder or on all of it, runs of different folders
            or fold counts, a fold held out twice, or a fold no run holds out.
    """
    loaded = [(run_dir, *runs.load_trained(run_dir)) for run_dir in run_dirs]
    first = loaded[0][2]
    for run_dir, _, cfg in loaded:
        if cfg.extra_folds is None:
            raise ValueError(f"{run_dir}: not a fold run (no extra_folds in its config)")
        if (cfg.extra_train_dir, cfg.extra_folds) != (first.extra_train_dir, first.extra_folds):
            raise ValueError(
                f"{run_dir} trained on {cfg.extra_folds} folds of {cfg.extra_train_dir}, "
                f"{loaded[0][0]} on {first.extra_folds} folds of {first.extra_train_dir}"
            )
    held_out = [cfg.extra_held_out_fold for _, _, cfg in loaded]
    if sorted(held_out) != list(range(first.extra_folds)):
        raise ValueError(
            f"the runs hold out folds {held_out}; each of the {first.extra_folds} folds must be "
            "held out by exactly one run"
        )
    return loaded


def per_image(predict, cases):
    """`{image id: Jaccard}` of a prediction function on cases."""
    scores = scoring.score_at_original_size(predict, cases)
    return dict(zip(scores.image_ids, scores.per_image["jaccard"], strict=True))


def model_predictor(model, cfg, options):
    """A Keras model's prediction function: its serving function's `mask`, with `options`."""
    serve = export.serving_function(model, cfg.image_size, **options)
    return scoring.signature_predictor(serve, "mask")


def mean(scores):
    return sum(scores.values()) / len(scores)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    record = provenance.collect()
    loaded = fold_runs(args.fold_runs)
    select_dir = loaded[0][2].extra_train_dir
    select_cases = external.folder_cases(select_dir)
    ph2 = {
        split: external.ph2_cases(split, data_dir=args.data_dir) for split in ("validation", "test")
    }
    options = publish.serving_options(args.served)
    served_model = export.load_saved_model(args.served)  # owns the variables: keep it referenced
    served = scoring.signature_predictor(served_model.signatures[export.SIGNATURE], "mask")
    lines = []

    def show(*new):
        for line in new:
            print(line, flush=True)
        lines.extend(new)

    git, packages = record["git"], record["packages"]
    show(
        f"python -m {MODULE} " + shlex.join(sys.argv[1:] if argv is None else argv),
        f"commit {git['commit']} (tracked files changed: {git['dirty']}); "
        f"TensorFlow {packages['tensorflow']}, Keras {packages['keras']}; {record['device']}; "
        f"{record['precision']}; oneDNN {record['onednn']}",
        f"served {args.served} with {options}; {len(select_cases)} pairs in {select_dir}, "
        f"{loaded[0][2].extra_folds} folds (pair i in fold i % k)",
    )
    results = {"served": {}, "folds": {}}
    served_select = per_image(served, select_cases)
    results["served"]["isic_select"] = served_select
    for split, cases in ph2.items():
        results["served"][f"ph2_{split}"] = per_image(served, cases)

    show("", "## Each fold run on the ISIC-select fold it did not see, and on PH2", "")
    show(
        "| run | held-out fold | fold run | served | paired gain ± SE | PH2 val | PH2 test |",
        "|---|---|---|---|---|---|---|",
    )
    pooled = {}
    for run_dir, model, cfg in loaded:
        _, held_out = external.split_folds(select_cases, cfg.extra_folds, cfg.extra_held_out_fold)
        predict = model_predictor(model, cfg, options)
        fold = {"held_out": per_image(predict, held_out)}
        for split, cases in ph2.items():
            fold[f"ph2_{split}"] = per_image(predict, cases)
        results["folds"][str(run_dir)] = {"held_out_fold": cfg.extra_held_out_fold, **fold}
        pooled.update(fold["held_out"])
        baseline = {image_id: served_select[image_id] for image_id in fold["held_out"]}
        gain = selection.paired_gain(fold["held_out"], baseline)
        show(
            f"| {run_dir} | {cfg.extra_held_out_fold} | "
            f"{mean(fold['held_out']):.4f} | {mean(baseline):.4f} | {gain} | "
            f"{mean(fold['ph2_validation']):.4f} | {mean(fold['ph2_test']):.4f} |"
        )
    gain = selection.paired_gain(pooled, served_select)
    show(
        "",
        f"Pooled over the held-out folds ({gain.images} images): fold runs {mean(pooled):.4f}, "
        f"served {mean(served_select):.4f}, paired gain {gain}.",
        f"Served on PH2: validation {mean(results['served']['ph2_validation']):.4f}, "
        f"test {mean(results['served']['ph2_test']):.4f}.",
    )

    if args.control:
        model, cfg = runs.load_trained(args.control)
        predict = model_predictor(model, cfg, options)
        control = {"isic_select": per_image(predict, select_cases)}
        control.update({f"ph2_{split}": per_image(predict, cases) for split, cases in ph2.items()})
        results["control"] = {"run": str(args.control), **control}
        show(
            "",
            f"## The PH2-only control, {args.control}",
            "",
            "| comparison | images | paired gain ± SE |",
            "|---|---|---|",
            f"| control against served, ISIC-select | {len(select_cases)} | "
            f"{selection.paired_gain(control['isic_select'], served_select)} |",
            f"| fold runs (held out) against control, ISIC-select | {len(pooled)} | "
            f"{selection.paired_gain(pooled, control['isic_select'])} |",
            "",
            f"Control: ISIC-select {mean(control['isic_select']):.4f}, PH2 validation "
            f"{mean(control['ph2_validation']):.4f}, test {mean(control['ph2_test']):.4f}.",
        )

    if args.combined:
        model, cfg = runs.load_trained(args.combined)
        predict = model_predictor(model, cfg, options)
        isic_dev = external.folder_cases(args.isic_dev)
        combined = {f"ph2_{split}": per_image(predict, cases) for split, cases in ph2.items()}
        show("", f"## The combined model, {args.combined}", "")
        show("| set | images | combined | served | paired gain ± SE |", "|---|---|---|---|---|")
        sets = [("ph2_validation", "PH2 validation"), ("ph2_test", "PH2 test")]
        if isic_dev:
            combined["isic2017_dev"] = per_image(predict, isic_dev)
            results["served"]["isic2017_dev"] = per_image(served, isic_dev)
            sets.append(("isic2017_dev", f"ISIC-2017 dev ({args.isic_dev})"))
        for name, label in sets:
            gain = selection.paired_gain(combined[name], results["served"][name])
            show(
                f"| {label} | {gain.images} | {mean(combined[name]):.4f} | "
                f"{mean(results['served'][name]):.4f} | {gain} |"
            )
        results["combined"] = {"run": str(args.combined), **combined}

    elapsed = f"\n{time.perf_counter() - started:.0f} s"
    print(elapsed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    files.write_text(args.output_dir / "output.txt", "\n".join(lines) + elapsed + "\n")
    files.write_json(
        args.output_dir / "per_image.json",
        {"command": lines[0], "provenance": record, "jaccard": results},
    )


if __name__ == "__main__":
    main()
