"""Segmentation metrics, as Keras metrics on logits and as numpy functions on binary masks.

Every score is computed per image from that image's confusion counts and then averaged over
images (so a small lesion weighs as much as a large one, as in ISIC 2018):

- `pixel_accuracy`: `(TP + TN) / pixels`. The study's tables call it "IoU"; most of a PH2
  image is skin, so an all-background prediction already scores high (`docs/findings.md`).
- `jaccard`: `TP / (TP + FP + FN)`.
- `dice`: `2 TP / (2 TP + FP + FN)`.
- `thresholded_jaccard`: the Jaccard index, counted as 0 when below 0.65 (0.65 itself is
  kept): the ISIC 2018 challenge's score, as its reference scorer `isic-challenge-scoring`
  computes it (`tests/isic_metric_test.py` compares the two).
- `sensitivity`: `TP / (TP + FN)`.
- `specificity`: `TN / (TN + FP)`.

A ratio whose denominator is 0 counts 1, as in the ISIC scorer: e.g. an empty prediction for
an empty mask has Jaccard and Dice 1, and sensitivity is 1 on an image without lesion.
"""

import keras
import numpy as np
from keras import ops

from ph2_tf.models.heads import lesion_probability

THRESHOLD = 0.5
JACCARD_THRESHOLD = 0.65  # ISIC 2018 task 1


def _ratio(numerator, denominator):
    """`numerator / denominator`, and 1 where the denominator is 0."""
    safe = ops.where(denominator > 0, denominator, 1.0)
    return ops.where(denominator > 0, numerator / safe, 1.0)


def pixel_accuracy(tp, fp, fn, tn):
    """Pixel accuracy from confusion counts (the study's "IoU")."""
    return (tp + tn) / (tp + fp + fn + tn)


def jaccard(tp, fp, fn, tn):
    """Jaccard index (intersection over union) from confusion counts."""
    return _ratio(tp, tp + fp + fn)


def dice(tp, fp, fn, tn):
    """Dice coefficient from confusion counts."""
    return _ratio(2.0 * tp, 2.0 * tp + fp + fn)


def thresholded_jaccard(tp, fp, fn, tn):
    """Jaccard index, or 0 where it is below `JACCARD_THRESHOLD`."""
    score = jaccard(tp, fp, fn, tn)
    return ops.where(score >= JACCARD_THRESHOLD, score, 0.0)


def sensitivity(tp, fp, fn, tn):
    """True positive rate from confusion counts."""
    return _ratio(tp, tp + fn)


def specificity(tp, fp, fn, tn):
    """True negative rate from confusion counts."""
    return _ratio(tn, tn + fp)


SCORES = {
    "pixel_accuracy": pixel_accuracy,
    "jaccard": jaccard,
    "dice": dice,
    "thresholded_jaccard": thresholded_jaccard,
    "sensitivity": sensitivity,
    "specificity": specificity,
}
METRIC_NAMES = tuple(SCORES)


