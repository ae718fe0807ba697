"""Child process for the export test: uses a SavedModel with TensorFlow alone (no ph2_tf).

Usage: python serve_saved_model.py SAVED_MODEL_DIR IMAGE_NPY RESULT_NPZ RESULT_JSON

Runs the `serving_default` signature on the uint8 image batch in IMAGE_NPY and saves its outputs
to RESULT_NPZ; then calls it with a float32 batch and with a rank-3 image, and writes what
happened (error type and message) to RESULT_JSON, with the outputs' shapes for an empty batch and
for 1x1 images, and whether `ph2_tf` was ever imported.
"""

import json
import sys

import numpy as np
import tensorflow as tf


def rejection(serve, images):
    """The error (type and message) raised by `serve` on `images`, or None if it accepted them."""
    try:
        serve(images=images)
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as e:
        return {"type": type(e).__name__, "message": str(e)}
    return None


def main(saved_model_dir, image_path, result_path, report_path):
    serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    images = np.load(image_path)
    outputs = serve(images=tf.constant(images))
    np.savez(result_path, **{name: value.numpy() for name, value in outputs.items()})
    report = {
        "float32": rejection(serve, tf.constant(images, tf.float32)),
        "rank3": rejection(serve, tf.constant(images[0])),
        "shapes": {
            name: {key: value.shape.as_list() for key, value in serve(images=batch).items()}
            for name, batch in (
                ("empty", tf.zeros([0, 30, 40, 3], tf.uint8)),
                ("1x1", tf.zeros([2, 1, 1, 3], tf.uint8)),
            )
        },
        "ph2_tf_imported": any(name.split(".")[0] == "ph2_tf" for name in sys.modules),
    }
    with open(report_path, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
