"""Recipes: how a served model is made from PH2, as one JSON file (`configs/<model>.json`).

A recipe names the training stages that lead to a served model, the weight soup made from
their runs, and the serving options of its export. The commands read it with `--config`:

```sh
ph2-seg train --config configs/ph2_segnet.json --stage base       # then each later stage
ph2-seg soup --config configs/ph2_segnet.json --out-dir runs/ph2_segnet/soup
ph2-seg export --config configs/ph2_segnet.json --run-dir runs/ph2_segnet/soup
```

The format (every key below is checked; any other key is refused):

```
{
  "name": "ph2_segnet",            # required: runs go to <runs root>/<name>/
  "description": "...",            # optional, one line
  "stages": {                      # required, in training order
    "<stage>": {
      "profile": "compact",        # required: a key of ph2_tf.training.profiles.PROFILES
      "train": {...},              # required: TrainConfig overrides (model, loss, learning_rate,
                                   #   epochs, augment, colour_constancy, ema_momentum, ...);
                                   #   not seed, init_from, out_dir, data_dir or manual_dir,
                                   #   which the keys here and the command line set
      "seeds": [0],                # required: one run per seed
      "init_from": "<stage>",      # optional: a stage listed earlier with one seed, whose
                                   #   best.keras starts every run of this one
      "init_from_version": "saved_models/ph2_unet/7",  # or instead: a published version,
                                   #   relative to where the command runs, that starts them
      "notes": ["..."]             # optional
    }
  },
  "soup": {                        # optional
    "ingredients": ["<stage>"],    # stages whose runs are all ingredients of the soup
    "method": "greedy",            # optional: "greedy" (default) chooses ingredients on the
                                   #   selection set; "uniform" averages every one, fixed in
                                   #   advance, and scores the mean once
    "model_file": "best.keras",    # optional: the model file of each run that goes in:
                                   #   "best.keras" (default, its best validation epoch) or
                                   #   "last.keras" (its last epoch, chosen by nothing)
    "versions": ["saved_models/ph2_segnet/13"],  # optional: published versions, relative to
                                   #   where the command runs, that go in before the runs
    "published_versions": {        # optional: where the published soup read an ingredient
      "ph2_segnet/6": "<run>"      #   from a published version, the run that stands for it
    },                             #   (a run is named as its directory: see `run_name`)
    "notes": ["..."]
  },
  "export": {                      # required
    "model_name": "ph2_segnet",    # TF Serving model name
    "threshold": 0.5,              # probability threshold of the served mask
    "largest_component": true,     # keep the largest lesion, holes filled, in the graph
    "refine": 1.5,                 # optional: a second pass around the lesion (default none)
    "component_rule": "largest",   # optional: "largest" (default) or "most_confident", the
                                   #   component kept as the lesion
    "flip_tta": false,             # optional: the default signature averages the image and
                                   #   its two flips (default false, one pass)
    "notes": ["..."]
  },
  "notes": ["..."]                 # what the records cannot say, and how they were read
}
```

Every stage trains the same network (model, input size, width, colour constancy and number of
output classes): a run starts from its `init_from` stage's weights, and a soup averages runs.

A stage's run directory is `<runs root>/<recipe name>/<stage>` when the stage has one seed and
`<stage>-seed<k>` for each seed when it has several.
"""

import dataclasses
import json
import pathlib
import re
from math import inf

from ph2_tf.experiments.soup import ARCHITECTURE_FIELDS, METHODS
from ph2_tf.serving.components import COMPONENT_RULES
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.losses import num_classes_for
from ph2_tf.training.profiles import PROFILES
from ph2_tf.training.runs import BEST_MODEL_FILE, LAST_MODEL_FILE, run_state

DEFAULT_RUNS_ROOT = "runs"
# TrainConfig fields a recipe's `train` section may not set: the seeds, the stage chain, the
# runs root and the command line's data arguments decide them.
FIELDS_SET_ELSEWHERE = ("seed", "init_from", "out_dir", "data_dir", "manual_dir")
_NAME = re.compile(r"[a-z][a-z0-9_]*")  # recipe and stage names: directory names, no "-seed"


