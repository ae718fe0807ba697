"""Recipes (`ph2_tf.training.recipes`, `configs/`): the committed ones describe the records of the
served models, bad recipes are refused with one line naming the file and the field, and the
commands take `--config` without letting a flag contradict it."""

import copy
import dataclasses
import json
import pathlib

import pytest
from conftest import REPO_ROOT

from ph2_tf import cli
from ph2_tf.training import recipes, runs
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.runs import BEST_MODEL_FILE, CONFIG_FILE, LOG_FILE

CONFIGS = REPO_ROOT / "configs"
V2_RECORDS = REPO_ROOT / "results" / "v2-models"
# Where each committed recipe's run records are.
RECORDS = {
    "ph2_unet": V2_RECORDS,
    "ph2_segnet": V2_RECORDS,
    "lesion_unet": REPO_ROOT / "results" / "other-clinic-training" / "runs",
}
COMMITTED = sorted(CONFIGS.glob("*.json"))

# The run record (a folder of results/v2-models/) of every run of the committed recipes.
UNET_FINETUNE = "unet-bce-lr1e-4-e150+40-augment_{}-colour_constancy-ema0.99-seed{}"
SEGNET = "segnet-soft_bce-lr1e-4-e{}-augment_{}-colour_constancy{}"
RECORDED_RUNS = {
    "ph2_unet": {
        "base": "unet-bce-lr1e-4-e150-augment_none-colour_constancy",
        "finetune_all-seed2": UNET_FINETUNE.format("all", 2),
        "finetune_all-seed4": UNET_FINETUNE.format("all", 4),
        "finetune_artefacts-seed3": UNET_FINETUNE.format("all_artefacts", 3),
        "finetune_artefacts-seed5": UNET_FINETUNE.format("all_artefacts", 5),
    },
    "ph2_segnet": {
        "base": SEGNET.format("100", "all", ""),
        "longer": SEGNET.format("100+80", "all", ""),
        "averaged": SEGNET.format("100+80+40", "all", "-ema0.99-exact"),
        "finetune_artefacts-seed3": SEGNET.format("100+80+40+40", "all_artefacts", "-ema0.99"),
        "finetune_artefacts-seed4": SEGNET.format(
            "100+80+40+40", "all_artefacts", "-ema0.99-seed4"
        ),
        "finetune_artefacts-seed6": SEGNET.format(
            "100+80+40+40", "all_artefacts", "-ema0.99-seed6"
        ),
        "finetune_all-seed3": SEGNET.format("100+80+40+40", "all", "-ema0.99"),
        "finetune_all-seed5": SEGNET.format("100+80+40+40", "all", "-ema0.99-seed5"),
    },
    "lesion_unet": {"fold0": "fold0", "fold1": "fold1", "fold2": "fold2"},
}
# Starting checkpoints rebuilt from a published SavedModel (results/v2-models/README.md), and
# the run record of the weights each holds.
REBUILT_STARTS = {
    "/tmp/soup/unet3.keras": RECORDED_RUNS["ph2_unet"]["base"],
    "/tmp/ctl/v6/best.keras": RECORDED_RUNS["ph2_segnet"]["averaged"],
}


def training_fields(config):
    """A config's fields that decide training, not where its files are, with the defaults of
    fields older records lack. `init_from` is left out too: the records name the start under the
    paths of the machines they ran on (the chain itself is checked on its own)."""
    return {
        field.name: config.get(field.name, field.default)
        for field in dataclasses.fields(TrainConfig)
        if field.name not in (*runs.PATH_FIELDS, "init_from")
    }


def runs_of(recipe, stage_names, runs_root=recipes.DEFAULT_RUNS_ROOT):
    """`{run name: TrainConfig}` of the given stages."""
    return {
        pathlib.Path(cfg.out_dir).name: cfg
        for name in stage_names
        for cfg in recipes.stage_configs(recipe, name, runs_root)
    }


@pytest.fixture(scope="module")
def committed():
    return {path.stem: recipes.load(path) for path in COMMITTED}


