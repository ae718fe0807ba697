"""Child process for the export test: a TF Serving user's calls, with TensorFlow alone (no ph2_tf).

Usage: python serve_encoded_images.py SAVED_MODEL_DIR CASES_NPZ RESULT_NPZ RESULT_JSON

CASES_NPZ holds, for each case NAME, `NAME/file` (the image file's bytes, as uint8) and
`NAME/pixels` (the uint8 image the parent's `read_image` read from it). For each case this runs
`serving_default` on the pixels and `serving_encoded` on the file alone, then every file in one
batch, and `serving_encoded_probabilities` on the first; RESULT_NPZ gets each case's
`NAME/default_mask`, `NAME/default_probabilities`, `NAME/mask` (the PNG decoded by TensorFlow),
`NAME/batch_mask`, and `probabilities` (the 16-bit PNG of the first case, decoded). RESULT_JSON
gets each case's `lesion_fraction` and `bounding_box`, the outputs' shapes for an empty batch,
the errors (type and message) for an undecodable file and for a scalar input, and whether
`ph2_tf` was ever imported.
"""

import json
import sys

import numpy as np
import tensorflow as tf


def rejection(serve, files):
    """The error (type and message) raised by `serve` on `files`, or None if it accepted them."""
    try:
        serve(images_bytes=files)
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as e:
        return {"type": type(e).__name__, "message": str(e)}
    return None


def png_pixels(png, dtype=tf.uint8):
    return tf.io.decode_png(png, dtype=dtype).numpy()[..., 0]


def main(saved_model_dir, cases_path, result_path, report_path):
    loaded = tf.saved_model.load(saved_model_dir)
    default = loaded.signatures["serving_default"]
    encoded = loaded.signatures["serving_encoded"]
    cases = np.load(cases_path)
    names = sorted({key.split("/")[0] for key in cases.files})
    files = [cases[f"{name}/file"].tobytes() for name in names]
    results, report = {}, {"cases": {}}
    for name, file in zip(names, files, strict=True):
        plain = default(images=tf.constant(cases[f"{name}/pixels"][None]))
        results[f"{name}/default_mask"] = plain["mask"].numpy()[0, ..., 0]
        results[f"{name}/default_probabilities"] = plain["probabilities"].numpy()[0, ..., 0]
        outputs = encoded(images_bytes=tf.constant([file]))
        results[f"{name}/mask"] = png_pixels(outputs["mask_png_bytes"][0])
        report["cases"][name] = {
            "lesion_fraction": float(outputs["lesion_fraction"][0]),
            "bounding_box": outputs["bounding_box"][0].numpy().tolist(),
        }
    batch = encoded(images_bytes=tf.constant(files))
    for name, png in zip(names, batch["mask_png_bytes"], strict=True):
        results[f"{name}/batch_mask"] = png_pixels(png)
    with_probabilities = loaded.signatures["serving_encoded_probabilities"]
    png = with_probabilities(images_bytes=tf.constant(files[:1]))["probabilities_png_bytes"][0]
    results["probabilities"] = png_pixels(png, tf.uint16)
    np.savez(result_path, **results)
    report.update(
        empty={
            key: value.shape.as_list()
            for key, value in encoded(images_bytes=tf.constant([], tf.string)).items()
        },
        undecodable=rejection(encoded, tf.constant([files[0], b"GIF89a not an image"])),
        scalar=rejection(encoded, tf.constant(files[0])),
        ph2_tf_imported=any(name.split(".")[0] == "ph2_tf" for name in sys.modules),
    )
    with open(report_path, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
