"""Mask post-processing: keep one lesion and fill its holes.

A dermoscopy image shows one lesion, so stray islands of lesion pixels and holes inside it are
errors. Whether removing them helps a model is measured, not assumed (`results/postprocessing/`);
`export --largest-component` puts it in a model's serving graph. Which component is the lesion
is a rule (`ph2_tf.serving.components.COMPONENT_RULES`): the largest, or the one of highest mean
probability.

Two implementations of one definition each:

- `largest_component_filled` and `most_confident_component_filled`, NumPy with scikit-image
  labelling and SciPy hole filling: the references, and `predict --largest-component` for a
  SavedModel without it;
- `largest_component_filled_graph` and `most_confident_component_filled_graph`, TensorFlow ops
  only, so that `export` can put them inside the serving graph (core TensorFlow has no
  connected-components op). They label
  the runs of lesion pixels along each row, joins runs that touch in neighbouring rows, and
  merges their labels by hooking whole labelled groups together and pointer jumping, so its loop
  works on runs rather than pixels and needs few steps; a mask in more pieces takes longer
  (latency: `results/v2-models/serving_latency_largest_component.txt`).
"""

import numpy as np
import tensorflow as tf
from scipy import ndimage
from skimage import measure


def largest_component_filled(mask):
    """The largest 8-connected component of a boolean mask, with its enclosed holes filled.

    Args:
        mask: a 2-D boolean (or 0/1) array.

    Returns:
        A boolean array of the same shape; all False when `mask` has no lesion pixel. Of equally
        large components, the first in raster order is kept.

    Example:

    ```python
    mask = np.zeros((5, 5), bool)
    mask[0, 0] = True
    mask[2:5, 2:5] = True
    mask[3, 3] = False
    largest_component_filled(mask)  # the 3x3 square, hole filled; (0, 0) dropped
    ```
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (height, width), received shape {mask.shape}")
    labels = measure.label(mask.astype(bool), connectivity=2)
    if labels.max() == 0:
        return np.zeros(mask.shape, bool)
    largest = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(largest)


def most_confident_component_filled(mask, probability):
    """The 8-connected component of a mask of highest mean probability, its holes filled.

    Args:
        mask: a 2-D boolean (or 0/1) array.
        probability: the probabilities the mask was thresholded from, the same shape.

    Returns:
        A boolean array of the same shape; all False when `mask` has no lesion pixel. Of
        components with equal means, the first in raster order is kept.
    """
    mask, probability = np.asarray(mask), np.asarray(probability, np.float64)
    if mask.ndim != 2 or probability.shape != mask.shape:
        raise ValueError(
            f"mask must be 2-D (height, width) and probability its shape, received shapes "
            f"{mask.shape} and {probability.shape}"
        )
    labels = measure.label(mask.astype(bool), connectivity=2)
    if labels.max() == 0:
        return np.zeros(mask.shape, bool)
    means = ndimage.mean(probability, labels, np.arange(1, labels.max() + 1))
    return ndimage.binary_fill_holes(labels == np.argmax(means) + 1)


def component_filled(mask, probability, rule):
    """`rule`'s component of a 2-D mask, filled (`rule` one of `COMPONENT_RULES`)."""
    if rule == "largest":
        return largest_component_filled(mask)
    return most_confident_component_filled(mask, probability)


def largest_component_filled_graph(masks):
    """`largest_component_filled` in TensorFlow ops, for each mask of a batch.

    Equal to the NumPy reference pixel for pixel: lesion pixels are 8-connected, holes are
    background regions not 4-connected to the image border (SciPy's default), and of equally
    large components the first in raster order is kept.

    Args:
        masks: a boolean (or 0/1) tensor `[N, H, W, 1]`.

    Returns:
        A boolean tensor of the same shape.

    Example:

    ```python
    masks = np.zeros((1, 5, 5, 1), bool)
    masks[0, 0, 0] = True
    masks[0, 2:5, 2:5] = True
    masks[0, 3, 3] = False
    largest_component_filled_graph(masks)[0, ..., 0]  # the 3x3 square, hole filled
    ```
    """
    return _component_filled_graph(masks, None)


