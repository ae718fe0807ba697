"""Locate, crop, refine: a second model pass on the region around the lesion the first pass finds.

The models see every image squashed to their training size (256 px). A lesion covering 2 % of a
frame is then about 36 px across, and its border is drawn from a few dozen pixels. PH2, the
training set, has no lesion that small; other clinics' images often do. Refinement looks again:

1. the first pass gives the probabilities of the whole image;
2. its mask (`probability >= threshold`), reduced to the largest component with holes filled,
   locates the lesion; with no lesion pixel, the first pass is the answer;
3. a window around that component's bounding box, `context` times its height and width, is
   widened to the image's aspect ratio (the model then sees the crop distorted as it saw whole
   training frames), clipped to the image's size, and moved inside the image if it sticks out;
4. the model is run on the window's pixels, and its probabilities, at the window's size, replace
   the first pass's inside the window. Outside it the first pass's stay.

A lesion that fills the frame gives a window that is the whole image, where the second pass
would compute what the first did: it is skipped there, and such an image costs one pass. The
measurements that chose `context` are in `results/small-lesions/`.

Two implementations of one definition: `refine` in NumPy, the reference, which wraps any
prediction function of one image, and `refine_graph` in TensorFlow ops, which `export --refine`
puts in the serving graph. Both compute the window in integers (`crop_window`,
`crop_window_graph`), so they agree to the pixel.
"""

import numpy as np
import tensorflow as tf

from ph2_tf.serving.postprocessing import (
    component_filled,
    largest_component_filled,
    largest_component_filled_graph,
)


def check_context(context):
    """Refuses a context under 1 (a window smaller than the lesion's box), or not a number."""
    if not context >= 1.0:  # also refuses NaN
        raise ValueError(f"context must be at least 1 (the lesion's own box), got {context!r}")


