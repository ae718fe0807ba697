"""`soup`: a greedy or uniform weight soup of runs fine-tuned from one checkpoint."""

import json
import pathlib
import sys

from ph2_tf.cli.common import (
    add_data_args,
    add_serving_args,
    apply_recipe_serving,
    fail,
    fail_on_data,
)


def add_parser(commands):
    """Adds the `soup` command to `commands`, the parent parser's subparsers."""
    soup = commands.add_parser(
        "soup",
        help="average the weights of runs fine-tuned from one checkpoint (greedy or uniform soup)",
        description="Scores each ingredient and each growing mean of their weights as "
        "`export --if-better` would (through the serving signature, with the serving options "
        "given or the recipe's, on PH2 validation or --selection-set), keeps the ingredients "
        "that do not lower it, best first (with --uniform: every ingredient, scored once), and "
        "writes the mean as a run directory for `export`. See ph2_tf/experiments/soup.py.",
    )
    soup.add_argument(
        "ingredients",
        nargs="*",
        metavar="RUN_OR_VERSION",
        help="run directories written by `train` (their best.keras), a run's other model file "
        "(RUN/last.keras: the last epoch, not chosen on validation), or published SavedModel "
        "versions (or --config)",
    )
    soup.add_argument("--out-dir", required=True, help="the soup's run directory (must be new)")
    recipe = soup.add_argument_group("recipe (configs/README.md)")
    recipe.add_argument(
        "--config",
        help="a recipe file: the ingredients are its soup's versions and every run of its "
        "soup's stages, which must have finished training, mixed by its soup's method and scored "
        "with its export section's serving options",
    )
    recipe.add_argument(
        "--runs-root", help="with --config: where `train --config` wrote the runs (default runs)"
    )
    soup.add_argument(
        "--selection-set",
        help="an ISIC-layout folder (images/, masks/) to choose the ingredients on instead of PH2 "
        "validation, e.g. ../shared/external/isic2017-select; publish the soup with `export "
        "--if-better --selection-set` on the same folder",
    )
    soup.add_argument(
        "--uniform",
        action="store_true",
        help="the mean of every ingredient, scored once (Wortsman et al.'s uniform soup), "
        "instead of the greedy choice: for ingredients fixed in advance, such as every seed of "
        "a recipe, so that the selection set measures the soup rather than chooses it",
    )
    add_serving_args(soup)
    add_data_args(soup)


def run(args):
    """`soup` command: writes a soup's run directory and prints its summary.

    Returns:
        0; 2 for invalid arguments, an ingredient that cannot be read or mixed, an existing
        --out-dir, or missing PH2 data; 1 when the PH2 data cannot be read.
    """
    from ph2_tf.experiments import soup
    from ph2_tf.training import recipes
    from tfds_ph2.ph2 import Ph2DataError, Ph2FileNotFoundError

    if args.selection_set is not None and not pathlib.Path(args.selection_set, "images").is_dir():
        return fail(args, f"--selection-set {args.selection_set}: no images/ folder there")
    if args.config is None:
        if args.runs_root is not None:
            return fail(args, "--runs-root needs --config, the recipe it refers to")
        if not args.ingredients:
            return fail(args, "give the ingredients' directories, or a recipe with --config")
        ingredients = args.ingredients
        serving = apply_recipe_serving(args)
        method = "uniform" if args.uniform else "greedy"
    else:
        if args.ingredients:
            return fail(
                args,
                f"{args.ingredients[0]!r}: the ingredients come from --config {args.config}; "
                "give one or the other",
            )
        try:
            recipe = recipes.load(args.config)
            serving = apply_recipe_serving(args, recipe)
            if recipe.soup is not None and args.uniform and recipe.soup.method != "uniform":
                raise ValueError(
                    f"--uniform contradicts {args.config}, whose soup is {recipe.soup.method}"
                )
            ingredients = _recipe_ingredients(recipe, args.runs_root)
        except ValueError as error:
            return fail(args, error)
        method = recipe.soup.method
    try:
        record = soup.make_soup(
            ingredients,
            args.out_dir,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
            selection_dir=args.selection_set,
            serving=serving,
            method=method,
            log=lambda line: print(line, file=sys.stderr),
        )
    except (Ph2DataError, Ph2FileNotFoundError) as error:
        return fail_on_data(args, error)
    except (OSError, ValueError) as error:  # an ingredient unreadable or unlike the others
        return fail(args, error)
    summary = {
        key: record[key]
        for key in ("ingredients", "validation_jaccard", "selection_jaccard")
        if key in record
    }
    print(json.dumps({"run_dir": args.out_dir, **summary}))
    return 0


def _recipe_ingredients(recipe, runs_root):
    """A recipe's soup ingredients, every run of its stages checked to have finished."""
    from ph2_tf.training import recipes

    runs_root = runs_root or recipes.DEFAULT_RUNS_ROOT
    paths = recipes.soup_ingredients(recipe, runs_root)  # refuses a recipe without a soup
    for stage in recipe.soup.ingredients:
        recipes.require_trained(recipe, stage, runs_root)
    return [str(path) for path in paths]
