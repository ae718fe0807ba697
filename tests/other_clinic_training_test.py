"""Tests of ph2_tf.experiments.other_clinic_training: fold runs scored on the folds they did
not see, paired with a served version, and the combined model once on ISIC-2017 dev.
"""

import json

import numpy as np
import pytest
from conftest import constant_model
from external_test import _write_case

from ph2_tf.data import external
from ph2_tf.experiments import other_clinic_training
from ph2_tf.serving import export, publish
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.runs import BEST_MODEL_FILE, CONFIG_FILE

SIZE = 32


def fold_run(run_dir, logit, extra_dir, held_out_fold, folds=2):
    """A run directory as a fold run writes it, whose model gives every pixel `logit`."""
    run_dir.mkdir(parents=True)
    constant_model(logit, SIZE).save(run_dir / BEST_MODEL_FILE)
    config = TrainConfig(
        image_size=SIZE,
        extra_train_dir=str(extra_dir),
        extra_folds=folds,
        extra_held_out_fold=held_out_fold,
    )
    config.save(run_dir / CONFIG_FILE)
    return run_dir


@pytest.fixture
def setting(ph2_dummy, tmp_path):
    extra = tmp_path / "select"
    for index in range(5):
        _write_case(extra, f"ISIC_{index}", size=(8 + index, 6))
    served = tmp_path / "ph2_unet" / "1"  # all background: Jaccard 0 on every lesion
    export.write_saved_model(constant_model(-5.0, SIZE), served, SIZE)
    source = {"config": TrainConfig(image_size=SIZE).__dict__, "serving": {"threshold": 0.5}}
    (served / publish.METRICS_FILE).write_text(json.dumps({"source": source}))
    runs = [fold_run(tmp_path / f"fold{fold}", 5.0, extra, fold) for fold in range(2)]
    return extra, served, runs


def test_each_fold_run_is_scored_on_its_held_out_fold_beside_the_served_version(
    ph2_dummy, tmp_path, setting
):
    extra, served, runs = setting
    output = tmp_path / "out"
    control = tmp_path / "control"  # all background, as the served version
    control.mkdir()
    constant_model(-5.0, SIZE).save(control / BEST_MODEL_FILE)
    TrainConfig(image_size=SIZE).save(control / CONFIG_FILE)
    other_clinic_training.main(
        [*map(str, runs), "--served", str(served), "--combined", str(runs[0]),
         "--control", str(control), "--data-dir", ph2_dummy.data_dir, "--isic-dev", str(extra),
         "--output-dir", str(output)]
    )  # fmt: skip

    record = json.loads((output / "per_image.json").read_text())["jaccard"]
    # All lesion: Jaccard is the lesion's share of the frame (6 pixels of a 6 x (8 + i) image).
    expected = {f"ISIC_{i}": 6 / (6 * (8 + i)) for i in range(5)}
    for fold, run in enumerate(runs):
        scored = record["folds"][str(run)]
        assert scored["held_out_fold"] == fold
        held_out = external.split_folds(sorted(expected), 2, fold)[1]
        assert scored["held_out"] == pytest.approx({i: expected[i] for i in held_out})
    assert record["served"]["isic_select"] == {image_id: 0.0 for image_id in expected}
    assert record["combined"]["isic2017_dev"] == pytest.approx(expected)
    assert record["control"]["isic_select"] == {image_id: 0.0 for image_id in expected}
    text = (output / "output.txt").read_text()
    gains = np.array(list(expected.values()))
    standard_error = gains.std(ddof=1) / np.sqrt(5)
    assert f"paired gain +{gains.mean():.4f} ± {standard_error:.4f} (n=5)" in text
    against_control = (
        f"| fold runs (held out) against control, ISIC-select | 5 | +{gains.mean():.4f}"
    )
    assert against_control in text


def test_fold_runs_must_hold_out_each_fold_once(tmp_path, setting):
    extra, _, runs = setting
    again = fold_run(tmp_path / "again", 5.0, extra, held_out_fold=0)
    with pytest.raises(ValueError, match=r"hold out folds \[0, 0\]; each of the 2 folds"):
        other_clinic_training.fold_runs([runs[0], again])
    plain = tmp_path / "plain"
    plain.mkdir()
    constant_model(5.0, SIZE).save(plain / BEST_MODEL_FILE)
    TrainConfig(image_size=SIZE).save(plain / CONFIG_FILE)
    with pytest.raises(ValueError, match="plain: not a fold run"):
        other_clinic_training.fold_runs([plain, runs[1]])
