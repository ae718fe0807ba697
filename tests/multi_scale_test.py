"""Tests of ph2_tf.experiments.multi_scale and threshold_choice: each lever is the served
computation with one thing changed, computed from the same passes, and the runners' arguments."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from ph2_tf.data.external import Case
from ph2_tf.evaluation.metrics import per_image_scores
from ph2_tf.experiments import multi_scale, selection_sets, threshold_choice
from ph2_tf.serving import refinement
from ph2_tf.serving.postprocessing import (
    largest_component_filled,
    most_confident_component_filled,
)


def contrast(image):
    """A stand-in model whose output depends on the window it is given: brightness against the
    image's mean brightness."""
    brightness = image.astype(np.float32).mean(axis=-1) / 255.0
    return np.clip(brightness - brightness.mean() + 0.45, 0.0, 1.0)


def blurred(image):
    """Another stand-in, for another input size: the contrast, smoothed along the rows."""
    probability = contrast(image)
    return (probability + np.roll(probability, 3, axis=1)) / 2


def spot_image(side=5, frame=(60, 80)):
    """Dark skin with one bright square spot of `side` pixels."""
    image = np.full((*frame, 3), 10, np.uint8)
    image[20 : 20 + side, 30 : 30 + side] = 230
    return image


def counted(predict):
    """`predict`, counting its calls in `.calls`."""

    def wrapper(image):
        wrapper.calls += 1
        return predict(image)

    wrapper.calls = 0
    return wrapper


def test_memoized_mean_averages_and_runs_each_predictor_once_per_image():
    first, second = counted(contrast), counted(blurred)
    mean = multi_scale.memoized_mean([first, second])
    image = spot_image()
    expected = (contrast(image) + blurred(image)) / 2
    np.testing.assert_allclose(mean(image), expected)
    np.testing.assert_allclose(mean(image.copy()), expected)  # same pixels: cached
    mean(image[10:40, 20:60])  # a window is another image
    assert (first.calls, second.calls) == (2, 2)


@pytest.mark.parametrize("context", [1.5, None])
def test_each_lever_is_the_served_computation_with_its_passes_averaged(context):
    sizes = {16: contrast, 20: blurred, 24: blurred}
    levers = multi_scale.lever_predictors(sizes, 16, context)
    assert list(levers) == [
        "served",
        "first_16_24",
        "both_16_24",
        "first_16_20",
        "both_16_20",
        "first_16_20_24",
        "both_16_20_24",
    ]
    image = spot_image()

    def mean_of(*predictors):
        return lambda window: np.mean([p(window) for p in predictors], axis=0)

    def served_with(first_pass, second_pass):
        if context is None:
            return first_pass(image)
        return refinement.refine_first_pass(second_pass, image, first_pass(image), context)

    np.testing.assert_allclose(levers["served"](image), served_with(contrast, contrast))
    pair, triple = mean_of(contrast, blurred), mean_of(contrast, blurred, blurred)
    np.testing.assert_allclose(levers["first_16_24"](image), served_with(pair, contrast))
    np.testing.assert_allclose(levers["both_16_24"](image), served_with(pair, pair))
    np.testing.assert_allclose(levers["both_16_20_24"](image), served_with(triple, triple))
    if context is not None:  # the second pass is what differs
        assert not np.allclose(levers["first_16_24"](image), levers["both_16_24"](image))


def test_lever_jaccards_scores_the_kept_component_of_each_lever():
    image = spot_image(6)
    truth = np.zeros(image.shape[:2], bool)
    truth[20:26, 30:36] = True
    jaccards = multi_scale.lever_jaccards(
        {16: contrast, 20: contrast, 24: contrast}, 16, 1.5, [Case("spot", image, truth)]
    )
    assert len(jaccards) == 7
    assert all(scores == {"spot": 1.0} for scores in jaccards.values())  # all find the spot


def ramp_image():
    """A lesion whose brightness falls off from its centre, so each threshold draws it larger or
    smaller."""
    rows, columns = np.mgrid[:60, :80]
    distance = np.hypot(rows - 30, columns - 40)
    brightness = np.clip(255 - distance * 9, 0, 255).astype(np.uint8)
    return np.repeat(brightness[..., None], 3, axis=-1)