def test_every_served_model_has_a_recipe_and_every_stage_resolves(committed, tmp_path):
    served = {path.parent.name for path in (REPO_ROOT / "saved_models").glob("*/README.md")}
    assert set(committed) == served == {"ph2_unet", "ph2_segnet", "lesion_unet"}
    for name, recipe in committed.items():
        assert recipe.name == name and recipe.export.model_name == name
        order = list(recipe.stages)
        for position, stage in enumerate(recipe.stages.values()):
            configs = recipes.stage_configs(recipe, stage.name, tmp_path / "runs")
            assert [cfg.seed for cfg in configs] == list(stage.seeds)
            for cfg in configs:
                assert isinstance(cfg, TrainConfig)
                dataclasses.replace(cfg, init_from=None).validate()  # the start is not trained
                assert pathlib.Path(cfg.out_dir).parent == tmp_path / "runs" / name
                assert cfg.model == recipe.model
                if stage.init_from is None:
                    assert cfg.init_from == stage.init_from_version
                else:
                    assert order.index(stage.init_from) < position
                    (start,) = recipes.stage_configs(recipe, stage.init_from, tmp_path / "runs")
                    assert cfg.init_from == str(pathlib.Path(start.out_dir) / BEST_MODEL_FILE)


def test_every_run_of_a_committed_recipe_is_its_run_record(committed):
    """Each run trains as its record in results/v2-models/ did, from the run its record
    started from."""
    for name, recipe in committed.items():
        runs = runs_of(recipe, recipe.stages)
        assert set(runs) == set(RECORDED_RUNS[name])
        for run, cfg in runs.items():
            record_dir = RECORDS[name] / RECORDED_RUNS[name][run]
            record = json.loads((record_dir / CONFIG_FILE).read_text())
            assert training_fields(record) == training_fields(dataclasses.asdict(cfg)), run
            stage = recipe.stages[run.split("-seed")[0]]
            if stage.init_from is None:
                assert record.get("init_from") == stage.init_from_version, run
                continue
            recorded_start = record["init_from"]
            started_from = REBUILT_STARTS.get(
                recorded_start, pathlib.Path(recorded_start).parent.name
            )
            assert started_from == RECORDED_RUNS[name][stage.init_from], run


