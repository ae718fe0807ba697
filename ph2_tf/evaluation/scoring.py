"""Scores at each image's original size: the one routine behind every such number.

A client of the model sends an image of any size and gets a mask of that size back, so that is
where models are scored and chosen. `score_at_original_size` runs one prediction function per
image at the image's own size (a Keras model through `keras_predictor`, an exported signature
through `signature_predictor`, or any function of one image), thresholds it, optionally
post-processes the mask, and compares it with the full-size ground truth, image by image.
Publishing (`ph2_tf.serving.publish`, through `ph2_tf.evaluation.evaluate.evaluate_serving`), the
soups and the runners of `ph2_tf.experiments` all score through it.

`ph2_tf.evaluation.evaluate.evaluate`, the tuner's scoring, predicts in batches from the prepared
training-size arrays instead and only resizes the probabilities back, which needs no full-size
image in memory.
"""

import dataclasses

import numpy as np
from keras import ops

from ph2_tf.data import preprocessing
from ph2_tf.evaluation.metrics import per_image_scores
from ph2_tf.models.heads import lesion_probability

THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class Scores:
    """Per-image scores of one image set.

    Attributes:
        image_ids: the images' ids, in the order scored.
        per_image: metric name (`ph2_tf.evaluation.metrics.METRIC_NAMES`: `jaccard`, `dice`,
            `pixel_accuracy`, ...) -> one float per image, in `image_ids` order.
    """

    image_ids: tuple
    per_image: dict

    @property
    def mean(self):
        """Metric name -> mean over the images, as `metrics.compute_metrics` gives it."""
        return {name: float(np.mean(values)) for name, values in self.per_image.items()}


def resize_probability(probability, size):
    """A probability map resized (bilinear) to an image's size, as the serving signature does.

    Args:
        probability: float `(h, w)` lesion probabilities.
        size: `(height, width)` of the original image.

    Returns:
        float32 numpy `(height, width)`.
    """
    resized = ops.image.resize(probability[..., None], size, interpolation="bilinear")
    return ops.convert_to_numpy(resized)[..., 0]


def keras_predictor(model, image_size):
    """The prediction function of a Keras model, computed as its serving signature computes it.

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` images in [0, 1] and returning logits.
        image_size: the model's training size `S`.

    Returns:
        A function of one uint8 `(H, W, 3)` image returning float32 `(H, W)` lesion
        probabilities: the image resized to the model input (`preprocessing.model_input`), the
        model's probabilities resized back (bilinear).
    """

    def predict(image):
        logits = model(preprocessing.model_input(image[None], image_size), training=False)
        probability = ops.convert_to_numpy(lesion_probability(logits))[0, ..., 0]
        return resize_probability(probability, image.shape[:2])

    return predict


def signature_predictor(serve, output="probabilities"):
    """The prediction function of an exported serving signature.

    Args:
        serve: a callable taking `images=` uint8 `[1, H, W, 3]` and returning a dict of
            `[1, H, W, 1]` outputs: a loaded SavedModel's `signatures["serving_default"]`, or
            `ph2_tf.serving.export.serving_function(...)` before export.
        output: `"probabilities"`, or `"mask"` for the signature's own 0/1 mask (its threshold
            and any post-processing in the graph), which any threshold in (0, 1) leaves as it is.

    Returns:
        A function of one uint8 `(H, W, 3)` image returning that output as numpy `(H, W)`.
    """
    import tensorflow as tf  # a SavedModel's signature runs on TensorFlow

    def predict(image):
        return np.asarray(serve(images=tf.constant(image[None]))[output])[0, ..., 0]

    return predict


def predicted_mask(predict, image, *, threshold=THRESHOLD, postprocess=None):
    """One image's predicted mask, as `score_at_original_size` scores it.

    Args:
        predict: a prediction function (see `score_at_original_size`).
        image: uint8 `(H, W, 3)`.
        threshold: probability at or above which a pixel is lesion.
        postprocess: None, or a function of a bool `(H, W)` mask returning one of the same
            shape (`ph2_tf.serving.postprocessing.largest_component_filled`).

    Returns:
        bool `(H, W)`.

    Raises:
        ValueError: the prediction is not `(H, W)`.
    """
    probability = np.asarray(predict(image))
    if probability.shape != image.shape[:2]:
        raise ValueError(
            f"the prediction is {probability.shape}, not the image's size {image.shape[:2]}"
        )
    mask = probability >= threshold
    return mask if postprocess is None else postprocess(mask)


def score_at_original_size(predict, cases, *, threshold=THRESHOLD, postprocess=None):
    """Per-image scores of a prediction function at each image's original size.

    Args:
        predict: a function of one uint8 `(H, W, 3)` image returning `(H, W)` lesion
            probabilities at that size (`keras_predictor`, `signature_predictor`, or your own).
        cases: `(image_id, uint8 image (H, W, 3), bool mask (H, W))` triples, such as the
            `ph2_tf.data.external.Case`s of `ph2_cases` or `folder_cases`.
        threshold: probability at or above which a pixel is lesion, in (0, 1).
        postprocess: None, or a function applied to each thresholded bool mask.

    Returns:
        `Scores` with every metric of `ph2_tf.evaluation.metrics` for each image; an empty
        prediction for an empty ground truth counts Jaccard and Dice 1.

    Raises:
        ValueError: `threshold` outside (0, 1), no cases, or a prediction of the wrong size
            (the message names the image).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), received {threshold!r}")
    image_ids, truths, predictions = [], [], []
    for image_id, image, truth in cases:
        try:
            mask = predicted_mask(predict, image, threshold=threshold, postprocess=postprocess)
        except ValueError as error:
            raise ValueError(f"image {image_id}: {error}") from None
        image_ids.append(image_id)
        truths.append(truth)
        predictions.append(mask)
    if not image_ids:
        raise ValueError("no images to score")
    scores = per_image_scores(truths, predictions)
    return Scores(
        tuple(image_ids), {name: tuple(values.tolist()) for name, values in scores.items()}
    )


def mean_jaccards(predict, image_sets, **options):
    """Mean per-image Jaccard of a prediction function on each of several image sets.

    Args:
        predict: a prediction function (see `score_at_original_size`).
        image_sets: `{set name: cases}` (`ph2_tf.data.external.evaluation_sets`).
        **options: `threshold` and `postprocess` of `score_at_original_size`.

    Returns:
        `{set name: mean Jaccard}`, None for a set without images (an absent optional folder).
    """
    return {
        name: score_at_original_size(predict, cases, **options).mean["jaccard"] if cases else None
        for name, cases in image_sets.items()
    }


def over_seeds(values):
    """A table cell for one score over seeds: mean ± sample std (ddof 1) when 2 or more.

    Args:
        values: the score of each seed; None for a set that was not measured.

    Returns:
        e.g. `"0.816 ± 0.011"`, `"0.816"` for one seed, `"not measured"` for none.
    """
    values = [value for value in values if value is not None]
    if not values:
        return "not measured"
    spread = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
    return f"{np.mean(values):.3f}{spread}"