@pytest.mark.parametrize("context", [2.0, None])
def test_each_threshold_locates_and_masks_at_that_threshold(context):
    image = ramp_image()
    truth = contrast(image) >= 0.5
    jaccards = threshold_choice.threshold_jaccards(contrast, context, [Case("ramp", image, truth)])
    assert list(jaccards) == ["served", *(f"threshold_{t:g}" for t in threshold_choice.THRESHOLDS)]
    for lever, threshold in (("served", 0.5), *((f"threshold_{t:g}", t) for t in [0.3, 0.7])):
        probability = contrast(image)
        if context is not None:
            probability = refinement.refine_first_pass(
                contrast, image, probability, context, threshold
            )
        mask = largest_component_filled(probability >= threshold)
        expected = per_image_scores([truth], [mask])["jaccard"][0]
        assert jaccards[lever]["ramp"] == pytest.approx(expected)
    assert jaccards["threshold_0.3"]["ramp"] < jaccards["threshold_0.45"]["ramp"] < 1.0
    assert jaccards["threshold_0.7"]["ramp"] < jaccards["threshold_0.55"]["ramp"] < 1.0


def test_the_baseline_is_the_served_threshold_and_component_rule():
    image = ramp_image()
    image[5:12, 5:12] = 255  # a small, sure second component beside the ramp
    truth = contrast(image) >= 0.5
    case = Case("ramp", image, truth)
    jaccards = threshold_choice.threshold_jaccards(contrast, None, [case], 0.4, "most_confident")
    assert list(jaccards) == ["served", "threshold_0.3", "threshold_0.45", "threshold_0.55",
                              "threshold_0.6", "threshold_0.7"]  # fmt: skip
    for lever, threshold in (("served", 0.4), ("threshold_0.6", 0.6)):
        probability = contrast(image)
        mask = most_confident_component_filled(probability >= threshold, probability)
        expected = per_image_scores([truth], [mask])["jaccard"][0]
        assert jaccards[lever]["ramp"] == pytest.approx(expected)
    largest = threshold_choice.threshold_jaccards(contrast, None, [case], 0.4)
    assert largest["served"]["ramp"] != jaccards["served"]["ramp"]  # the rule matters here


def test_served_context_is_read_from_the_version_record(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"source": {"serving": {"refine": 1.5}}}))
    assert multi_scale.served_context(tmp_path) == 1.5
    (tmp_path / "metrics.json").write_text(json.dumps({"source": {}}))
    assert multi_scale.served_context(tmp_path) is None  # exported before refinement


def test_a_runner_is_named_by_its_import_path_also_when_run_as_main():
    runner = SimpleNamespace(__name__="__main__", __spec__=SimpleNamespace(name="a.runner"))
    assert selection_sets.module_name(runner) == "a.runner"
    assert selection_sets.module_name(multi_scale) == "ph2_tf.experiments.multi_scale"


@pytest.mark.parametrize("runner", [multi_scale, threshold_choice])
def test_bad_arguments_are_refused_naming_them(runner, tmp_path, capsys):
    with pytest.raises(SystemExit):
        runner.main([str(tmp_path), "--data-dir", str(tmp_path)])
    assert f"{tmp_path} is not a published version (no metrics.json)" in capsys.readouterr().err


def test_a_threshold_that_loses_on_a_stress_set_is_refused_though_isic_select_gains():
    def scores(base, gain, n=20):
        served = {f"i{k}": base + 0.01 * (k % 3) for k in range(n)}
        return {"served": served, "threshold_0.4": {i: v + gain for i, v in served.items()}}

    jaccards = {
        "ph2_validation": scores(0.88, 0.0),
        "artefacts": scores(0.84, -0.02),  # every image loses: a loss beyond noise
        "small_lesions": scores(0.80, 0.0),
        "small_lesions_artefacts": scores(0.75, 0.0),
        "isic2017_select": scores(0.80, 0.01),
    }
    refused = selection_sets.decisions(jaccards, threshold_choice.RULES)
    assert "threshold_0.4: keep served" in refused[1] and "artefacts" in refused[1]
    jaccards["artefacts"] = scores(0.84, 0.0)
    assert "threshold_0.4: publish" in selection_sets.decisions(jaccards, threshold_choice.RULES)[1]