def test_soup_and_export_of_a_committed_recipe_are_the_served_version(committed):
    """The candidates of the served version's soup are the recipe's soup runs, the published
    versions it read are the runs the recipe names, and it serves with the recipe's options."""
    for recipe in committed.values():
        model_dir = REPO_ROOT / "saved_models" / recipe.export.model_name
        served = max(
            (p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        source = json.loads((served / "metrics.json").read_text())["source"]
        # Versions exported before refinement existed record no "refine": they have none; and
        # none records the default rule or pass: the largest component, one pass.
        defaults = {"refine": None, "component_rule": "largest", "flip_tta": False}
        assert {**defaults, **source["serving"]} == {
            "threshold": recipe.export.threshold,
            "largest_component": recipe.export.largest_component,
            "refine": recipe.export.refine,
            "component_rule": recipe.export.component_rule,
            "flip_tta": recipe.export.flip_tta,
        }
        candidates = source["soup"]["configs"]
        runs = runs_of(recipe, recipe.soup.ingredients)

        def key(config):
            return json.dumps(training_fields(config), sort_keys=True)

        assert {key(c) for c in candidates.values()} == {
            key(dataclasses.asdict(cfg)) for cfg in runs.values()
        }
        for version, run in recipe.soup.published_versions.items():
            recorded = candidates[f"saved_models/{version}"]
            assert key(recorded) == key(dataclasses.asdict(runs[run])), version


MINIMAL = {
    "name": "tiny",
    "stages": {
        "base": {
            "profile": "small",
            "train": {"model": "unet", "image_size": 32, "epochs": 1},
            "seeds": [0],
        },
        "finetune": {
            "profile": "small",
            "init_from": "base",
            "train": {"model": "unet", "image_size": 32, "epochs": 1, "ema_momentum": 0.9},
            "seeds": [1, 2],
        },
    },
    "soup": {"ingredients": ["base", "finetune"]},
    "export": {"model_name": "ph2_tiny", "threshold": 0.5, "largest_component": True},
}


def write_recipe(tmp_path, change=None, data=MINIMAL):
    """Writes a copy of `data`, after `change(copy)`, as a recipe file; returns its path."""
    data = copy.deepcopy(data)
    if change:
        change(data)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(data))
    return path


def test_a_minimal_recipe_resolves_seeds_and_starts(tmp_path):
    recipe = recipes.load(write_recipe(tmp_path))
    configs = recipes.stage_configs(recipe, "finetune", tmp_path / "r", data_dir="d")
    assert [cfg.out_dir for cfg in configs] == [
        str(tmp_path / "r" / "tiny" / "finetune-seed1"),
        str(tmp_path / "r" / "tiny" / "finetune-seed2"),
    ]
    assert {cfg.init_from for cfg in configs} == {str(tmp_path / "r/tiny/base/best.keras")}
    assert [cfg.seed for cfg in configs] == [1, 2] and configs[0].data_dir == "d"
    assert configs[0].width == 0.125 and configs[0].image_size == 32  # profile, then overrides
    assert recipes.soup_ingredients(recipe, "r") == [
        pathlib.Path("r/tiny/base"),
        pathlib.Path("r/tiny/finetune-seed1"),
        pathlib.Path("r/tiny/finetune-seed2"),
    ]
    assert recipe.soup.method == "greedy"


def test_a_uniform_soup_of_a_version_and_last_epochs_is_declared_in_the_recipe(tmp_path):
    def uniform(data):
        data["soup"] = {
            "ingredients": ["finetune"],
            "method": "uniform",
            "model_file": "last.keras",
            "versions": ["saved_models/ph2_tiny/3"],
        }

    recipe = recipes.load(write_recipe(tmp_path, uniform))
    assert recipe.soup.method == "uniform"
    assert recipes.soup_ingredients(recipe, "r") == [
        pathlib.Path("saved_models/ph2_tiny/3"),
        pathlib.Path("r/tiny/finetune-seed1/last.keras"),
        pathlib.Path("r/tiny/finetune-seed2/last.keras"),
    ]


def test_every_experiment_config_is_a_recipe_of_a_served_model():
    served = {path.parent.name for path in (REPO_ROOT / "saved_models").glob("*/README.md")}
    experiments = sorted((CONFIGS / "experiments").glob("*.json"))
    assert experiments
    for path in experiments:
        recipe = recipes.load(path)  # raises on any bad field
        assert recipe.export.model_name in served, path
        assert recipe.name != recipe.export.model_name, path  # its runs stay apart from a remake's


def _set(keys, value):
    def change(data):
        *parents, last = keys
        for key in parents:
            data = data[key]
        data[last] = value

    return change


def _drop(keys):
    def change(data):
        *parents, last = keys
        for key in parents:
            data = data[key]
        del data[last]

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set(["colour"], "red"), "colour is not a recipe field here"),
        (_set(["stages", "base", "epochs"], 3), "stages.base.epochs is not a recipe field here"),
        (_set(["export", "format"], "tf"), "export.format is not a recipe field here"),
        (_set(["stages", "base", "train", "speed"], 1), "base.train.speed is not a TrainConfig"),
        (_set(["stages", "base", "train", "seed"], 1), "base.train.seed is set by the recipe"),
        (
            _set(["stages", "base", "train", "learning_rate"], -1),
            "stages.base.train.learning_rate must be a finite number > 0, received -1",
        ),
        (_set(["stages", "base", "train", "augment"], "lots"), "base.train.augment must be one"),
        (_set(["stages", "base", "profile"], "huge"), "stages.base.profile must be one of"),
        (_set(["stages", "base", "seeds"], []), "stages.base.seeds must be a non-empty list"),
        (_set(["stages", "base", "seeds"], [1, 1]), "stages.base.seeds must be a non-empty list"),
        (_drop(["stages", "base", "seeds"]), "stages.base.seeds is missing"),
        (_drop(["export"]), "export is missing"),
        (_set(["export", "threshold"], 1.5), "export.threshold must be a number strictly"),
        (_set(["export", "largest_component"], "yes"), "largest_component must be true or false"),
        (_set(["export", "flip_tta"], 1), "export.flip_tta must be true or false, received 1"),
        (_set(["export", "refine"], 0.5), "export.refine must be null or a finite number >= 1"),
        (_set(["export", "refine"], True), "export.refine must be null or a finite number >= 1"),
        (
            _set(["export", "component_rule"], "nearest"),
            "export.component_rule must be one of ['largest', 'most_confident']",
        ),
        (_set(["name"], "Tiny Model"), "name must be lower-case letters"),
        (
            _set(["soup", "ingredients"], ["base", "later"]),
            "soup.ingredients names 'later', which is not a stage",
        ),
        (
            _set(["soup", "published_versions"], {"ph2_tiny/1": "finetune"}),
            "soup.published_versions.ph2_tiny/1 must name a run",
        ),
        (_set(["soup", "method"], "best"), "soup.method must be one of ('greedy', 'uniform')"),
        (_set(["soup", "model_file"], "x.keras"), "soup.model_file must be 'best.keras' or"),
        (_set(["soup", "versions"], "saved_models/a/1"), "soup.versions must be a list of"),
        (_set(["soup", "versions"], ["v/1", "v/1"]), "soup.versions must be a list of distinct"),
        (
            _set(["stages", "finetune", "train", "width"], 0.25),
            "stages.finetune builds width=0.25 where stage 'base' builds 0.125",
        ),
    ],
)
def test_a_bad_recipe_is_one_error_naming_the_file_and_the_field(tmp_path, change, message):
    path = write_recipe(tmp_path, change)
    with pytest.raises(recipes.RecipeError) as error:
        recipes.load(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_stage_can_only_start_from_an_earlier_single_run_stage(tmp_path):
    def forward(data):  # base starts from the stage after it, which starts from base: a cycle
        data["stages"]["base"]["init_from"] = "finetune"

    def itself(data):
        data["stages"]["finetune"]["init_from"] = "finetune"

    def several(data):
        data["stages"]["again"] = {**data["stages"]["finetune"], "init_from": "finetune"}

    for change, message in [
        (forward, "stages.base.init_from must name a stage listed before 'base'"),
        (itself, "stages.finetune.init_from must name a stage listed before 'finetune'"),
        (several, "stages.again.init_from names 'finetune', which has several seeds"),
    ]:
        with pytest.raises(recipes.RecipeError, match=message):
            recipes.load(write_recipe(tmp_path, change))


def test_a_stage_can_start_from_a_published_version_instead(tmp_path):
    def from_version(data):
        data["stages"]["base"]["init_from_version"] = "saved_models/ph2_unet/7"

    recipe = recipes.load(write_recipe(tmp_path, from_version))
    (base,) = recipes.stage_configs(recipe, "base", tmp_path / "r")
    assert base.init_from == "saved_models/ph2_unet/7"

    def both(data):
        data["stages"]["finetune"]["init_from_version"] = "saved_models/ph2_unet/7"

    with pytest.raises(
        recipes.RecipeError, match="stages.finetune.init_from_version and init_from cannot both"
    ):
        recipes.load(write_recipe(tmp_path, both))


def test_unknown_stage_and_unreadable_files_are_named(tmp_path):
    recipe = recipes.load(write_recipe(tmp_path))
    with pytest.raises(
        recipes.RecipeError, match="no stage 'other'; its stages are base, finetune"
    ):
        recipes.stage_configs(recipe, "other")
    with pytest.raises(recipes.RecipeError, match="missing.json: cannot read it"):
        recipes.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(recipes.RecipeError, match="broken.json: not valid JSON"):
        recipes.load(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(recipes.RecipeError, match="list.json: the recipe must be a JSON object"):
        recipes.load(tmp_path / "list.json")
    twice = json.dumps(MINIMAL).replace('"seeds": [0]', '"seeds": [0], "seeds": [3]')
    (tmp_path / "twice.json").write_text(twice)
    with pytest.raises(recipes.RecipeError, match="twice.json: seeds appears twice"):
        recipes.load(tmp_path / "twice.json")


def error_line(capsys, command):
    """Runs `python -m ph2_tf <command>`; returns its status and its one stderr line."""
    status = cli.main(command)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return status, err.strip()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "1e-3"], "--lr cannot be combined with --config"),
        (["--epochs", "100"], "--epochs cannot be combined with --config"),
        (["--profile", "full"], "--profile cannot be combined with --config"),
        (["--colour-constancy"], "--colour-constancy cannot be combined with --config"),
        (["--no-deterministic"], "--no-deterministic cannot be combined with --config"),
        (["--out-dir", "somewhere"], "--out-dir cannot be combined with --config"),
        (["--seed", "7"], "--seed 7 is not a seed of stage 'finetune_all'"),
    ],
)
def test_train_with_config_refuses_flags_that_set_the_training(capsys, tmp_path, flags, message):
    config = str(CONFIGS / "ph2_unet.json")
    command = ["train", "--config", config, "--stage", "finetune_all", "--runs-root", str(tmp_path)]
    status, err = error_line(capsys, [*command, *flags])
    assert status == 2 and err.startswith("python -m ph2_tf train: error: ")
    assert message in err
    assert not any(tmp_path.iterdir())


