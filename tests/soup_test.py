"""Tests of ph2_tf.experiments.soup: weight means of fine-tuned runs, chosen greedily on
validation.
"""

import dataclasses
import json
import shutil
import zipfile

import keras
import numpy as np
import pytest
from publish_test import IMAGE_SIZE, constant_model

from ph2_tf import cli
from ph2_tf.data.external import Case
from ph2_tf.experiments import soup, stress_sets
from ph2_tf.models import build_model
from ph2_tf.serving import export, publish
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.runs import BEST_MODEL_FILE, CONFIG_FILE, LAST_MODEL_FILE, load_trained


def ingredient(name, *values):
    return soup.Ingredient(name, {"model": "unet", "loss": "bce"}, [np.array(v) for v in values])


def test_average_is_the_element_wise_mean_in_the_weights_dtype():
    first = [np.array([[1.0, 2.0]], np.float32), np.array([0.5], np.float32)]
    second = [np.array([[3.0, 6.0]], np.float32), np.array([-0.5], np.float32)]
    mean = soup.average([first, second])
    np.testing.assert_array_equal(mean[0], [[2.0, 4.0]])
    np.testing.assert_array_equal(mean[1], [0.0])
    assert all(array.dtype == np.float32 for array in mean)


def test_greedy_soup_adds_best_first_and_leaves_out_what_lowers_the_score():
    # The score is highest when the (single) weight is 1.
    ingredients = [ingredient("far", [10.0]), ingredient("low", [0.0]), ingredient("high", [2.0])]

    def score(weights):
        return -abs(float(weights[0][0]) - 1.0)

    kept, steps = soup.greedy_soup(ingredients, score)

    # "low" and "high" both score -1 alone; the tie keeps the given order.
    assert [i.path for i in kept] == ["low", "high"]
    assert [(s["added"], s["kept"]) for s in steps] == [
        ("low", True), ("high", True), ("far", False)
    ]  # fmt: skip
    assert [s["soup_score"] for s in steps] == [-1.0, 0.0, -3.0]
    assert steps[2]["score"] == -9.0


def test_uniform_soup_keeps_every_ingredient_and_scores_only_their_mean():
    ingredients = [ingredient("far", [10.0]), ingredient("low", [0.0]), ingredient("high", [2.0])]
    scored = []

    def score(weights):
        scored.append(float(weights[0][0]))
        return -abs(float(weights[0][0]) - 1.0)

    kept, steps = soup.uniform_soup(ingredients, score)

    assert kept == ingredients and scored == [4.0]
    assert steps == [{"added": ["far", "low", "high"], "soup_score": -3.0, "kept": True}]
    with pytest.raises(ValueError, match="'d' has 2 weights"):
        soup.uniform_soup([ingredients[0], ingredient("d", [1.0], [2.0])], score)


def test_check_compatible_names_the_ingredient_that_differs():
    base = ingredient("a", [1.0])
    wider = soup.Ingredient("b", {**base.config, "width": 0.5}, [np.array([1.0])])
    with pytest.raises(ValueError, match=r"'b' has width=0.5 where 'a' has None"):
        soup.check_compatible([base, wider])
    two_classes = soup.Ingredient("c", {**base.config, "loss": "cross_entropy"}, base.weights)
    with pytest.raises(ValueError, match="'c' has classes=2 where 'a' has 1"):
        soup.check_compatible([base, two_classes])
    longer = ingredient("d", [1.0], [2.0])
    with pytest.raises(ValueError, match="'d' has 2 weights that do not match the 1 of 'a'"):
        soup.check_compatible([base, longer])
    with pytest.raises(ValueError, match="at least one ingredient"):
        soup.check_compatible([])


