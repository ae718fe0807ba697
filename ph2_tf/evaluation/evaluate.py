"""Evaluation of a segmentation model on a PH2 split, at training and at original resolution.

Backend-agnostic: examples are read with `ph2_tf.data.arrays` and preprocessed by
`ph2_tf.data.preprocessing`, the definitions training uses. Only `evaluate_serving`, which runs an
exported SavedModel through `ph2_tf.evaluation.scoring`, needs TensorFlow.
"""

import json
import pathlib

from keras import ops

from ph2_tf import files
from ph2_tf.data import arrays, external
from ph2_tf.evaluation import scoring
from ph2_tf.evaluation.metrics import compute_metrics
from ph2_tf.evaluation.scoring import resize_probability
from ph2_tf.models.heads import lesion_probability


def predict_split(model, split, *, image_size, batch_size=8, data_dir=None, manual_dir=None):
    """Lesion probabilities of a model on every image of a split, at training resolution.

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` images in [0, 1] and returning logits.
        split: TFDS split string.
        image_size: the model's training size `S`.
        batch_size: images per forward pass.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory (used only if the dataset is not prepared yet).

    Returns:
        `(probabilities, masks)`: dicts keyed by image id of float32 `(S, S)` lesion
        probabilities and of bool `(S, S)` ground-truth masks at the same size.
    """
    images, masks, ids = arrays.load_arrays(
        split, image_size, data_dir=data_dir, manual_dir=manual_dir
    )
    probabilities = {}
    for start in range(0, len(ids), batch_size):
        logits = model(images[start : start + batch_size], training=False)
        batch = ops.convert_to_numpy(ops.cast(lesion_probability(logits), "float32"))
        for image_id, probability in zip(ids[start:], batch, strict=False):
            probabilities[image_id] = probability[..., 0]
    return probabilities, {i: mask[..., 0] > 0.5 for i, mask in zip(ids, masks, strict=True)}


def evaluate(
    model,
    split="test",
    *,
    image_size,
    batch_size=8,
    threshold=0.5,
    original_resolution=True,
    data_dir=None,
    manual_dir=None,
):
    """Segmentation metrics of a model on a split.

    At training resolution, predictions are compared with the masks resized to the training size.
    At original resolution, each probability map is resized back (bilinear) to its image's own
    size, thresholded, and compared with the full-size mask of the TFDS `original` config.

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` images in [0, 1] and returning logits.
        split: TFDS split string.
        image_size: the model's training size `S`.
        batch_size: images per forward pass.
        threshold: probability at or above which a pixel is lesion.
        original_resolution: also compute the original-resolution metrics.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory (used only if the dataset is not prepared yet).

    Returns:
        A JSON-serialisable dict: `split`, `image_size`, `threshold`, `num_images`,
        `training_resolution` (metric name -> float) and, if requested, `original_resolution`.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    probabilities, masks = predict_split(
        model,
        split,
        image_size=image_size,
        batch_size=batch_size,
        data_dir=data_dir,
        manual_dir=manual_dir,
    )
    ids = sorted(probabilities)
    result = {
        "split": split,
        "image_size": image_size,
        "threshold": threshold,
        "num_images": len(ids),
        "training_resolution": _metrics(
            [masks[i] for i in ids], [probabilities[i] >= threshold for i in ids]
        ),
    }
    if original_resolution:
        full_masks = arrays.original_masks(split, data_dir=data_dir, manual_dir=manual_dir)
        full_preds = [
            resize_probability(probabilities[i], mask.shape) >= threshold
            for i, mask in full_masks.items()
        ]
        full_masks = list(full_masks.values())
        result["original_resolution"] = _metrics(full_masks, full_preds)
    return result


def evaluate_serving(serve, split="test", *, data_dir=None, manual_dir=None):
    """Segmentation metrics of a serving function on a split, at each image's original size.

    This measures what a client of the exported model gets: the original uint8 image goes in,
    the signature resizes it and returns its `mask` at the image's size, which is compared with
    the full-size ground truth of the TFDS `original` config (`scoring.score_at_original_size`).

    Args:
        serve: a callable taking `images=` uint8 `[1, H, W, 3]` and returning a dict with `mask`
            `[1, H, W, 1]`: a loaded SavedModel's `signatures["serving_default"]`, or
            `export.serving_function(...)` before export.
        split: TFDS split string.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory (used only if the dataset is not prepared yet).

    Returns:
        A JSON-serialisable dict: `split`, `num_images`, `resolution` (`"original"`) and
        `metrics` (metric name -> float).
    """
    cases = external.ph2_cases(split, data_dir=data_dir, manual_dir=manual_dir)
    scores = scoring.score_at_original_size(scoring.signature_predictor(serve, "mask"), cases)
    return {
        "split": split,
        "num_images": len(scores.image_ids),
        "resolution": "original",
        "metrics": scores.mean,
    }


def _metrics(true_masks, pred_masks):
    """`compute_metrics` with plain Python floats (JSON-serialisable)."""
    return {name: float(value) for name, value in compute_metrics(true_masks, pred_masks).items()}


def write_json(result, path):
    """Writes an evaluation result as indented JSON, atomically, creating parent directories.

    Args:
        result: the dict returned by `evaluate`.
        path: destination file.

    Returns:
        The path written, as a `pathlib.Path`.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path