def test_train_with_config_needs_a_known_stage_whose_start_has_finished(capsys, tmp_path):
    config = str(CONFIGS / "ph2_segnet.json")
    train = ["train", "--config", config, "--runs-root", str(tmp_path)]
    status, err = error_line(capsys, train)
    assert (status, err) == (
        2,
        "python -m ph2_tf train: error: --config needs --stage, the stage to train",
    )
    status, err = error_line(capsys, [*train, "--stage", "polish"])
    assert status == 2 and f"{config}: no stage 'polish'; its stages are base, longer" in err
    status, err = error_line(capsys, [*train, "--stage", "longer"])
    assert status == 2
    assert f"stage 'base' of {config} has not been trained: {tmp_path}/ph2_segnet/base" in err
    assert "--stage base" in err
    status, err = error_line(capsys, ["train", "--stage", "base"])
    assert status == 2 and "--stage needs --config" in err
    bad = write_recipe(tmp_path, _set(["stages", "base", "train", "epochs"], 0))
    status, err = error_line(capsys, ["train", "--config", str(bad), "--stage", "base"])
    assert status == 2 and f"{bad}: stages.base.train.epochs must be an integer >= 1" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.json"]  # nothing trained


def test_soup_and_export_with_config_refuse_what_contradicts_the_recipe(capsys, tmp_path):
    config = str(CONFIGS / "ph2_segnet.json")
    status, err = error_line(
        capsys, ["soup", "--config", config, "--runs-root", str(tmp_path), "--out-dir", "s"]
    )
    assert status == 2 and "stage 'averaged' of" in err and "has not been trained" in err
    status, err = error_line(capsys, ["soup", "run_a", "--config", config, "--out-dir", "s"])
    assert status == 2 and "the ingredients come from --config" in err
    status, err = error_line(capsys, ["soup", "--out-dir", "s"])
    assert status == 2 and "give the ingredients' directories, or a recipe with --config" in err
    no_soup = write_recipe(tmp_path, _drop(["soup"]))
    status, err = error_line(capsys, ["soup", "--config", str(no_soup), "--out-dir", "s"])
    assert status == 2 and f"{no_soup}: has no soup section" in err
    greedy = ["soup", "--config", str(write_recipe(tmp_path)), "--uniform", "--out-dir", "s"]
    status, err = error_line(capsys, greedy)
    assert status == 2 and "--uniform contradicts" in err and "whose soup is greedy" in err

    export = ["export", "--config", config, "--run-dir", str(tmp_path / "soup")]
    for flags, message in [
        (
            ["--model-name", "ph2_unet"],
            f'ph2_unet contradicts {config}, whose export sets model_name "ph2_segnet"',
        ),
        (["--threshold", "0.6"], "--threshold 0.6 contradicts"),
        (["--refine", "2"], "--refine 2.0 contradicts"),
        (["--component-rule", "most_confident"], "--component-rule most_confident contradicts"),
    ]:
        status, err = error_line(capsys, [*export, *flags])
        assert status == 2 and err.startswith("python -m ph2_tf export: error: ") and message in err
    plain = write_recipe(tmp_path, _set(["export", "largest_component"], False))
    status, err = error_line(
        capsys, ["export", "--config", str(plain), "--run-dir", "x", "--largest-component"]
    )
    assert status == 2 and "--largest-component contradicts" in err
    one_pass = str(write_recipe(tmp_path))  # no flip_tta: one pass
    status, err = error_line(
        capsys, ["export", "--config", one_pass, "--run-dir", "x", "--flip-tta"]
    )
    assert status == 2 and f"--flip-tta contradicts {one_pass}, whose export sets flip_tta" in err
    assert not (tmp_path / "soup").exists()


