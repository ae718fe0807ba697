"""Tests of ph2_tf.serving.cards and the `card` command: a served model's README.md says what its
files record, and nothing they do not.
"""

import dataclasses
import json
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import REPO_ROOT

from ph2_tf import cli
from ph2_tf.experiments import soup
from ph2_tf.models import build_model
from ph2_tf.serving import cards, export, publish, versions
from ph2_tf.serving.folding import fold_batch_normalization
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.runs import BEST_MODEL_FILE, CONFIG_FILE

IMAGE_SIZE = 32
WIDTH = 0.125
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny_unet():
    return build_model("unet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width=WIDTH)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny UNet's serving SavedModel, and the number of values the served graph stores."""
    model = tiny_unet()
    path = tmp_path_factory.mktemp("saved_model") / "model"
    export.write_saved_model(model, path, IMAGE_SIZE)
    served = fold_batch_normalization(model)
    return path, sum(math.prod(weight.shape) for weight in served.weights)


def metrics_record(validation_jaccard, *, provenance=True):
    """A `metrics.json` as `publish.write_metrics` writes it, with made-up test values."""
    config = TrainConfig(
        image_size=IMAGE_SIZE, width=WIDTH, seed=7, augment="all", out_dir="/tmp/run-17"
    )
    record = {
        "source": {
            "name": "run-17",
            "config": dataclasses.asdict(config),
            "serving": {"threshold": 0.4, "largest_component": False},
        },
        "measured": "serving_default signature, uint8 images at original size, mask output",
        "splits": {
            split: {"split": split, "num_images": 3, "metrics": {"jaccard": jaccard, "dice": 0.25}}
            for split, jaccard in (("validation", validation_jaccard), ("test", 0.654321))
        },
    }
    if provenance:
        record["provenance"] = {
            "git": {"commit": COMMIT, "dirty": False},
            "packages": {"tensorflow": "2.99.1", "keras": None},
            "backend": "tensorflow",
            "device": "CPU: test machine, 2 cores",
        }
    return record


def publish_version(model_dir, version, saved_model, metrics=None, extra=None):
    """A version directory holding `saved_model` and, when given, its metrics.json and card.json."""
    version_dir = model_dir / str(version)
    shutil.copytree(saved_model, version_dir)
    if metrics is not None:
        (version_dir / publish.METRICS_FILE).write_text(json.dumps(metrics))
    if extra is not None:
        (version_dir / cards.EXTRA_FILE).write_text(json.dumps(extra))
    return version_dir


def test_card_shows_what_metrics_json_and_the_saved_model_record(saved_model, tmp_path):
    path, parameters = saved_model
    version_dir = publish_version(tmp_path / "ph2_unet", 3, path, metrics_record(0.123456))
    card = cards.model_card(version_dir)
    assert card.startswith("# Model card: `ph2_unet`")
    assert "**version 3**, the highest version" in card
    assert "Older versions are listed in `docs/models.md`" in card
    assert "- Architecture: `unet`, UNet as in the study" in card
    assert f"resized to {IMAGE_SIZE}×{IMAGE_SIZE} inside the serving graph" in card
    assert f"- Width: {WIDTH} × the study's filter counts" in card
    assert f"(values in the SavedModel's variables): {parameters:,}" in card
    # The recipe: the config's fields, but not where the run kept its files.
    assert "| seed | 7 |" in card and "| augment | all |" in card
    assert "| colour_constancy | false |" in card and "| ema_momentum | null |" in card
    assert "out_dir" not in card and "/tmp/run-17" not in card
    assert "- Serving threshold: 0.4" in card and "- Largest component: no" in card
    # Scores, each with where it comes from, and their provenance.
    assert "| PH² validation | serving_default | 3 | 0.1235 | 0.2500 | `metrics.json` |" in card
    assert "| PH² test | serving_default | 3 | 0.6543 | 0.2500 | `metrics.json` |" in card
    prose = " ".join(card.split())  # as read, whatever the wrapping
    assert f"the code of commit {COMMIT} (clean), tensorflow 2.99.1, the tensorflow" in prose
    assert "on CPU: test machine, 2 cores" in prose
    signature = "- `serving_default`: one model call. In: `images` uint8 [None, None, None, 3]."
    assert signature in prose and "- `serving_flip_tta`: the mean probability" in prose
    assert "- Not a medical device" in prose and "- Trained on PH² only" in prose


def test_card_states_the_refining_second_pass_and_its_limit(saved_model, tmp_path):
    path, _ = saved_model
    record = metrics_record(0.5)
    record["source"]["serving"] = {"threshold": 0.5, "largest_component": True, "refine": 1.5}
    card = " ".join(cards.model_card(publish_version(tmp_path / "m", 2, path, record)).split())
    assert "- Refinement: a second pass of the model on a window 1.5 times the bounding box" in card
    assert "one it misses at the first size stays missed" in card
    assert "`serving_default`: one model call, then the same on the window around the" in card
    record["source"]["serving"]["refine"] = None
    card = cards.model_card(publish_version(tmp_path / "m", 3, path, record))
    assert "Refinement" not in card and "stays missed" not in card


def test_card_states_that_the_default_signature_averages_flips(saved_model, tmp_path):
    path, _ = saved_model
    record = metrics_record(0.5)
    record["source"]["serving"] = {"threshold": 0.5, "largest_component": False, "refine": None}
    card = " ".join(cards.model_card(publish_version(tmp_path / "m", 2, path, record)).split())
    assert "- `serving_default`: one model call." in card and "Flip test-time" not in card
    record["source"]["serving"]["flip_tta"] = True
    card = " ".join(cards.model_card(publish_version(tmp_path / "m", 3, path, record)).split())
    assert "- Flip test-time augmentation: yes (`serving_default` averages" in card
    assert "- `serving_default`: the mean probability over the image and its left-right" in card
    assert "- `serving_single_pass`: one model call." in card


def test_card_states_which_component_is_kept_and_what_that_costs(saved_model, tmp_path):
    path, _ = saved_model
    record = metrics_record(0.5)
    serving = {"threshold": 0.4, "largest_component": True, "refine": 2.0}
    record["source"]["serving"] = {**serving, "component_rule": "most_confident"}
    card = " ".join(cards.model_card(publish_version(tmp_path / "m", 2, path, record)).split())
    assert "keeps only the lesion of highest mean probability, its holes filled" in card
    assert "the lesion the first pass finds (its most confident component)" in card
    assert "Only the lesion the model is surest of is kept" in card
    assert "Largest component" not in card and "Only the largest lesion" not in card
    record["source"]["serving"] = serving
    card = " ".join(cards.model_card(publish_version(tmp_path / "m", 3, path, record)).split())
    assert "- Largest component: yes" in card and "Only the largest lesion is kept" in card
    assert "most confident" not in card and "surest" not in card


def test_card_states_the_noise_rule_decision_that_published_it(saved_model, tmp_path):
    path, _ = saved_model
    record = metrics_record(0.5)
    card = cards.model_card(publish_version(tmp_path / "m", 1, path, record))
    assert "noise rule" not in card  # the first version: nothing to beat
    gain = {"gain": 0.0129, "standard_error": 0.0039, "images": 210}
    record["source"]["publishing"] = {
        "selection_signal": "isic2017-select",
        "gains": {"ph2_validation": gain, "isic2017-select": gain, "artefacts": gain},
    }
    card = " ".join(cards.model_card(publish_version(tmp_path / "m", 2, path, record)).split())
    assert (
        "- Published by the noise rule with `isic2017-select` as the selection signal (paired "
        "gain +0.0129 ± 0.0039), and `ph2_validation`, `artefacts` as guards" in card
    )
    record["source"]["publishing"]["forced"] = True
    card = " ".join(cards.model_card(publish_version(tmp_path / "m", 3, path, record)).split())
    assert "Published by hand, over the noise rule's refusal on `isic2017-select` (paired" in card
    assert "Published by the noise rule" not in card


def test_card_leaves_out_what_is_not_recorded(saved_model, tmp_path):
    path, _ = saved_model
    version_dir = publish_version(
        tmp_path / "ph2_unet", 1, path, metrics_record(0.5, provenance=False)
    )
    card = cards.model_card(version_dir)
    # Not recorded: the keras version, precision, oneDNN, a soup, latency, provenance at all.
    absent_lines = ("keras", "float32 precision", "oneDNN", "weight soup", "The ingredients")
    for absent in (*absent_lines, "measured with", "## Latency"):
        assert absent not in card, absent
    assert "exported again" not in card and "Only the largest lesion is kept" not in card
    # Without metrics.json only the SavedModel's facts remain, and the card says so.
    (version_dir / publish.METRICS_FILE).unlink()
    bare = cards.model_card(version_dir)
    note = "Version 1 has no `metrics.json`: its training and scores are not recorded."
    assert note in " ".join(bare.split())
    for absent in ("## Training data", "## Recipe", "## Scores", "Architecture", "Width"):
        assert absent not in bare, absent
    assert "## Signatures" in bare and "(values in the SavedModel's variables)" in bare


def test_card_json_rows_appear_with_their_source(saved_model, tmp_path):
    path, _ = saved_model
    extra = {
        "scores": [
            {
                "data": "ISIC-2017 dev",
                "signature": "serving_flip_tta",
                "images": 38,
                "jaccard": 0.6631788,
                "source": "results/isic.json",
            }
        ],
        "latency": [
            {
                "signature": "serving_default",
                "input": "noise, 768×560",
                "p50_ms": 60.0,
                "source": "results/latency.txt",
            }
        ],
    }
    version_dir = publish_version(tmp_path / "ph2_unet", 1, path, metrics_record(0.5), extra)
    card = cards.model_card(version_dir)
    row = "| ISIC-2017 dev | serving_flip_tta | 38 | 0.6632 | — | `results/isic.json` |"
    assert row in card
    assert "| serving_default | noise, 768×560 | 60.0 | — | — | `results/latency.txt` |" in card


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"scores": [{"data": "ISIC", "signature": "s", "jaccard": 0.5}]},
            "scores[0] has no 'source'",
        ),
        (
            {"latency": [{"signature": "s", "input": "x", "source": "r"}]},
            "latency[0] has no 'p50_ms'",
        ),
        ({"speed": []}, "unknown key 'speed'"),
        ({"scores": {"data": "x"}}, "scores must be a list of objects"),
    ],
)
def test_card_json_without_what_a_row_needs_is_refused(saved_model, tmp_path, extra, message):
    path, _ = saved_model
    version_dir = publish_version(tmp_path / "ph2_unet", 1, path, metrics_record(0.5), extra)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        cards.model_card(version_dir)
    assert str(version_dir / cards.EXTRA_FILE) in str(error.value)


