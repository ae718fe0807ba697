"""Weight soups: one model whose weights are the mean of the weights of several fine-tuned runs.

Runs fine-tuned from the same checkpoint (`train --init-from`) with other seeds or augmentation
stay close enough to each other that the mean of their weights is itself a working model, of
the same size and speed as each run. Wortsman et al. (2022, "Model soups: averaging weights of
multiple fine-tuned models improves accuracy without increasing inference time") found such
means about as accurate as the best run on the data it was trained for, and more robust under
distribution shift.

`greedy_soup` follows their greedy recipe: ingredients in order of their own validation score,
each kept only if the soup's validation score does not fall with it. `uniform_soup` is their
uniform recipe, the mean of every ingredient, which chooses nothing: its score on the selection
set is one measurement, not the best of several. `make_soup` scores through
the serving signature as `export --if-better` does, on PH2 validation or on a selection folder
(`--selection-set`, such as ISIC-select: images from other clinics, which PH2 validation cannot
stand for), and writes a run directory that `export` takes like a trained run.

BatchNormalization's moving mean and variance are averaged like every other weight; they are
not measured again on the training data.

Example, from the command line (`python -m ph2_tf soup --help`):

```sh
python -m ph2_tf soup runs/seed1 runs/seed2 saved_models/ph2_segnet/7 --out-dir runs/soup
python -m ph2_tf export --run-dir runs/soup --model-name ph2_segnet --if-better
```
"""

import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np

from ph2_tf import files, provenance
from ph2_tf.training import train
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.losses import num_classes_for
from ph2_tf.training.runs import BEST_MODEL_FILE, CONFIG_FILE, load_trained

SOUP_FILE = "soup.json"
# Training-config fields that fix the network; ingredients must agree on all of them.
ARCHITECTURE_FIELDS = ("model", "image_size", "width", "colour_constancy")


@dataclasses.dataclass
class Ingredient:
    """One model that can go into a soup.

    Args:
        path: the run directory or published version it was read from.
        config: its training config, as a dict (`TrainConfig` fields).
        weights: its weights as numpy arrays, in `model.weights` order.
    """

    path: str
    config: dict
    weights: list


def load_ingredient(path, *, data_dir=None, manual_dir=None):
    """Reads a run (its `best.keras`, or another model file of it) or a published version.

    A published version is rebuilt as `train --init-from` rebuilds it
    (`train.trainable_twin`): one exported with its BatchNorm folded into the
    convolutions, as every export now writes, is unfolded with statistics measured on PH2
    train, which are the statistics the runs fine-tuned from it started with.

    Args:
        path: a directory written by `train` (its `best.keras`), a model file in one (such as
            its `last.keras`, the weights of its last epoch), or a
            `saved_models/<name>/<version>` directory.
        data_dir: TFDS data directory, to unfold a folded version (default: its recorded one).
        manual_dir: PH2 manual directory, likewise.

    Returns:
        An `Ingredient`.

    Raises:
        ValueError: the path is none of these, or a version that cannot be rebuilt.
    """
    path = Path(path)
    if path.suffix == ".keras" and path.is_file():
        model, cfg = load_trained(path.parent, path.name)
        config = dataclasses.asdict(cfg)
    elif (path / BEST_MODEL_FILE).exists():
        model, cfg = load_trained(path)
        config = dataclasses.asdict(cfg)
    elif (path / "saved_model.pb").exists():
        from ph2_tf.serving import publish  # reads a SavedModel: TensorFlow

        published, source = publish.load_published_model(path)
        config = source["config"]
        data = {"data_dir": data_dir or config.get("data_dir"),
                "manual_dir": manual_dir or config.get("manual_dir")}  # fmt: skip
        try:
            model = train.trainable_twin(published, SimpleNamespace(**{**config, **data}))
        except ValueError as error:
            raise ValueError(f"{str(path)!r}: {error}") from None
    else:
        raise ValueError(
            f"{str(path)!r} is neither a run directory (no {BEST_MODEL_FILE}), a run's .keras "
            "file, nor a published SavedModel version (no saved_model.pb)"
        )
    weights = [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]
    return Ingredient(str(path), config, weights)