@keras.saving.register_keras_serializable(package="ph2_tf")
class SegmentationScore(keras.metrics.Metric):
    """Per-image segmentation score averaged over all images seen, from logits.

    Takes the lesion mask `(B, H, W, 1)` as `y_true` and logits `(B, H, W, C)` of either head
    (`C` 1 or 2) as `y_pred`; a pixel is predicted lesion when its probability is at least
    `threshold`. The state is a sum of per-image scores and an image count, so it accumulates
    correctly over batches and over replicas of a `tf.distribute` strategy.

    Args:
        score: One of `METRIC_NAMES`, e.g. 'jaccard'. Also the default metric name.
        threshold: Probability threshold for predicting lesion.
        name: Metric name; defaults to `score`.
        dtype: Dtype of the metric's state.

    Example:

    ```python
    metric = SegmentationScore("jaccard")
    metric.update_state(np.ones((2, 8, 8, 1)), np.full((2, 8, 8, 1), 3.0))
    metric.result()  # 1.0
    ```
    """

    def __init__(self, score, threshold=THRESHOLD, name=None, dtype=None):
        if score not in SCORES:
            raise ValueError(f"Unknown score {score!r}; expected one of {METRIC_NAMES}.")
        super().__init__(name=name or score, dtype=dtype)
        self.score = score
        self.threshold = threshold
        self.total = self.add_variable((), "zeros", name="total")
        self.count = self.add_variable((), "zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add the scores of a batch.

        Args:
            y_true: Lesion masks `(B, H, W, 1)`, values {0, 1}.
            y_pred: Logits `(B, H, W, C)`, `C` 1 or 2.
            sample_weight: Optional per-image weights of shape `(B,)`.
        """
        truth = ops.convert_to_tensor(y_true) >= 0.5
        predicted = lesion_probability(y_pred) >= self.threshold
        scores = SCORES[self.score](*_confusion_counts(truth, predicted, self.dtype))
        if sample_weight is None:
            weights = ops.ones_like(scores)
        else:
            weights = ops.reshape(ops.cast(sample_weight, self.dtype), (-1,))
        self.total.assign_add(ops.sum(scores * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "score": self.score, "threshold": self.threshold}


def _confusion_counts(truth, predicted, dtype):
    """Per-image (TP, FP, FN, TN) of boolean `(B, H, W, 1)` masks, as `dtype` vectors."""

    def count(mask):
        return ops.sum(ops.cast(mask, dtype), axis=(1, 2, 3))

    return (
        count(truth & predicted),
        count(~truth & predicted),
        count(truth & ~predicted),
        count(~truth & ~predicted),
    )


def segmentation_metrics(threshold=THRESHOLD):
    """Return fresh Keras metrics, one per name in `METRIC_NAMES`.

    Args:
        threshold: Probability threshold for predicting lesion.

    Example:

    ```python
    model.compile(optimizer="adam", loss=get_loss("bce"), metrics=segmentation_metrics())
    ```
    """
    return [SegmentationScore(score, threshold=threshold) for score in METRIC_NAMES]


def _binary_mask(mask, what, index):
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(
            f"{what}[{index}] must have shape (H, W) or (H, W, 1). Received: {array.shape}"
        )
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{what}[{index}] must be binary (0/1 or bool); threshold it first.")
    return array.astype(bool)


def per_image_scores(true_masks, pred_masks):
    """Every score of `METRIC_NAMES` for each image, from binary masks.

    Args:
        true_masks: Sequence of lesion masks, each `(H, W)` or `(H, W, 1)` with values {0, 1}
            (bool works too); sizes may differ between images.
        pred_masks: Predicted masks, same length, each the size of its true mask.

    Returns:
        Dict from metric name to a numpy array with one score per image, in order.

    Example:

    >>> truth = [np.ones((2, 2)), np.zeros((3, 1))]
    >>> per_image_scores(truth, [np.ones((2, 2)), np.ones((3, 1))])["jaccard"].tolist()
    [1.0, 0.0]
    """
    if len(true_masks) != len(pred_masks) or not len(true_masks):
        raise ValueError(
            "true_masks and pred_masks must be non-empty and of equal length. "
            f"Received: {len(true_masks)} and {len(pred_masks)} masks"
        )
    counts = []
    for i, (true_mask, pred_mask) in enumerate(zip(true_masks, pred_masks, strict=True)):
        truth = _binary_mask(true_mask, "true_masks", i)
        predicted = _binary_mask(pred_mask, "pred_masks", i)
        if truth.shape != predicted.shape:
            raise ValueError(
                f"Mask {i}: true and predicted shapes differ. "
                f"Received: {truth.shape} and {predicted.shape}"
            )
        batch = truth[None, ..., None], predicted[None, ..., None]
        counts.append([ops.convert_to_numpy(c)[0] for c in _confusion_counts(*batch, "float64")])
    tp, fp, fn, tn = np.asarray(counts).T
    return {name: ops.convert_to_numpy(score(tp, fp, fn, tn)) for name, score in SCORES.items()}


def compute_metrics(true_masks, pred_masks):
    """Compute every score of `METRIC_NAMES` averaged over images, from binary masks.

    Args:
        true_masks: Sequence of lesion masks, each `(H, W)` or `(H, W, 1)` with values {0, 1}
            (bool works too); sizes may differ between images.
        pred_masks: Predicted masks, same length, each the size of its true mask.

    Returns:
        Dict from metric name to its mean over the images (`per_image_scores`), as Python
        floats.

    Example:

    >>> truth = [np.ones((2, 2)), np.zeros((3, 1))]
    >>> compute_metrics(truth, [np.ones((2, 2)), np.ones((3, 1))])["pixel_accuracy"]
    0.5
    """
    scores = per_image_scores(true_masks, pred_masks)
    return {name: float(np.mean(values)) for name, values in scores.items()}