def most_confident_component_filled_graph(masks, probabilities):
    """`most_confident_component_filled` in TensorFlow ops, for each mask of a batch.

    Equal to the NumPy reference pixel for pixel, as `largest_component_filled_graph` is to its
    own; the means are summed in float64.

    Args:
        masks: a boolean (or 0/1) tensor `[N, H, W, 1]`.
        probabilities: float `[N, H, W, 1]`, what the masks were thresholded from.

    Returns:
        A boolean tensor of the same shape as `masks`.
    """
    return _component_filled_graph(masks, probabilities)


def component_filled_graph(masks, probabilities, rule):
    """`rule`'s component of each mask of a batch, filled, in TensorFlow ops."""
    if rule == "largest":
        return largest_component_filled_graph(masks)
    return most_confident_component_filled_graph(masks, probabilities)


def _component_filled_graph(masks, probabilities):
    """The largest (`probabilities` None) or most confident component of each mask, filled."""
    masks = tf.convert_to_tensor(masks)
    if masks.shape.rank != 4 or masks.shape[-1] not in (1, None):
        raise ValueError(f"masks must be [N, H, W, 1], received shape {masks.shape}")
    masks_2d = tf.cast(masks[..., 0], tf.bool)
    if probabilities is None:
        scores_2d = tf.zeros_like(masks_2d, tf.float64)  # unused: components score by area
    else:
        scores_2d = tf.cast(tf.convert_to_tensor(probabilities)[..., 0], tf.float64)

    def one(mask_and_scores):
        return _component_filled_2d(*mask_and_scores, by_mean=probabilities is not None)

    # map_fn cannot stack zero results of unknown size: an empty batch is returned as it is.
    filled = tf.cond(
        tf.shape(masks_2d)[0] > 0,
        lambda: tf.map_fn(
            one, (masks_2d, scores_2d), fn_output_signature=tf.TensorSpec([None, None], tf.bool)
        ),
        lambda: masks_2d,
    )
    return filled[..., None]


def _component_filled_2d(mask, probability, by_mean):
    """The largest component of one `[H, W]` boolean tensor, or with `by_mean` the one of
    highest mean `probability` (float64 `[H, W]`), its holes filled."""

    def keep_and_fill():
        run_of_pixel, component_of_run, run_lengths = _row_run_components(mask, connectivity=2)
        num_runs = tf.size(run_lengths)
        areas = tf.math.unsorted_segment_sum(run_lengths, component_of_run, num_runs)
        scores = areas
        if by_mean:
            run_sums = tf.math.unsorted_segment_sum(
                tf.boolean_mask(probability, mask), tf.boolean_mask(run_of_pixel, mask), num_runs
            )
            sums = tf.math.unsorted_segment_sum(run_sums, component_of_run, num_runs)
            # Slots that name no component (area 0) score below every probability.
            scores = tf.where(areas > 0, sums / tf.cast(tf.maximum(areas, 1), tf.float64), -1.0)
        # A component is named by its first run, so the first maximum is the first in raster order.
        chosen_component = tf.argmax(scores, output_type=tf.int32)
        kept = mask & tf.gather(component_of_run == chosen_component, run_of_pixel)
        # Its holes lie inside its bounding box; the frame around the box is background that
        # reaches the image border (outside the box there is no pixel of `kept`).
        rows = tf.where(tf.reduce_any(kept, axis=1))[:, 0]
        columns = tf.where(tf.reduce_any(kept, axis=0))[:, 0]
        top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
        background = tf.pad(~kept[top:bottom, left:right], [[1, 1], [1, 1]], constant_values=True)
        run_of_pixel, component_of_run, _ = _row_run_components(background, connectivity=1)
        # The frame's top row is run 0, so the outside background is component 0.
        outside = background & tf.gather(component_of_run == 0, run_of_pixel)
        height, width = tf.unstack(tf.shape(mask, out_type=tf.int64))
        return tf.pad(~outside[1:-1, 1:-1], [[top, height - bottom], [left, width - right]])

    return tf.cond(tf.reduce_any(mask), keep_and_fill, lambda: tf.zeros_like(mask))


