"""Tests of the segmentation metrics (numpy and Keras)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from ph2_tf.evaluation.metrics import (
    METRIC_NAMES,
    SegmentationScore,
    compute_metrics,
    segmentation_metrics,
)


def _random_masks(count, shape, seed):
    rng = np.random.default_rng(seed)
    return [(rng.random(shape) < rng.random()).astype("float32") for _ in range(count)]


def test_hand_computed_masks():
    truth = np.zeros((4, 4))
    truth[0, :4] = 1  # 4 lesion pixels
    predicted = np.zeros((4, 4))
    predicted[0, 1:4] = 1
    predicted[1, :3] = 1  # 6 predicted: TP 3, FP 3, FN 1, TN 9
    result = compute_metrics([truth], [predicted])
    expected = {
        "pixel_accuracy": 12 / 16,
        "jaccard": 3 / 7,
        "dice": 6 / 10,
        "thresholded_jaccard": 0.0,  # 3/7 < 0.65
        "sensitivity": 3 / 4,
        "specificity": 9 / 12,
    }
    assert result.keys() == expected.keys()
    for name, value in expected.items():
        assert result[name] == pytest.approx(value), name


def test_per_image_means_and_empty_masks():
    truth = [np.ones((3, 3, 1)), np.zeros((2, 5), bool)]  # different sizes and layouts
    predicted = [np.pad(np.ones((2, 3)), ((0, 1), (0, 0))), np.zeros((2, 5))]
    result = compute_metrics(truth, predicted)
    # Image 1: J = 6/9 >= 0.65, so the thresholded Jaccard keeps it. Image 2: empty vs empty = 1.
    assert result["jaccard"] == pytest.approx((6 / 9 + 1) / 2)
    assert result["thresholded_jaccard"] == pytest.approx((6 / 9 + 1) / 2)
    assert result["dice"] == pytest.approx((12 / 15 + 1) / 2)
    assert result["pixel_accuracy"] == pytest.approx((6 / 9 + 1) / 2)
    assert result["sensitivity"] == pytest.approx((6 / 9 + 1) / 2)
    assert result["specificity"] == pytest.approx(1.0)


def test_all_background_prediction_on_a_32_percent_lesion():
    truth = np.zeros((10, 10))
    truth.flat[:32] = 1
    result = compute_metrics([truth], [np.zeros((10, 10))])
    assert result["pixel_accuracy"] == pytest.approx(0.68)
    assert result["jaccard"] == 0.0 and result["dice"] == 0.0


def test_dice_at_least_jaccard_on_random_masks():
    truth, predicted = _random_masks(20, (9, 7), seed=0), _random_masks(20, (9, 7), seed=1)
    for t, p in zip(truth, predicted, strict=True):
        result = compute_metrics([t], [p])
        assert result["dice"] >= result["jaccard"] - 1e-12
        assert 0.0 <= result["thresholded_jaccard"] <= result["jaccard"]


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="equal length.*1 and 2"):
        compute_metrics([np.zeros((2, 2))], [np.zeros((2, 2))] * 2)
    with pytest.raises(ValueError, match=r"Mask 0.*\(2, 2\) and \(2, 3\)"):
        compute_metrics([np.zeros((2, 2))], [np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"pred_masks\[0\] must be binary"):
        compute_metrics([np.zeros((2, 2))], [np.full((2, 2), 0.7)])
    with pytest.raises(ValueError, match="Unknown score 'iou'"):
        SegmentationScore("iou")


@pytest.mark.parametrize("num_classes", [1, 2])
def test_keras_metrics_accumulate_over_batches_like_numpy(num_classes):
    keras.utils.set_random_seed(0)
    masks = np.stack(_random_masks(6, (8, 8, 1), seed=2))
    logits = np.random.default_rng(3).standard_normal((6, 8, 8, num_classes)).astype("float32")
    if num_classes == 2:
        predicted = logits[..., 1:] > logits[..., :1]
    else:
        predicted = logits > 0
    expected = compute_metrics(list(masks), list(predicted))
    metrics = segmentation_metrics()
    assert [m.name for m in metrics] == list(METRIC_NAMES)
    for metric in metrics:
        metric.update_state(masks[:4], logits[:4])
        metric.update_state(masks[4:], logits[4:])
        assert float(metric.result()) == pytest.approx(expected[metric.name], abs=1e-6)
        metric.reset_state()
        assert float(metric.result()) == 0.0


def test_sample_weights_are_per_image():
    masks = np.stack(_random_masks(2, (4, 4, 1), seed=4))
    logits = np.random.default_rng(5).standard_normal((2, 4, 4, 1)).astype("float32")
    metric = SegmentationScore("dice")
    metric.update_state(masks, logits, sample_weight=np.array([0.0, 1.0]))
    expected = compute_metrics([masks[1]], [logits[1] > 0])["dice"]
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


def test_metric_serialization_round_trip():
    metric = SegmentationScore("thresholded_jaccard", threshold=0.3, name="tj")
    clone = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(clone, SegmentationScore)
    assert clone.get_config() == metric.get_config()


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import keras
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ph2_tf.models.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D
    from ph2_tf.training.losses import get_loss
    from ph2_tf.evaluation.metrics import compute_metrics, segmentation_metrics

    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        inputs = keras.Input((None, None, 3))
        x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        pooled, indices = MaxPoolingWithArgmax2D()(x)
        x = MaxUnpooling2D()([pooled, indices, x])
        model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(x))
        model.compile(keras.optimizers.SGD(0.1), get_loss("bce"), metrics=segmentation_metrics())
    images = np.random.default_rng(0).random((8, 10, 10, 3)).astype("float32")
    masks = (images[..., :1] > 0.5).astype("float32")
    history = model.fit(images, masks, batch_size=4, epochs=1, verbose=0)
    evaluated = model.evaluate(images, masks, batch_size=4, verbose=0, return_dict=True)
    predicted = model.predict(images, batch_size=4, verbose=0) >= 0
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "loss": history.history["loss"][0],
        "evaluated": evaluated,
        "numpy": compute_metrics(list(masks), list(predicted)),
    }))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_with_two_replicas():
    # Logical devices must be configured before TensorFlow initialises: use a fresh process.
    process = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert np.isfinite(result["loss"])
    for name in METRIC_NAMES:
        assert result["evaluated"][name] == pytest.approx(result["numpy"][name], abs=1e-5), name