def crop_window(lesion, context):
    """The window refinement crops around a lesion, in NumPy.

    Args:
        lesion: 2-D boolean array, not all False.
        context: the window's height and width as multiples of the lesion's bounding box, at
            least 1.

    Returns:
        `(top, left, height, width)` ints, the window inside the image.
    """
    check_context(context)
    image_height, image_width = lesion.shape
    rows = np.flatnonzero(lesion.any(axis=1))
    columns = np.flatnonzero(lesion.any(axis=0))
    first_row, end_row = int(rows[0]), int(rows[-1]) + 1
    first_column, end_column = int(columns[0]), int(columns[-1]) + 1
    height = (end_row - first_row) * context
    width = (end_column - first_column) * context
    # Widen the narrower side to the image's aspect ratio.
    height, width = (
        max(height, width * image_height / image_width),
        max(width, height * image_width / image_height),
    )
    height = min(image_height, int(np.ceil(height)))
    width = min(image_width, int(np.ceil(width)))
    top = min(max((first_row + end_row - height) // 2, 0), image_height - height)
    left = min(max((first_column + end_column - width) // 2, 0), image_width - width)
    return top, left, height, width


def refine_first_pass(predict, image, probability, context, threshold=0.5, lesion=None):
    """One image's refined probabilities, given its first pass, in NumPy (the reference).

    Args:
        predict: a function of one uint8 `(h, w, 3)` image returning its float `(h, w)`
            probabilities (`ph2_tf.evaluation.scoring.keras_predictor`, `signature_predictor`).
        image: uint8 `(H, W, 3)`.
        probability: float `(H, W)`, `predict(image)`.
        context: the window's size as a multiple of the lesion's bounding box (`crop_window`).
        threshold: the first pass's threshold for locating the lesion.
        lesion: None, or the located lesion, a boolean `(H, W)` mask, when the caller chose it
            otherwise than as the largest component, filled, of `probability >= threshold`.

    Returns:
        float32 `(H, W)`: `probability` with the second pass's inside the window.
    """
    check_context(context)
    probability = np.array(probability, np.float32)
    if lesion is None:
        lesion = largest_component_filled(probability >= threshold)
    if not lesion.any():
        return probability
    top, left, height, width = crop_window(lesion, context)
    if (height, width) == probability.shape:  # the whole image: the first pass again
        return probability
    window = np.ascontiguousarray(image[top : top + height, left : left + width])
    probability[top : top + height, left : left + width] = predict(window)
    return probability


def served_mask(predict, image, threshold, context=None, rule="largest"):
    """The mask of a serving graph exported with `largest_component`, in NumPy (the reference).

    Args:
        predict: a function of one uint8 image returning its float `(h, w)` probabilities.
        image: uint8 `(H, W, 3)`.
        threshold: the mask's threshold, which also locates the lesion.
        context: None, or the refining pass's context (`refine_first_pass`).
        rule: the component kept, to locate the lesion and in the mask, a name of
            `ph2_tf.serving.components.COMPONENT_RULES`.

    Returns:
        bool `(H, W)`: `rule`'s component, filled, of the (refined) probabilities' mask.
    """
    probability = predict(image)
    if context is not None:
        lesion = component_filled(probability >= threshold, probability, rule)
        probability = refine_first_pass(
            predict, image, probability, context, threshold, lesion=lesion
        )
    return component_filled(probability >= threshold, probability, rule)


def refine(predict, context, threshold=0.5):
    """Wraps a prediction function with the refining second pass (`refine_first_pass`).

    Returns:
        A function of one uint8 `(H, W, 3)` image returning the refined `(H, W)` probabilities.
    """
    check_context(context)

    def refined(image):
        return refine_first_pass(predict, image, predict(image), context, threshold)

    return refined


def crop_window_graph(lesion, context):
    """`crop_window` in TensorFlow ops: `lesion` a 2-D boolean tensor with a True pixel.

    Returns:
        int32 `[4]`: top, left, height, width.
    """
    check_context(context)
    size = tf.shape(lesion, out_type=tf.int64)
    image_height, image_width = size[0], size[1]
    rows = tf.where(tf.reduce_any(lesion, axis=1))[:, 0]
    columns = tf.where(tf.reduce_any(lesion, axis=0))[:, 0]
    first_row, end_row = rows[0], rows[-1] + 1
    first_column, end_column = columns[0], columns[-1] + 1

    def as_float(value):
        return tf.cast(value, tf.float64)

    box_height = as_float(end_row - first_row) * context
    box_width = as_float(end_column - first_column) * context
    height = tf.maximum(box_height, box_width * as_float(image_height) / as_float(image_width))
    width = tf.maximum(box_width, height * as_float(image_width) / as_float(image_height))
    height = tf.minimum(image_height, tf.cast(tf.math.ceil(height), tf.int64))
    width = tf.minimum(image_width, tf.cast(tf.math.ceil(width), tf.int64))
    top = tf.minimum(tf.maximum((first_row + end_row - height) // 2, 0), image_height - height)
    left = tf.minimum(tf.maximum((first_column + end_column - width) // 2, 0), image_width - width)
    return tf.cast(tf.stack([top, left, height, width]), tf.int32)


def refine_graph(images, probabilities, probabilities_of, context, threshold=0.5, lesions=None):
    """`refine` in TensorFlow ops, for each image of a batch.

    Args:
        images: uint8 `[N, H, W, 3]`.
        probabilities: float32 `[N, H, W, 1]`, the first pass.
        probabilities_of: a function of uint8 `[1, h, w, 3]` returning float32 `[1, h, w, 1]`
            probabilities at that size (the same computation as the first pass's).
        context: the window's size as a multiple of the lesion's bounding box.
        threshold: the first pass's threshold for locating the lesion.
        lesions: None, or bool `[N, H, W, 1]`, the largest component, filled, of
            `probabilities >= threshold`, when the caller has it already.

    Returns:
        float32 `[N, H, W, 1]`, the refined probabilities.
    """
    check_context(context)
    if lesions is None:
        lesions = largest_component_filled_graph(probabilities >= threshold)

    # map_fn would rewrite this with autograph, for nothing: no Python control flow on tensors.
    @tf.autograph.experimental.do_not_convert
    def refine_one(image_probability_lesion):
        image, probability, lesion = image_probability_lesion
        shape = tf.shape(probability)
        whole_image = tf.stack([0, 0, shape[0], shape[1]])
        window = tf.cond(
            tf.reduce_any(lesion),
            lambda: crop_window_graph(lesion[..., 0], context),
            lambda: whole_image,
        )

        def second_pass():
            top, left, height, width = tf.unstack(window)
            refined = probabilities_of(image[None, top : top + height, left : left + width])[0]
            padding = [[top, shape[0] - top - height], [left, shape[1] - left - width], [0, 0]]
            inside = tf.pad(tf.ones_like(refined, tf.bool), padding)
            return tf.where(inside, tf.pad(refined, padding), probability)

        # No lesion, or a window that is the whole image, where the second pass would compute
        # the first pass again: the first pass is the answer, for the cost of one.
        return tf.cond(
            tf.reduce_all(tf.equal(window, whole_image)), lambda: probability, second_pass
        )

    return tf.map_fn(
        refine_one,
        (images, probabilities, lesions),
        fn_output_signature=tf.TensorSpec([None, None, 1], tf.float32),
    )