class RecipeError(ValueError):
    """A recipe that cannot be read or used; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: a run per seed, each from a fresh start or an earlier stage's best.

    Args:
        name: the stage's name, unique in its recipe.
        profile: a key of `PROFILES`.
        train: `TrainConfig` overrides, as in the recipe.
        seeds: one run per seed, in order.
        init_from: the earlier stage whose `best.keras` starts every run, or None.
        init_from_version: instead, the published version directory that starts every run.
        notes: what the records say about the stage's runs.
    """

    name: str
    profile: str
    train: dict
    seeds: tuple
    init_from: str | None = None
    init_from_version: str | None = None
    notes: tuple = ()


@dataclasses.dataclass(frozen=True)
class Soup:
    """The weight soup made from the runs of some stages, and perhaps published versions.

    Args:
        ingredients: names of the stages whose every run goes in.
        method: `"greedy"` or `"uniform"` (`ph2_tf.experiments.soup.METHODS`).
        model_file: the model file read from each run: `BEST_MODEL_FILE` or `LAST_MODEL_FILE`.
        versions: published version directories that go in too, before the runs.
        published_versions: `{"<model>/<version>": run name}` where the published soup read an
            ingredient from a published version rather than from its run.
        notes: what the records say about the soup.
    """

    ingredients: tuple
    method: str = "greedy"
    model_file: str = BEST_MODEL_FILE
    versions: tuple = ()
    published_versions: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()


@dataclasses.dataclass(frozen=True)
class Export:
    """The serving options of the exported model.

    Args:
        model_name: TF Serving model name.
        threshold: probability threshold of the served mask.
        largest_component: the graph keeps the largest lesion and fills its holes.
        refine: None, or the context of the graph's refining second pass
            (`ph2_tf.serving.refinement`).
        component_rule: which component is the lesion where one is kept, a name of
            `ph2_tf.serving.components.COMPONENT_RULES`.
        flip_tta: the default signature averages the image and its two flips.
        notes: what the records say about the export.
    """

    model_name: str
    threshold: float
    largest_component: bool
    refine: float | None = None
    component_rule: str = "largest"
    flip_tta: bool = False
    notes: tuple = ()


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A validated recipe (see the module docstring for the file format).

    Args:
        path: the file it was read from.
        name: the recipe's name; its runs go to `<runs root>/<name>/`.
        stages: `{name: Stage}` in training order.
        export: its `Export`.
        soup: its `Soup`, or None.
        description: one line, or None.
        notes: what the records cannot say.
    """

    path: str
    name: str
    stages: dict
    export: Export
    soup: Soup | None = None
    description: str | None = None
    notes: tuple = ()

    @property
    def model(self):
        """The network every stage trains: `'unet'` or `'segnet'`."""
        first = next(iter(self.stages.values()))
        return _build(first, first.seeds[0]).model

    def stage(self, name):
        """The stage called `name`; a `RecipeError` listing the stages when there is none."""
        if name not in self.stages:
            raise RecipeError(
                f"{self.path}: no stage {name!r}; its stages are {', '.join(self.stages)}"
            )
        return self.stages[name]


class _Reader:
    """Checks one recipe file's JSON, raising `RecipeError`s that name the file and the field."""

    def __init__(self, path):
        self.path = str(path)

    def fail(self, field, problem):
        raise RecipeError(f"{self.path}: {field} {problem}")

    def section(self, field, value, required, optional):
        """Checks that `value` is an object with all `required` keys and no unknown ones."""
        if not isinstance(value, dict):
            self.fail(field or "the recipe", f"must be a JSON object, received {value!r}")
        known = (*required, *optional)
        prefix = f"{field}." if field else ""
        for key in value:
            if key not in known:
                self.fail(
                    f"{prefix}{key}", f"is not a recipe field here (known: {', '.join(known)})"
                )
        for key in required:
            if key not in value:
                self.fail(f"{prefix}{key}", "is missing")
        return value

    def text(self, field, value):
        if not isinstance(value, str) or not value.strip():
            self.fail(field, f"must be a non-empty string, received {value!r}")
        return value

    def name(self, field, value):
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            self.fail(field, f"must be lower-case letters, digits and _, received {value!r}")
        return value

    def notes(self, field, value):
        if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
            self.fail(field, f"must be a list of strings, received {value!r}")
        return tuple(value)