def check_compatible(ingredients):
    """Refuses ingredients that are not the same network.

    Args:
        ingredients: `Ingredient`s, at least one.

    Raises:
        ValueError: no ingredient, or one whose architecture fields, output classes or weight
            shapes differ from the first's; the message names both.
    """
    if not ingredients:
        raise ValueError("a soup needs at least one ingredient, got none")
    first = ingredients[0]

    def architecture(ingredient):
        fields = {name: ingredient.config.get(name) for name in ARCHITECTURE_FIELDS}
        return {**fields, "classes": num_classes_for(ingredient.config.get("loss"))}

    for other in ingredients[1:]:
        ours, theirs = architecture(first), architecture(other)
        differing = [name for name in ours if ours[name] != theirs[name]]
        if differing:
            name = differing[0]
            raise ValueError(
                f"{other.path!r} has {name}={theirs[name]!r} where {first.path!r} has "
                f"{ours[name]!r}: a soup averages one architecture"
            )
        shapes = [w.shape for w in first.weights], [w.shape for w in other.weights]
        if shapes[0] != shapes[1]:
            raise ValueError(
                f"{other.path!r} has {len(shapes[1])} weights that do not match the "
                f"{len(shapes[0])} of {first.path!r}"
            )


def average(weight_lists):
    """The element-wise mean of several models' weights.

    Args:
        weight_lists: one list of numpy arrays per model, all with the same shapes.

    Returns:
        A list of arrays, each the mean of the corresponding arrays, in their dtype.
    """
    return [
        np.mean(np.stack(arrays), axis=0, dtype=np.float64).astype(arrays[0].dtype)
        for arrays in zip(*weight_lists, strict=True)
    ]


def greedy_soup(ingredients, score):
    """Wortsman et al.'s greedy soup: add ingredients best first, keep those that do not hurt.

    Args:
        ingredients: compatible `Ingredient`s.
        score: function from a list of weights to the validation score (higher is better).

    Returns:
        `(soup, steps)`: the kept ingredients, best first, and one dict per step with the
        ingredient `added`, its own `score`, the `soup_score` with it and whether it was `kept`
        (the first step keeps the best ingredient alone).
    """
    check_compatible(ingredients)
    own = [score(ingredient.weights) for ingredient in ingredients]
    order = sorted(range(len(ingredients)), key=lambda i: -own[i])  # stable: ties keep order
    best = order[0]
    soup, soup_score = [ingredients[best]], own[best]
    steps = [{"added": ingredients[best].path, "score": own[best], "soup_score": own[best],
              "kept": True}]  # fmt: skip
    for i in order[1:]:
        trial = soup + [ingredients[i]]
        trial_score = score(average([ingredient.weights for ingredient in trial]))
        kept = trial_score >= soup_score
        steps.append({"added": ingredients[i].path, "score": own[i], "soup_score": trial_score,
                      "kept": kept})  # fmt: skip
        if kept:
            soup, soup_score = trial, trial_score
    return soup, steps


def uniform_soup(ingredients, score):
    """Wortsman et al.'s uniform soup: the mean of every ingredient, scored once.

    Nothing is chosen, so the score is one measurement rather than the best of several on the
    same images: the soup to publish by a rule that compares a gain with its noise, when the
    ingredients were fixed before scoring (the served version and every seed of one recipe).

    Args:
        ingredients: compatible `Ingredient`s.
        score: function from a list of weights to the validation score.

    Returns:
        `(ingredients, steps)`: all of them, and one step with every path `added` and the
        mean's `soup_score`.
    """
    check_compatible(ingredients)
    mean_score = score(average([ingredient.weights for ingredient in ingredients]))
    paths = [ingredient.path for ingredient in ingredients]
    return list(ingredients), [{"added": paths, "soup_score": mean_score, "kept": True}]


# Each method's function and the description soup.json records.
_BATCH_NORM = "; BatchNorm statistics averaged"
METHODS = {
    "greedy": (greedy_soup, "greedy soup (Wortsman et al., 2022)" + _BATCH_NORM),
    "uniform": (uniform_soup, "uniform soup (Wortsman et al., 2022)" + _BATCH_NORM),
}


