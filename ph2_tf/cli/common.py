"""What the commands share: argument types, data arguments and the one-line error."""

import argparse
import json
import re
import sys

from ph2_tf.serving.components import COMPONENT_RULES

# A TF Serving model name that is one plain folder name (`model_name`).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def probability(text):
    """argparse type: a float strictly between 0 and 1."""
    value = _number(text)
    if not 0.0 < value < 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not strictly between 0 and 1")
    return value


def context(text):
    """argparse type: a finite float of at least 1, a window's size as a multiple of a box."""
    value = _number(text)
    if not 1.0 <= value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not a finite number of at least 1")
    return value


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not an integer >= 1")
    return value


def model_name(text):
    """argparse type: a TF Serving model name, which is also a folder name under the model root:
    letters, digits, `_`, `-` and `.`, starting with a letter or digit, so that what is written
    under it stays inside the root (no `/`, no `..`)."""
    if not MODEL_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a model name (letters, digits, '_', '-' and '.', starting with a "
            "letter or digit)"
        )
    return text


def add_data_args(parser):
    """Adds `--data-dir` and `--manual-dir`, where a command finds PH2."""
    parser.add_argument("--data-dir", help="TFDS data directory (default: TFDS's, or the run's)")
    parser.add_argument(
        "--manual-dir", help="PH2 archive contents, used if the TFDS dataset is not prepared yet"
    )


def add_serving_args(parser):
    """Adds `--threshold`, `--largest-component`, `--refine`, `--component-rule` and
    `--flip-tta`: what the serving graph does around the model. Each defaults to None, "not
    given", so that a recipe can tell (`apply_recipe_serving`)."""
    parser.add_argument(
        "--threshold", type=probability, help="mask threshold, in (0, 1) (default 0.5)"
    )
    parser.add_argument(
        "--largest-component",
        action="store_true",
        default=None,
        help="in every signature's `mask`, keep only the largest lesion and fill its holes, "
        "inside the graph (ph2_tf.serving.postprocessing; `probabilities` stay the model's)",
    )
    parser.add_argument(
        "--refine",
        type=context,
        help="a second pass of the model on a window around the lesion the first pass finds, "
        "REFINE times the lesion's bounding box (>= 1), whose probabilities replace the first "
        "pass's there (ph2_tf.serving.refinement; default: no second pass)",
    )
    parser.add_argument(
        "--component-rule",
        choices=COMPONENT_RULES,
        help="which component is the lesion where one is kept (--largest-component's mask, "
        "--refine's located lesion): the largest (default) or the most confident, of highest "
        "mean probability (ph2_tf.serving.components)",
    )
    parser.add_argument(
        "--flip-tta",
        action="store_true",
        default=None,
        help="serving_default (and the encoded signatures) average the probabilities of the "
        "image and of its two flips in every pass, as serving_flip_tta does, at two to three "
        "times the latency; serving_single_pass keeps one pass (default: one pass)",
    )


def apply_recipe_serving(args, recipe=None):
    """Settles `add_serving_args`' options: from `recipe`'s export section, else the defaults.

    Args:
        args: the parsed arguments, with `config` (the recipe's path) and `model_name` when the
            command has them; `model_name` is checked and set like the serving options.
        recipe: None, or the `recipes.Recipe` loaded from `args.config`.

    Returns:
        The options as recorded in `metrics.json` and `soup.json`: `threshold`,
        `largest_component` and `refine`, `component_rule` when it is not the largest and
        `flip_tta` when true (records from before these existed then read the same).

    Raises:
        ValueError: a flag given explicitly contradicts the recipe, or the recipe's model name
            is not one.
    """
    if recipe is None:
        args.threshold = 0.5 if args.threshold is None else args.threshold
        args.largest_component = bool(args.largest_component)
        args.component_rule = args.component_rule or "largest"
        args.flip_tta = bool(args.flip_tta)
    else:
        chosen = recipe.export
        fields = ["threshold", "largest_component", "refine", "component_rule", "flip_tta"]
        if hasattr(args, "model_name"):
            fields.insert(0, "model_name")
        for field in fields:
            given, wanted = getattr(args, field), getattr(chosen, field)
            if given is not None and given != wanted:
                shown = "--" + field.replace("_", "-") + ("" if given is True else f" {given}")
                raise ValueError(
                    f"{shown} contradicts {args.config}, whose export sets {field} "
                    f"{json.dumps(wanted)}; drop the flag or edit the recipe"
                )
            setattr(args, field, wanted)
        if hasattr(args, "model_name"):
            try:
                model_name(args.model_name)
            except argparse.ArgumentTypeError as error:
                raise ValueError(f"{args.config}: export.model_name: {error}") from None
    serving = {
        "threshold": args.threshold,
        "largest_component": args.largest_component,
        "refine": args.refine,
    }
    if args.component_rule != "largest":
        serving["component_rule"] = args.component_rule
    if args.flip_tta:
        serving["flip_tta"] = True
    return serving


def fail(args, message, status=2):
    """Prints `<prog> <command>: error: <message>` on stderr and returns `status`.

    Status 2 is for usage and input errors, 1 for a failure during work.
    """
    print(f"{args.prog} {args.command}: error: {message}", file=sys.stderr)
    return status


def fail_on_data(args, error):
    """`fail` for a PH2 data error (`tfds_ph2.ph2`) raised while a command measures a model.

    Missing data is an input error (status 2) shown by the message's first line, which says what
    is missing (the rest are download instructions); unreadable data is a failure (status 1).
    """
    from tfds_ph2.ph2 import Ph2FileNotFoundError

    if isinstance(error, Ph2FileNotFoundError):
        return fail(args, str(error).splitlines()[0])
    return fail(args, error, status=1)


def refuse_unused(args, options, reason):
    """`fail` naming the first of `options` (option string -> parsed value) that was given.

    Args:
        args: the parsed arguments.
        options: `{"--flag": value}`; None or False is "not given".
        reason: why these options cannot be honoured here, e.g. "with --saved-model".

    Returns:
        Status 2 after the error line, or None when none was given.
    """
    for flag, value in options.items():
        if value is not None and value is not False:
            return fail(args, f"{flag} is not used {reason}; drop it")
    return None