def load(path):
    """Reads and validates a recipe.

    Every stage's config is built with `TrainConfig.from_profile` for each of its seeds, so a
    recipe that loads describes only valid runs.

    Args:
        path: the recipe's JSON file.

    Returns:
        A `Recipe`.

    Raises:
        RecipeError: the file cannot be read, is not JSON, or has an unknown key, a missing one,
            or a bad value; the message names the file and the field.
    """
    reader = _Reader(path)

    def refuse_duplicates(pairs):  # json keeps the last of two equal keys without a word
        keys = [key for key, _ in pairs]
        for key in keys:
            if keys.count(key) > 1:
                reader.fail(key, "appears twice in one JSON object")
        return dict(pairs)

    try:
        data = json.loads(pathlib.Path(path).read_text(), object_pairs_hook=refuse_duplicates)
    except OSError as error:
        raise RecipeError(f"{path}: cannot read it: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise RecipeError(f"{path}: not valid JSON: {error}") from None
    reader.section("", data, ("name", "stages", "export"), ("description", "soup", "notes"))
    stages = {}
    if not isinstance(data["stages"], dict) or not data["stages"]:
        reader.fail("stages", f"must be a non-empty JSON object, received {data['stages']!r}")
    for name, fields in data["stages"].items():
        stages[name] = _read_stage(reader, name, fields, stages)
    recipe = Recipe(
        path=str(path),
        name=reader.name("name", data["name"]),
        stages=stages,
        export=_read_export(reader, data["export"]),
        soup=None if "soup" not in data else _read_soup(reader, data["soup"], stages),
        description=reader.text("description", data["description"])
        if "description" in data
        else None,
        notes=reader.notes("notes", data.get("notes", [])),
    )
    _check_one_network(reader, recipe)
    return recipe


def _read_stage(reader, name, fields, earlier):
    """One stage, checked against the stages listed before it."""
    field = f"stages.{name}"
    reader.name(f"{field} (a stage name)", name)
    reader.section(
        field, fields, ("profile", "train", "seeds"), ("init_from", "init_from_version", "notes")
    )
    if fields["profile"] not in PROFILES:
        reader.fail(
            f"{field}.profile", f"must be one of {tuple(PROFILES)}, received {fields['profile']!r}"
        )
    train = fields["train"]
    if not isinstance(train, dict):
        reader.fail(f"{field}.train", f"must be a JSON object, received {train!r}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in train:
        if key in FIELDS_SET_ELSEWHERE:
            reader.fail(
                f"{field}.train.{key}",
                "is set by the recipe (seeds, init_from), the runs root or the command line, "
                "not in train",
            )
        if key not in known:
            reader.fail(f"{field}.train.{key}", "is not a TrainConfig field")
    seeds = fields["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        reader.fail(
            f"{field}.seeds",
            f"must be a non-empty list of distinct integers >= 0, received {seeds!r}",
        )
    init_from = fields.get("init_from")
    if init_from is not None:
        if init_from not in earlier:
            reader.fail(
                f"{field}.init_from",
                f"must name a stage listed before {name!r} (stages start only from earlier "
                f"ones), received {init_from!r}",
            )
        if len(earlier[init_from].seeds) != 1:
            reader.fail(
                f"{field}.init_from",
                f"names {init_from!r}, which has several seeds: a stage starts from one run",
            )
    version = fields.get("init_from_version")
    if version is not None:
        if init_from is not None:
            reader.fail(f"{field}.init_from_version", "and init_from cannot both start a stage")
        if not isinstance(version, str) or not version:
            reader.fail(
                f"{field}.init_from_version",
                f"must be a published version's directory, received {version!r}",
            )
    stage = Stage(
        name=name,
        profile=fields["profile"],
        train=dict(train),
        seeds=tuple(seeds),
        init_from=init_from,
        init_from_version=version,
        notes=reader.notes(f"{field}.notes", fields.get("notes", [])),
    )
    try:
        _build(stage, stage.seeds[0])  # the seed is checked above; the rest is the same per seed
    except ValueError as error:  # TrainConfig's message starts with the field's name
        raise RecipeError(f"{reader.path}: {field}.train.{error}") from None
    return stage


def _read_soup(reader, fields, stages):
    reader.section(
        "soup",
        fields,
        ("ingredients",),
        ("method", "model_file", "versions", "published_versions", "notes"),
    )
    method = fields.get("method", "greedy")
    if method not in METHODS:
        reader.fail("soup.method", f"must be one of {tuple(METHODS)}, received {method!r}")
    model_file = fields.get("model_file", BEST_MODEL_FILE)
    if model_file not in (BEST_MODEL_FILE, LAST_MODEL_FILE):
        reader.fail(
            "soup.model_file",
            f"must be {BEST_MODEL_FILE!r} or {LAST_MODEL_FILE!r}, received {model_file!r}",
        )
    versions = fields.get("versions", [])
    if (
        not isinstance(versions, list)
        or not all(isinstance(v, str) and v for v in versions)
        or len(set(versions)) != len(versions)
    ):
        reader.fail(
            "soup.versions",
            f"must be a list of distinct published versions' directories, received {versions!r}",
        )
    ingredients = fields["ingredients"]
    if not isinstance(ingredients, list) or not ingredients:
        reader.fail(
            "soup.ingredients", f"must be a non-empty list of stages, received {ingredients!r}"
        )
    for name in ingredients:
        if name not in stages:
            reader.fail("soup.ingredients", f"names {name!r}, which is not a stage")
    if len(set(ingredients)) != len(ingredients):
        reader.fail("soup.ingredients", f"names a stage twice: {ingredients!r}")
    runs = {run_name(stages[name], seed) for name in ingredients for seed in stages[name].seeds}
    published = fields.get("published_versions", {})
    if not isinstance(published, dict):
        reader.fail("soup.published_versions", f"must be a JSON object, received {published!r}")
    for version, run in published.items():
        if run not in runs:
            reader.fail(
                f"soup.published_versions.{version}",
                f"must name a run of the soup's ingredients ({', '.join(sorted(runs))}), "
                f"received {run!r}",
            )
    return Soup(
        ingredients=tuple(ingredients),
        method=method,
        model_file=model_file,
        versions=tuple(versions),
        published_versions=dict(published),
        notes=reader.notes("soup.notes", fields.get("notes", [])),
    )


def _read_export(reader, fields):
    reader.section(
        "export",
        fields,
        ("model_name", "threshold", "largest_component"),
        ("refine", "component_rule", "flip_tta", "notes"),
    )
    model_name = reader.text("export.model_name", fields["model_name"])
    if "/" in model_name:
        reader.fail("export.model_name", f"must be a directory name, received {model_name!r}")
    threshold = fields["threshold"]
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not (0 < threshold < 1)
    ):
        reader.fail(
            "export.threshold", f"must be a number strictly between 0 and 1, received {threshold!r}"
        )
    for flag in ("largest_component", "flip_tta"):
        if not isinstance(fields.get(flag, False), bool):
            reader.fail(f"export.{flag}", f"must be true or false, received {fields[flag]!r}")
    refine = fields.get("refine")
    if refine is not None and (
        isinstance(refine, bool) or not isinstance(refine, (int, float)) or not 1 <= refine < inf
    ):
        reader.fail("export.refine", f"must be null or a finite number >= 1, received {refine!r}")
    component_rule = fields.get("component_rule", "largest")
    if component_rule not in COMPONENT_RULES:
        reader.fail(
            "export.component_rule",
            f"must be one of {list(COMPONENT_RULES)}, received {component_rule!r}",
        )
    return Export(
        model_name=model_name,
        threshold=float(threshold),
        largest_component=fields["largest_component"],
        refine=None if refine is None else float(refine),
        component_rule=component_rule,
        flip_tta=fields.get("flip_tta", False),
        notes=reader.notes("export.notes", fields.get("notes", [])),
    )


def _check_one_network(reader, recipe):
    """Every stage must build the network of the first: runs chain and soups average."""

    def network(stage):
        cfg = _build(stage, stage.seeds[0])
        return {
            **{f: getattr(cfg, f) for f in ARCHITECTURE_FIELDS},
            "classes": num_classes_for(cfg.loss),
        }

    stages = list(recipe.stages.values())
    first = network(stages[0])
    for stage in stages[1:]:
        theirs = network(stage)
        for key, value in first.items():
            if theirs[key] != value:
                reader.fail(
                    f"stages.{stage.name}",
                    f"builds {key}={theirs[key]!r} where stage {stages[0].name!r} builds "
                    f"{value!r}: every stage of a recipe trains one network",
                )


def _build(stage, seed, **fields):
    """A stage's `TrainConfig` for one seed, built from its profile and overrides."""
    return TrainConfig.from_profile(stage.profile, **stage.train, seed=seed, **fields)


def run_name(stage, seed):
    """The directory name of a stage's run: the stage's name, with `-seed<k>` if several."""
    return stage.name if len(stage.seeds) == 1 else f"{stage.name}-seed{seed}"


def run_dir(recipe, stage_name, seed, runs_root=DEFAULT_RUNS_ROOT):
    """Where a stage's run for `seed` lives: `<runs_root>/<recipe name>/<run name>`."""
    return pathlib.Path(runs_root) / recipe.name / run_name(recipe.stage(stage_name), seed)


def stage_configs(
    recipe, stage_name, runs_root=DEFAULT_RUNS_ROOT, *, data_dir=None, manual_dir=None
):
    """The `TrainConfig` of each of a stage's runs, in seed order.

    `init_from` is the earlier stage's `best.keras` under the same runs root, or the stage's
    `init_from_version`. It is set after
    the config is validated, as `TrainConfig.load` does, because that file exists only once the
    earlier stage has trained: `train` validates the config again before it starts.

    Args:
        recipe: a `Recipe`.
        stage_name: one of its stages.
        runs_root: the folder holding every recipe's runs.
        data_dir: TFDS data directory (TFDS's default when None).
        manual_dir: PH2 manual directory.

    Returns:
        A list of `TrainConfig`s, one per seed.

    Raises:
        RecipeError: no such stage.
    """
    stage = recipe.stage(stage_name)
    configs = []
    for seed in stage.seeds:
        cfg = _build(
            stage,
            seed,
            out_dir=str(run_dir(recipe, stage.name, seed, runs_root)),
            data_dir=data_dir,
            manual_dir=manual_dir,
        )
        if stage.init_from is not None:
            (start_seed,) = recipe.stages[stage.init_from].seeds
            start = run_dir(recipe, stage.init_from, start_seed, runs_root) / BEST_MODEL_FILE
            cfg.init_from = str(start)
        cfg.init_from = stage.init_from_version or cfg.init_from
        configs.append(cfg)
    return configs


def require_trained(recipe, stage_name, runs_root=DEFAULT_RUNS_ROOT):
    """Checks that every run of a stage has finished under `runs_root`.

    Raises:
        RecipeError: a run is missing, unfinished or of another config; the message says which
            and the command that trains it.
    """
    for cfg in stage_configs(recipe, stage_name, runs_root):
        state = run_state(cfg)
        if state != "finished":
            where = "nothing there" if state == "new" else "its training has not finished"
            raise RecipeError(
                f"stage {stage_name!r} of {recipe.path} has not been trained: {cfg.out_dir} "
                f"({where}); train it with `train --config {recipe.path} --stage {stage_name} "
                f"--runs-root {runs_root}`"
            )


def soup_ingredients(recipe, runs_root=DEFAULT_RUNS_ROOT):
    """What goes into the recipe's soup, as `soup` takes it: its published versions, then each
    run of its stages (the run directory for `best.keras`, else the run's model file).

    Raises:
        RecipeError: the recipe has no soup section.
    """
    if recipe.soup is None:
        raise RecipeError(f"{recipe.path}: has no soup section")
    runs = [
        pathlib.Path(cfg.out_dir)
        for name in recipe.soup.ingredients
        for cfg in stage_configs(recipe, name, runs_root)
    ]
    if recipe.soup.model_file != BEST_MODEL_FILE:
        runs = [run / recipe.soup.model_file for run in runs]
    return [pathlib.Path(version) for version in recipe.soup.versions] + runs