@pytest.mark.slow
def test_soup_command_mixes_runs_and_versions_and_export_records_it(ph2_dummy, tmp_path, capsys):
    base_dir = tmp_path / "saved_models"
    start = tmp_path / "start.keras"
    constant_model(0.0).save(start)
    config = TrainConfig(
        image_size=IMAGE_SIZE, width=0.125, data_dir=ph2_dummy.data_dir, init_from=str(start)
    )

    def run(logit, name):
        run_dir = tmp_path / name
        run_dir.mkdir()
        constant_model(logit).save(run_dir / BEST_MODEL_FILE)
        config.save(run_dir / CONFIG_FILE)
        return run_dir

    export_args = ["--model-name", "ph2_unet", "--base-dir", str(base_dir), "--if-better"]
    assert cli.main(["export", "--run-dir", str(run(50.0, "lesion")), *export_args]) in (0, None)
    version = base_dir / "ph2_unet" / "1"
    # Every pixel lesion in the first two; the third's logit outweighs their mean, 40.
    runs = [str(version), str(run(30.0, "lesion too")), str(run(-200.0, "background"))]
    start.unlink()  # as a fine-tuned run's starting checkpoint often is by the time of its soup
    out_dir = tmp_path / "soup"

    status = cli.main(["soup", *runs, "--out-dir", str(out_dir)])

    assert status == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert printed["ingredients"] == runs[:2]
    record = json.loads((out_dir / soup.SOUP_FILE).read_text())
    assert [step["kept"] for step in record["steps"]] == [True, True, False]
    assert record["steps"][2]["soup_score"] == 0.0 < record["validation_jaccard"]
    model, cfg = load_trained(out_dir)
    assert cfg.image_size == IMAGE_SIZE and cfg.out_dir == str(out_dir) and cfg.init_from is None
    assert record["configs"][runs[0]]["init_from"] == str(start)
    ingredients = [soup.load_ingredient(path) for path in runs[:2]]
    expected = soup.average([i.weights for i in ingredients])
    for weight, value in zip(model.weights, expected, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), value, rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[-1].bias), [40.0])

    other_base_dir = tmp_path / "other_saved_models"
    export_soup = ["export", "--run-dir", str(out_dir), "--model-name", "ph2_unet"]
    assert cli.main([*export_soup, "--base-dir", str(other_base_dir), "--if-better"]) in (0, None)
    published = json.loads((other_base_dir / "ph2_unet" / "1" / publish.METRICS_FILE).read_text())
    assert published["source"]["soup"]["ingredients"] == runs[:2]
    assert cli.main(["soup", *runs, "--out-dir", str(out_dir)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_a_version_with_folded_batch_norm_is_unfolded_to_the_runs_function(ph2_dummy, tmp_path):
    run_dir, base_dir = tmp_path / "run", tmp_path / "saved_models"
    run_dir.mkdir()
    model = build_model("segnet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width=0.125)
    model.save(run_dir / BEST_MODEL_FILE)
    TrainConfig(
        model="segnet", image_size=IMAGE_SIZE, width=0.125, data_dir=ph2_dummy.data_dir
    ).save(run_dir / CONFIG_FILE)
    args = ["--run-dir", str(run_dir), "--base-dir", str(base_dir), "--model-name", "segnet"]
    assert cli.main(["export", *args, "--if-better"]) in (0, None)

    version = soup.load_ingredient(base_dir / "segnet" / "1", data_dir=ph2_dummy.data_dir)

    # Export folded the BatchNorm away; the ingredient has every weight of the run again, and
    # the model they make computes what the run's model does.
    run = soup.load_ingredient(run_dir)
    assert [w.shape for w in version.weights] == [w.shape for w in run.weights]
    rebuilt = build_model("segnet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width=0.125)
    rebuilt.set_weights(version.weights)
    images = np.random.default_rng(0).random((2, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    np.testing.assert_allclose(rebuilt.predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-4)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_version(tmp_path_factory):
    """A published version of `constant_model(1.0)` whose metrics.json records its config."""
    version_dir = tmp_path_factory.mktemp("saved_models") / "ph2_unet" / "1"
    export.write_saved_model(constant_model(1.0), version_dir, IMAGE_SIZE)
    config = dataclasses.asdict(TrainConfig(image_size=IMAGE_SIZE, width=0.125))
    (version_dir / publish.METRICS_FILE).write_text(json.dumps({"source": {"config": config}}))
    return version_dir


def damaged_ingredient(tmp_path, tiny_version, damage):
    """An ingredient `soup` cannot use, and the reason it must give."""
    path = tmp_path / damage.replace(" ", "_")
    if damage == "missing":
        return path, "is neither a run directory (no best.keras), a run's .keras file, nor a"
    if damage == "damaged run":
        path.mkdir()
        with zipfile.ZipFile(path / BEST_MODEL_FILE, "w") as archive:
            archive.writestr("notes.txt", "not a model")
        TrainConfig(image_size=IMAGE_SIZE).save(path / CONFIG_FILE)
        return path, "best.keras: not a readable Keras model file"
    if damage == "model file without config":
        path.mkdir()
        constant_model(1.0).save(path / LAST_MODEL_FILE)
        return path / LAST_MODEL_FILE, "config.json: not a readable run config"
    shutil.copytree(tiny_version, path)
    metrics = json.loads((path / publish.METRICS_FILE).read_text())
    if damage == "damaged version":
        (path / "saved_model.pb").write_bytes(b"cut")
        return path, f"cannot load the SavedModel {path}"
    if damage == "unknown architecture":
        metrics["source"]["config"]["model"] = "resnet"
        reason = "its training config (source.config) builds no model"
    else:  # a config no run could have had
        metrics["source"]["config"]["epochs"] = 0
        reason = "its training config is not valid: epochs must be an integer >= 1"
    (path / publish.METRICS_FILE).write_text(json.dumps(metrics))
    return path, reason


@pytest.mark.parametrize(
    "damage",
    [
        "missing",
        "damaged run",
        "model file without config",
        "damaged version",
        "unknown architecture",
        "invalid config",
    ],
)
def test_an_ingredient_that_cannot_be_used_is_one_line_before_any_scoring(
    damage, tiny_version, tmp_path, capsys
):
    path, reason = damaged_ingredient(tmp_path, tiny_version, damage)
    out_dir = tmp_path / "soup"

    status = cli.main(["soup", str(tiny_version), str(path), "--out-dir", str(out_dir)])

    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("python -m ph2_tf soup: error: ") and reason in err
    assert not out_dir.exists() and not out_dir.with_name("soup.partial").exists()


def test_a_soup_chosen_on_a_selection_folder_scores_on_it_alone(tmp_path, capsys):
    # A folder whose masks are empty: there, the run that marks nothing is the best, while on
    # PH2 validation (not read here: its data dir does not exist) it would be the worst.
    folder = tmp_path / "no_lesion"
    rng = np.random.default_rng(0)
    stress_sets.write_folder(
        [
            Case(f"IMG{i}", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), np.zeros((20, 30)))
            for i in range(2)
        ],
        folder,
    )
    config = TrainConfig(image_size=IMAGE_SIZE, width=0.125, data_dir=str(tmp_path / "no_data"))
    runs = []
    for logit, name in ((30.0, "lesion"), (-1.0, "background")):
        run_dir = tmp_path / name
        run_dir.mkdir()
        constant_model(logit).save(run_dir / BEST_MODEL_FILE)
        config.save(run_dir / CONFIG_FILE)
        runs.append(str(run_dir))
    out_dir = tmp_path / "soup"

    status = cli.main(["soup", *runs, "--out-dir", str(out_dir), "--selection-set", str(folder)])

    assert status == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    # Alone, "background" scores 1 there; with "lesion" the mean logit, 14.5, marks everything.
    assert printed == {"run_dir": str(out_dir), "ingredients": runs[1:], "selection_jaccard": 1.0}
    record = json.loads((out_dir / soup.SOUP_FILE).read_text())
    assert record["selection_set"] == str(folder) and "validation_jaccard" not in record
    assert record["selection"].startswith("no_lesion jaccard through the serving signature")
    assert [step["soup_score"] for step in record["steps"]] == [1.0, 0.0]
    # The uniform soup keeps both, and is their mean's score alone.
    uniform_dir = tmp_path / "uniform"
    status = cli.main(["soup", *runs, "--out-dir", str(uniform_dir), "--selection-set",
                       str(folder), "--uniform"])  # fmt: skip
    assert status == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert printed["ingredients"] == runs and printed["selection_jaccard"] == 0.0
    record = json.loads((uniform_dir / soup.SOUP_FILE).read_text())
    assert record["method"].startswith("uniform soup") and len(record["steps"]) == 1
    model, _ = load_trained(uniform_dir)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[-1].bias), [14.5])
    # A run's other model file is an ingredient by its path: here the "lesion" run's last
    # epoch marks nothing, and so scores 1 where its best.keras scores 0.
    constant_model(-1.0).save(tmp_path / "lesion" / LAST_MODEL_FILE)
    last = str(tmp_path / "lesion" / LAST_MODEL_FILE)
    status = cli.main(["soup", last, "--out-dir", str(tmp_path / "last"), "--selection-set",
                       str(folder), "--uniform"])  # fmt: skip
    assert status == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert printed["ingredients"] == [last] and printed["selection_jaccard"] == 1.0
    status = cli.main(["soup", *runs, "--out-dir", "x", "--selection-set", str(tmp_path)])
    error = capsys.readouterr().err
    assert status == 2 and f"--selection-set {tmp_path}: no images/ folder" in error


def test_a_soup_scores_its_ingredients_with_the_serving_options_given(tmp_path, capsys):
    # Empty masks again. A logit of -1 (probability 0.27) marks nothing at the default threshold
    # 0.5 and everything at 0.2; the soup must see the second, as the served model would.
    folder = tmp_path / "no_lesion"
    rng = np.random.default_rng(0)
    stress_sets.write_folder(
        [Case("IMG0", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), np.zeros((20, 30)))],
        folder,
    )
    config = TrainConfig(image_size=IMAGE_SIZE, width=0.125, data_dir=str(tmp_path / "no_data"))
    runs = []
    for logit, name in ((-1.0, "unsure"), (-5.0, "sure")):
        run_dir = tmp_path / name
        run_dir.mkdir()
        constant_model(logit).save(run_dir / BEST_MODEL_FILE)
        config.save(run_dir / CONFIG_FILE)
        runs.append(str(run_dir))
    chosen_on = ["--selection-set", str(folder)]

    status = cli.main(["soup", *runs, "--out-dir", str(tmp_path / "soup"), *chosen_on,
                       "--threshold", "0.2", "--largest-component"])  # fmt: skip

    assert status == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "soup" / soup.SOUP_FILE).read_text())
    assert record["serving"] == {"threshold": 0.2, "largest_component": True, "refine": None}
    # "sure" first; with "unsure" the mean logit is -3, still under the threshold.
    assert [(s["added"], s["score"], s["soup_score"]) for s in record["steps"]] == [
        (runs[1], 1.0, 1.0), (runs[0], 0.0, 1.0)
    ]  # fmt: skip
    assert cli.main(["soup", *runs, "--out-dir", str(tmp_path / "plain"), *chosen_on]) == 0
    record = json.loads((tmp_path / "plain" / soup.SOUP_FILE).read_text())
    assert record["serving"] == {"threshold": 0.5, "largest_component": False, "refine": None}
    assert [s["score"] for s in record["steps"]] == [1.0, 1.0]


def test_a_flag_that_contradicts_the_recipe_is_one_line(tmp_path, capsys):
    status = cli.main(["soup", "--config", "configs/ph2_segnet.json", "--threshold", "0.3",
                       "--out-dir", str(tmp_path / "soup")])  # fmt: skip

    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "--threshold 0.3 contradicts configs/ph2_segnet.json, whose export sets threshold" in err
    assert not (tmp_path / "soup").exists()