def make_soup(
    paths,
    out_dir,
    *,
    data_dir=None,
    manual_dir=None,
    selection_dir=None,
    serving=None,
    method="greedy",
    log=print,
):
    """Makes a greedy or uniform soup, scored on PH2 validation or on a selection folder, and
    writes it as a run directory.

    Every candidate is scored as `export --if-better` would score it: exported with the serving
    options it will be published with, and measured through its serving signature at original
    size, on the validation split or, with `selection_dir`, on that folder (the selection signal
    of `export --if-better --selection-set`, which then checks PH2 validation for a loss).

    Args:
        paths: run directories and published versions (see `load_ingredient`).
        out_dir: the new run directory; must not exist yet. Gets `best.keras`, `config.json`
            (the best ingredient's, or a uniform soup's first, for the architecture) and
            `soup.json` (the ingredients,
            every score and decision, and provenance).
        data_dir: TFDS data directory (default: the first ingredient's).
        manual_dir: PH2 manual directory.
        selection_dir: None, or an ISIC-layout folder to choose on instead of PH2 validation,
            such as `../shared/external/isic2017-select`.
        serving: what the serving graph does after the model, as `export` takes it: a dict
            with `threshold`, `largest_component` and `refine` (default: threshold 0.5, no
            post-processing). A recipe's export section gives the served ones.
        method: "greedy" (`greedy_soup`) or "uniform" (`uniform_soup`).
        log: function receiving one line of text per step.

    Returns:
        The `soup.json` contents: with `validation_jaccard`, or with `selection_set` and
        `selection_jaccard` when chosen on a folder, and the `serving` options it scored with.

    Raises:
        ValueError: `out_dir` exists, the ingredients cannot be read or mixed, or
            `selection_dir` holds no images.
    """
    from ph2_tf.data import external
    from ph2_tf.serving import publish  # exports to score: TensorFlow

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ValueError(f"--out-dir {str(out_dir)!r} already exists; a soup gets a new one")
    cases = None
    if selection_dir is not None:
        cases = external.folder_cases(selection_dir)
        if not cases:
            raise ValueError(f"selection set {selection_dir}: no images with their masks")
    ingredients = [
        load_ingredient(path, data_dir=data_dir, manual_dir=manual_dir) for path in paths
    ]
    # Checked before the minutes of scoring: any of them may turn out the best.
    run_configs = {ingredient.path: _run_config(ingredient, out_dir) for ingredient in ingredients}
    config = ingredients[0].config
    model = train.build_configured_model(SimpleNamespace(**config))
    data_dir = data_dir or config.get("data_dir")

    serving = {"threshold": 0.5, "largest_component": False, "refine": None, **(serving or {})}

    def score(weights):
        model.set_weights(weights)
        return publish.candidate_score(
            model,
            config["image_size"],
            **serving,
            data_dir=data_dir,
            manual_dir=manual_dir,
            cases=cases,
        )

    make, description = METHODS[method]
    soup, steps = make(ingredients, score)
    for step in steps:
        if method == "uniform":
            log(f"mean of all {len(soup)} ingredients: {step['soup_score']:.4f}")
            continue
        verdict = "kept" if step["kept"] else "left out"
        log(f"{step['added']}: alone {step['score']:.4f}, soup {step['soup_score']:.4f}, {verdict}")
    model.set_weights(average([ingredient.weights for ingredient in soup]))
    chosen_on = publish.SELECTION_SPLIT if cases is None else Path(selection_dir).name
    score_key = "validation_jaccard" if cases is None else "selection_jaccard"
    record = {
        "method": description,
        "selection": f"{chosen_on} {publish.SELECTION_METRIC} through the serving signature, "
        "at original size",
        **({} if cases is None else {"selection_set": str(selection_dir)}),
        "serving": serving,
        "ingredients": [ingredient.path for ingredient in soup],
        score_key: [step["soup_score"] for step in steps if step["kept"]][-1],
        "steps": steps,
        "configs": {ingredient.path: ingredient.config for ingredient in ingredients},
        "provenance": provenance.collect(),
    }
    # Written beside the target, then renamed: an interrupted soup leaves no run directory, and
    # the next soup into it removes the stray staging folder.
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model.save(staging / BEST_MODEL_FILE)
        run_configs[soup[0].path].save(staging / CONFIG_FILE)
        files.write_json(staging / SOUP_FILE, record)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"soup of {len(soup)} of {len(ingredients)} ingredients written to {out_dir}")
    return record


def _run_config(ingredient, out_dir):
    """The `config.json` of a soup whose best ingredient is `ingredient`.

    The architecture is all `export` reads; the soup was trained from no one checkpoint (the
    ingredients' own `init_from`, often long deleted, stay in `soup.json`).

    Raises:
        ValueError: the ingredient's recorded config is not a valid `TrainConfig`.
    """
    fields = {**ingredient.config, "out_dir": str(out_dir), "init_from": None}
    try:
        return TrainConfig(**fields)
    except (TypeError, ValueError) as error:  # a field unknown or invalid
        raise ValueError(
            f"{ingredient.path!r}: its training config is not valid: {error}"
        ) from None