@pytest.mark.slow
def test_a_tiny_recipe_trains_stage_by_stage_then_soups_and_exports(ph2_dummy, tmp_path, capsys):
    path = write_recipe(tmp_path)
    runs_root, base_dir, soup_dir = tmp_path / "runs", tmp_path / "saved_models", tmp_path / "soup"
    data = ["--data-dir", ph2_dummy.data_dir, "--manual-dir", ph2_dummy.manual_dir]
    recipe_args = ["--config", str(path), "--runs-root", str(runs_root)]

    status, err = error_line(capsys, ["train", *recipe_args, "--stage", "finetune", *data])
    assert status == 2 and "stage 'base'" in err and "has not been trained" in err
    assert cli.main(["train", *recipe_args, "--stage", "base", *data]) == 0
    assert cli.main(["train", *recipe_args, "--stage", "finetune", *data]) == 0
    capsys.readouterr()
    finetuned = TrainConfig.load(runs_root / "tiny" / "finetune-seed2" / CONFIG_FILE)
    assert finetuned.init_from == str(runs_root / "tiny" / "base" / BEST_MODEL_FILE)
    assert finetuned.seed == 2 and finetuned.ema_momentum == 0.9 and finetuned.epochs == 1

    log = runs_root / "tiny" / "base" / LOG_FILE
    before = log.stat().st_mtime_ns
    assert cli.main(["train", *recipe_args, "--stage", "base", *data]) == 0
    assert "already trained, skipped" in capsys.readouterr().err
    assert log.stat().st_mtime_ns == before

    assert cli.main(["soup", *recipe_args, "--out-dir", str(soup_dir), *data]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    candidates = {str(p) for p in recipes.soup_ingredients(recipes.load(path), runs_root)}
    assert printed["ingredients"] and set(printed["ingredients"]) <= candidates

    export = ["export", "--config", str(path), "--run-dir", str(soup_dir)]
    assert cli.main([*export, "--base-dir", str(base_dir), "--if-better", *data]) in (0, None)
    source = json.loads((base_dir / "ph2_tiny" / "1" / "metrics.json").read_text())["source"]
    assert source["serving"] == {"threshold": 0.5, "largest_component": True, "refine": None}
    assert source["soup"]["ingredients"] == printed["ingredients"]

    # The published version and the fine-tunes' last epochs, every one kept.
    version = str(base_dir / "ph2_tiny" / "1")

    def uniform(data):
        data["soup"] = {
            "ingredients": ["finetune"],
            "method": "uniform",
            "model_file": "last.keras",
            "versions": [version],
        }

    (tmp_path / "uniform").mkdir()
    uniform_path = write_recipe(tmp_path / "uniform", uniform)
    uniform_dir = tmp_path / "uniform_soup"
    soup_args = ["--config", str(uniform_path), "--runs-root", str(runs_root)]
    assert cli.main(["soup", *soup_args, "--out-dir", str(uniform_dir), *data]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    finetunes = [runs_root / "tiny" / f"finetune-seed{seed}" / "last.keras" for seed in (1, 2)]
    assert printed["ingredients"] == [version, *map(str, finetunes)]
    assert "uniform soup" in json.loads((uniform_dir / "soup.json").read_text())["method"]