def test_the_model_table_gives_each_levers_mean_and_paired_gain_over_the_baseline():
    jaccards = {
        "isic2017_select": {
            "served": {"a": 0.5, "b": 0.7, "c": 0.0},
            "both_256_384": {"a": 0.6, "b": 0.9, "c": 0.0},
        }
    }
    header, rule, served, lever = selection_sets.model_table(jaccards)
    assert "| lever |" in header and "gain vs served ± SE" in header
    assert served == "| ISIC-select | 3 | served | 0.4000 | (baseline) | 1 |"
    differences = np.array([0.1, 0.2, 0.0])
    error = differences.std(ddof=1) / np.sqrt(3)
    assert lever == f"| ISIC-select | 3 | both_256_384 | 0.5000 | +0.1000 ± {error:.4f} | 1 |"
    _, _, _, as_rules = selection_sets.model_table(jaccards, "served", "rule", digits=3)
    assert as_rules.startswith("| ISIC-select | 3 | both_256_384 | 0.500 | +0.100 ± ")


def test_a_runner_scores_every_set_and_threshold_of_a_published_version(
    ph2_dummy, tmp_path, capsys
):
    from small_lesion_levers_test import run_on_a_published_tiny_unet

    version, _, record, written = run_on_a_published_tiny_unet(
        threshold_choice, ph2_dummy, tmp_path
    )
    printed = capsys.readouterr().out
    assert printed.startswith(f"python -m ph2_tf.experiments.threshold_choice {version} ")
    assert f"## {version} (served: threshold 0.5, one pass)" in printed
    assert record["levers"] == [
        "served",
        *(f"threshold_{t:g}" for t in threshold_choice.THRESHOLDS),
    ]
    by_set = record["jaccard"][str(version)]
    assert set(by_set) == set(selection_sets.SET_LABELS)
    assert len(by_set["isic2017_select"]["served"]) == 3
    for by_lever in by_set.values():
        for scores in by_lever.values():
            assert all(0.0 <= value <= 1.0 for value in scores.values())
    decided = [line for line in printed.splitlines() if line.startswith("- threshold_")]
    assert len(decided) == len(threshold_choice.THRESHOLDS)
    assert written.startswith(printed.splitlines()[0])


def test_a_version_served_with_flips_is_scored_on_the_flip_average(tmp_path):
    from small_lesion_levers_test import published_tiny_unet

    from ph2_tf.evaluation import scoring
    from ph2_tf.experiments.postprocessing_choice import flip_averaged

    version, model = published_tiny_unet(tmp_path / "saved_models")
    metrics = json.loads((version / "metrics.json").read_text())
    serving = {"threshold": 0.55, "largest_component": True, "refine": None, "flip_tta": True}
    metrics["source"]["serving"] = serving
    (version / "metrics.json").write_text(json.dumps(metrics))
    score, suffix = threshold_choice.score_version(version)
    assert "'flip_tta': True" in suffix
    # Noise, whose masks fall in pieces that flips rearrange: the largest piece differs.
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 50), bool)
    truth[10:30, 15:40] = True
    cases = [
        Case(f"noise{k}", rng.integers(0, 256, (40, 50, 3), np.uint8), truth) for k in range(4)
    ]
    jaccards = score(cases)
    assert "threshold_0.55" not in jaccards and "threshold_0.6" in jaccards
    one_pass = scoring.keras_predictor(model, 32)

    def reference(predict, image, truth):
        return per_image_scores([truth], [refinement.served_mask(predict, image, 0.55)])["jaccard"]

    differs = False
    for image_id, image, truth in cases:
        served = jaccards["served"][image_id]
        assert served == pytest.approx(reference(flip_averaged(one_pass), image, truth)[0])
        differs |= served != pytest.approx(reference(one_pass, image, truth)[0])
    assert differs  # one pass would have scored otherwise: the test tells them apart
