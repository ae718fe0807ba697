"""`export`: a run or a published version as a TF Serving SavedModel version."""

import argparse
import dataclasses
import json
import pathlib

from ph2_tf.cli.common import (
    add_data_args,
    add_serving_args,
    apply_recipe_serving,
    fail,
    fail_on_data,
    model_name,
    positive_int,
    refuse_unused,
)
from ph2_tf.serving import versions


def add_parser(commands):
    """Adds the `export` command to `commands`, the parent parser's subparsers."""
    export = commands.add_parser(
        "export",
        help="SavedModel in TF Serving layout + models.config + the model's README.md card",
        description="Writes a new version under <base-dir>/<model-name>/. The version is "
        "assembled in <model-name>/.staging/ (which TF Serving ignores) and renamed to its "
        "number in one step, so that an interrupted export never leaves a version half-written; "
        "a rerun removes the stray staging folder. models.config and the card are then "
        "rewritten atomically.",
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", help="directory written by `train`")
    source.add_argument(
        "--from-saved-model",
        help="a published version directory (with its metrics.json) to export again, with "
        "today's serving graph, as a new version; writes the new version's metrics.json "
        "(needs the dataset: --data-dir, --manual-dir)",
    )
    export.add_argument("--base-dir", default="saved_models", help="TF Serving model root")
    export.add_argument(
        "--model-name",
        type=model_name,
        help="TF Serving model name, a folder name under --base-dir (default: the run's model)",
    )
    export.add_argument(
        "--version", type=positive_int, help="version number, >= 1 (default: next free)"
    )
    add_serving_args(export)
    export.add_argument(
        "--serving-root",
        default=versions.DOCKER_SERVING_ROOT,
        help="base-dir as the server sees it, written into models.config (default "
        f"{versions.DOCKER_SERVING_ROOT}, where the Docker command of docs/serving.md mounts it)",
    )
    export.add_argument(
        "--if-better",
        action="store_true",
        help="publish as the next version only if it beats the served (highest) version by "
        "more than noise: paired per-image Jaccard gain through both signatures above twice "
        "its standard error on the selection signal (the first --selection-set, else PH2 "
        "validation), and no loss beyond noise on PH2 validation and any other "
        "--selection-set (with --from-saved-model: the same weights in another serving "
        "graph); writes metrics.json (needs the dataset: --data-dir, --manual-dir)",
    )
    export.add_argument(
        "--force-export",
        action="store_true",
        help="with --if-better: publish the candidate as the next version even when it does not "
        "beat the served version; its metrics.json records the decision as forced",
    )
    export.add_argument(
        "--selection-set",
        action="append",
        default=[],
        help="with --if-better: an ISIC-layout folder (images/*.jpg or *.png, "
        "masks/<id>_segmentation.png) to choose on beside PH2 validation, e.g. "
        "../shared/external/isic2017-select or a stress set (python -m "
        "ph2_tf.experiments.stress_sets). Repeatable: the first is the selection signal, and "
        "the others, like PH2 validation, may lose no more than noise",
    )
    export.add_argument(
        "--config",
        help="a recipe (configs/README.md): the model name, --threshold and "
        "--largest-component come from its export section; given flags must agree with it",
    )
    add_data_args(export)


def run(args):
    """`export` command: exports a run's best checkpoint; rewrites models.config and the card.

    Returns:
        0; 2 for invalid arguments, an unusable run directory or SavedModel, a version that is
        taken, or missing PH2 data; 1 when the PH2 data cannot be read.
    """
    if args.if_better and args.version is not None:
        return fail(args, f"--if-better picks the version itself; drop --version {args.version}")
    if args.force_export and not args.if_better:
        return fail(args, "--force-export overrides --if-better's refusal; add --if-better")
    if args.selection_set and not args.if_better:
        return fail(args, "--selection-set is for --if-better, which chooses")
    for folder in args.selection_set:
        if not pathlib.Path(folder, "images").is_dir():
            return fail(args, f"--selection-set {folder}: no images/ folder there")
    if not (args.if_better or args.from_saved_model):
        refused = refuse_unused(
            args,
            {"--data-dir": args.data_dir, "--manual-dir": args.manual_dir},
            "by a plain --run-dir export, which measures nothing (it is for --if-better and "
            "--from-saved-model)",
        )
        if refused:
            return refused
    try:
        recipe, serving = _apply_recipe(args)
    except ValueError as error:
        return fail(args, error)
    if args.from_saved_model:
        return _export_again(args, serving)

    from ph2_tf.experiments import soup
    from ph2_tf.serving import export, publish
    from ph2_tf.training.runs import RunDirError, load_trained
    from tfds_ph2.ph2 import Ph2DataError, Ph2FileNotFoundError

    try:
        model, cfg = load_trained(args.run_dir)
    except RunDirError as error:
        return fail(args, error)
    if recipe is not None and cfg.model != recipe.model:
        return fail(
            args,
            f"--run-dir {args.run_dir} holds a {cfg.model}; {recipe.path} makes a {recipe.model}",
        )
    common = dict(
        base_dir=args.base_dir,
        model_name=args.model_name or cfg.model,
        image_size=cfg.image_size,
        **serving,
    )
    try:
        if args.if_better:
            source = {"name": pathlib.Path(args.run_dir).name, "config": dataclasses.asdict(cfg)}
            soup_record = pathlib.Path(args.run_dir) / soup.SOUP_FILE
            if soup_record.exists():
                source["soup"] = json.loads(soup_record.read_text())
            path = publish.publish(
                model,
                source={**source, "serving": serving},
                serving_root=args.serving_root,
                data_dir=args.data_dir or cfg.data_dir,
                manual_dir=args.manual_dir or cfg.manual_dir,
                selection_dirs=args.selection_set,
                force=args.force_export,
                **common,
            )
            print(json.dumps({"saved_model": None if path is None else str(path)}))
            return 0
        path = export.export_for_serving(model, version=args.version, **common)
        config = publish.write_served_files(args.base_dir, path.parent.name, args.serving_root)
    except (Ph2DataError, Ph2FileNotFoundError) as error:
        return fail_on_data(args, error)
    except ValueError as error:  # non-finite weights, a version taken or being published
        return fail(args, error)
    print(json.dumps({"saved_model": str(path), "models_config": str(config)}))
    return 0


def _apply_recipe(args):
    """Sets the model name and serving options: from `--config`'s recipe, else the defaults.

    Returns:
        `(recipe, serving)`: the `Recipe`, or None without `--config`, and the serving options
        as `metrics.json` records them.

    Raises:
        ValueError: the recipe is invalid, or a flag given explicitly contradicts it.
    """
    recipe = None
    if args.config is not None:
        from ph2_tf.training import recipes

        recipe = recipes.load(args.config)
    return recipe, apply_recipe_serving(args, recipe)


def _export_again(args, serving):
    """`export --from-saved-model`: a published version, exported anew as the next version."""
    from ph2_tf.serving import publish
    from tfds_ph2.ph2 import Ph2DataError, Ph2FileNotFoundError

    version_dir = pathlib.Path(args.from_saved_model)
    if not (version_dir / "saved_model.pb").is_file():
        return fail(args, f"--from-saved-model {version_dir}: no saved_model.pb there")
    name = args.model_name or version_dir.resolve().parent.name
    try:
        model_name(name)
    except argparse.ArgumentTypeError as error:
        return fail(args, f"{error}: give --model-name")
    try:
        model, source = publish.load_published_model(version_dir)
    except (OSError, ValueError) as error:
        return fail(args, error)
    source = {**source, "exported_again_from": str(version_dir), "serving": serving}
    common = dict(
        model=model,
        base_dir=args.base_dir,
        model_name=name,
        image_size=source["config"]["image_size"],
        source=source,
        **serving,
        serving_root=args.serving_root,
        data_dir=args.data_dir or source["config"].get("data_dir"),
        manual_dir=args.manual_dir or source["config"].get("manual_dir"),
    )
    try:
        if args.if_better:
            path = publish.publish(
                **common, selection_dirs=args.selection_set, force=args.force_export
            )
            print(json.dumps({"saved_model": None if path is None else str(path)}))
            return 0
        path = publish.export_measured(version=args.version, **common)
    except (Ph2DataError, Ph2FileNotFoundError) as error:
        return fail_on_data(args, error)
    except ValueError as error:  # non-finite weights, a version taken or being published
        return fail(args, error)
    config = pathlib.Path(args.base_dir) / "models.config"
    print(json.dumps({"saved_model": str(path), "models_config": str(config)}))
    return 0