def test_card_command_writes_the_card_of_the_highest_version_only(saved_model, tmp_path, capsys):
    path, _ = saved_model
    model_dir = tmp_path / "saved_models" / "ph2_unet"
    publish_version(model_dir, 1, path, metrics_record(0.111111))
    publish_version(model_dir, 2, path, metrics_record(0.222222))
    assert cli.main(["card", "--base-dir", str(tmp_path / "saved_models")]) == 0
    card_path = model_dir / cards.CARD_FILE
    assert json.loads(capsys.readouterr().out) == {"cards": [str(card_path)]}
    card = card_path.read_text()
    assert "**version 2**" in card and "0.2222" in card and "0.1111" not in card
    assert not list(model_dir.glob(f"*/{cards.CARD_FILE}"))
    # --model-name names one model; one without versions is an error.
    card_path.unlink()
    base = ["card", "--base-dir", str(tmp_path / "saved_models")]
    assert cli.main([*base, "--model-name", "ph2_unet"]) == 0 and card_path.exists()
    assert cli.main([*base, "--model-name", "ph2_segnet"]) == 2
    missing = tmp_path / "saved_models" / "ph2_segnet"
    expected = f"python -m ph2_tf card: error: no SavedModel version under {str(missing)!r}\n"
    assert capsys.readouterr().err == expected