def _shift_columns(x, offset, fill):
    """`x[:, c + offset]` at each column `c` of a 2-D tensor, `fill` where that is outside."""
    if offset == 0:
        return x
    padding = tf.fill([tf.shape(x)[0], 1], tf.constant(fill, x.dtype))
    if offset == 1:
        return tf.concat([x[:, 1:], padding], axis=1)
    return tf.concat([padding, x[:, :-1]], axis=1)


def _row_run_components(mask, connectivity):
    """Connected components of a 2-D boolean tensor, computed on its row runs.

    A run is a maximal horizontal stretch of True pixels; runs are numbered in raster order.

    Args:
        mask: `[H, W]` boolean tensor.
        connectivity: 1 (edge neighbours) or 2 (edge and corner neighbours).

    Returns:
        `(run_of_pixel, component_of_run, run_lengths)`: the run each True pixel belongs to
        (`[H, W]` int32; 0 on False pixels, where it means nothing), the component of each run
        as the number of the component's first run, and each run's length in pixels.
    """
    starts = mask & ~_shift_columns(mask, -1, False)
    ends = mask & ~_shift_columns(mask, 1, False)
    flat_starts = tf.reshape(starts, [-1])
    run_of_pixel = tf.reshape(tf.cumsum(tf.cast(flat_starts, tf.int32)) - 1, tf.shape(mask))
    run_of_pixel = tf.where(mask, run_of_pixel, 0)
    run_lengths = tf.cast(
        tf.where(tf.reshape(ends, [-1]))[:, 0] - tf.where(flat_starts)[:, 0] + 1, tf.int32
    )
    num_runs = tf.size(run_lengths)
    # Runs in rows r and r + 1 touch where a pixel of the lower run has a neighbour of the upper
    # one at column offset -1, 0 or +1. One pair per stretch of touching columns is enough.
    upper_runs, lower_runs = [], []
    for offset in (0,) if connectivity == 1 else (-1, 0, 1):
        touching = mask[1:] & _shift_columns(mask[:-1], offset, False)
        first_columns = tf.where(touching & ~_shift_columns(touching, -1, False))
        upper_runs.append(tf.gather_nd(_shift_columns(run_of_pixel[:-1], offset, 0), first_columns))
        lower_runs.append(tf.gather_nd(run_of_pixel[1:], first_columns))
    run = tf.concat(upper_runs + lower_runs, axis=0)
    neighbour = tf.concat(lower_runs + upper_runs, axis=0)

    def merge(components, _):
        # Every label is a run of the same component, no later than the run it labels. Across
        # each pair of touching runs, the lower label is given to the run and to the run its
        # label names (hooking: a whole labelled group moves at once), then every run follows
        # its label's label twice (pointer jumping), so labels travel far per step.
        neighbours_label = tf.gather(components, neighbour)
        own_label = tf.gather(components, run)
        lowest = tf.minimum(
            tf.math.unsorted_segment_min(neighbours_label, run, num_runs),
            tf.math.unsorted_segment_min(neighbours_label, own_label, num_runs),
        )
        merged = tf.minimum(components, lowest)
        return tf.gather(merged, tf.gather(merged, merged)), components

    first = tf.range(num_runs)
    component_of_run, _ = tf.while_loop(
        lambda components, previous: tf.reduce_any(components != previous),
        merge,
        merge(first, first),
    )
    return run_of_pixel, component_of_run, run_lengths