def test_card_command_refuses_a_base_dir_without_models(tmp_path, capsys):
    (tmp_path / "empty" / "ph2_unet" / "1").mkdir(parents=True)  # no SavedModel in it
    assert cli.main(["card", "--base-dir", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err == (
        "python -m ph2_tf card: error: no model with a SavedModel version in --base-dir "
        f"{str(tmp_path / 'empty')!r}\n"
    )
    assert cli.main(["card", "--base-dir", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not list(tmp_path.rglob(cards.CARD_FILE))


@pytest.mark.parametrize("damage", ["saved_model.pb", "variables"])
def test_card_of_a_damaged_saved_model_is_one_line_and_keeps_the_old_card(
    saved_model, damage, tmp_path, capsys
):
    model_dir = tmp_path / "saved_models" / "ph2_unet"
    version_dir = publish_version(model_dir, 1, saved_model[0], metrics_record(0.5))
    card_path = cards.write_card(model_dir)
    card = card_path.read_text()
    if damage == "saved_model.pb":
        (version_dir / "saved_model.pb").write_bytes(b"cut")
        reason = f"{str(version_dir / 'saved_model.pb')!r} is damaged"
    else:
        (version_dir / "variables" / "variables.index").write_bytes(b"cut")
        reason = f"cannot read the variables of {str(version_dir)!r}"

    assert cli.main(["card", "--base-dir", str(tmp_path / "saved_models")]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"python -m ph2_tf card: error: {reason}") and err.count("\n") == 1
    assert card_path.read_text() == card


def test_export_writes_the_card_of_the_version_it_adds(tmp_path, capsys):
    run_dir, base_dir = tmp_path / "run", tmp_path / "saved_models"
    run_dir.mkdir()
    tiny_unet().save(run_dir / BEST_MODEL_FILE)
    TrainConfig(image_size=IMAGE_SIZE, width=WIDTH).save(run_dir / CONFIG_FILE)
    for _ in range(2):
        assert cli.main(["export", "--run-dir", str(run_dir), "--base-dir", str(base_dir)]) == 0
    card = (base_dir / "unet" / cards.CARD_FILE).read_text()
    assert "**version 2**" in card and "Version 2 has no `metrics.json`" in " ".join(card.split())


def test_committed_cards_are_what_the_generator_writes():
    base_dir = REPO_ROOT / "saved_models"
    model_dirs = [p for p in sorted(base_dir.glob("*")) if versions.served_versions(p)]
    assert [p.name for p in model_dirs] == ["lesion_unet", "ph2_segnet", "ph2_unet"]
    for model_dir in model_dirs:
        committed = (model_dir / cards.CARD_FILE).read_text()
        generated = cards.model_card(versions.served_versions(model_dir)[-1])
        assert committed == generated, f"regenerate with `ph2-seg card --base-dir {base_dir}`"


def test_committed_card_json_numbers_are_in_their_committed_sources():
    tracked = set(
        subprocess.run(
            ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    for extra_path in sorted((REPO_ROOT / "saved_models").glob(f"*/*/{cards.EXTRA_FILE}")):
        extra = json.loads(extra_path.read_text())
        for row in extra["scores"] + extra["latency"]:
            assert row["source"] in tracked, f"{extra_path}: {row['source']} is not committed"
            text = (REPO_ROOT / row["source"]).read_text()
            for key, value in row.items():
                if isinstance(value, float):
                    assert repr(value) in text, (
                        f"{extra_path}: {key} {value} not in {row['source']}"
                    )


def test_card_of_a_model_trained_on_other_clinics_images_says_so(saved_model, tmp_path):
    path, _ = saved_model
    record = metrics_record(0.5)
    folds = {
        f"runs/lesion_unet/fold{fold}": {
            **record["source"]["config"],
            "extra_train_dir": "../shared/external/isic2017-select",
            "extra_folds": 3,
            "extra_held_out_fold": fold,
        }
        for fold in range(3)
    }
    record["source"]["config"] = next(iter(folds.values()))
    record["source"]["soup"] = {"ingredients": list(folds), "configs": folds}
    card = " ".join(
        cards.model_card(publish_version(tmp_path / "lesion_unet", 1, path, record)).split()
    )
    assert "and on the image and mask pairs of `isic2017-select`, from other clinics" in card
    assert "**not a PH²-only model**" in card
    assert "one of 3 folds of `isic2017-select`" in card
    assert "left out folds 0, 1, 2, so every pair was trained on." in card
    assert "Trained on PH² only" not in card
    assert "- Trained on PH² (one clinic) and `isic2017-select`" in card


def test_card_of_a_uniform_soup_scored_on_a_selection_set(saved_model, tmp_path):
    # The steps and method as `soup --uniform` records them: one step adding every ingredient.
    path, _ = saved_model
    record = metrics_record(0.5)
    names = ["saved_models/ph2_unet/4", "runs/fine/seed0/last.keras", "runs/fine/seed1/last.keras"]
    ingredients = [
        soup.Ingredient(name, {**record["source"]["config"], "seed": seed}, [np.zeros(2)])
        for seed, name in enumerate(names)
    ]
    _, steps = soup.uniform_soup(ingredients, lambda weights: 0.75)
    record["source"]["soup"] = {
        "method": soup.METHODS["uniform"][1],
        "selection": "isic2017-select jaccard through the serving signature, at original size",
        "selection_set": "../shared/external/isic2017-select",
        "ingredients": names,
        "selection_jaccard": 0.75,
        "steps": steps,
        "configs": {ingredient.path: ingredient.config for ingredient in ingredients},
    }
    card = " ".join(
        cards.model_card(publish_version(tmp_path / "ph2_unet", 5, path, record)).split()
    )
    assert "Every ingredient kept; the soup scored by isic2017-select jaccard" in card
    assert "The soup's Jaccard on isic2017-select when made: 0.7500." in card
    # No ingredient was scored alone: the table has no score column.
    assert "| ingredient | seed | |---|---| | `saved_models/ph2_unet/4` | 0 |" in card
    assert "| `runs/fine/seed1/last.keras` | 2 |" in card
    assert "chosen by" not in card and "Jaccard |" not in card
