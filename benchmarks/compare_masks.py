"""Masks of a republished version against the version it was exported from, bit for bit.

For each pair OLD NEW of SavedModel version folders and each image file given, compares the
`mask` of OLD's and NEW's `serving_default` (and `serving_flip_tta`) on the pixels `read_image`
reads, and NEW's `serving_encoded` on the file itself; prints one line per image and model pair.
It never imports `ph2_tf`; it exits with status 1 if any mask differs.

    python benchmarks/compare_masks.py OLD NEW [OLD NEW ...] -- IMAGE...
"""

import sys

import numpy as np
import tensorflow as tf

from tfds_ph2.ph2.image_reading import read_image


def main(argv):
    split = argv.index("--")
    folders, images = argv[:split], argv[split + 1 :]
    differing = 0
    for old_dir, new_dir in zip(folders[::2], folders[1::2], strict=True):
        old, new = tf.saved_model.load(old_dir), tf.saved_model.load(new_dir)
        for path in images:
            pixels = tf.constant(read_image(path)[None])
            masks = {}
            for name in ("serving_default", "serving_flip_tta"):
                for label, loaded in (("old", old), ("new", new)):
                    mask = loaded.signatures[name](images=pixels)["mask"].numpy()[0, ..., 0]
                    masks[f"{label} {name}"] = mask.astype(bool)
            with open(path, "rb") as f:
                encoded = new.signatures["serving_encoded"](images_bytes=tf.constant([f.read()]))
            png = tf.io.decode_png(encoded["mask_png_bytes"][0]).numpy()[..., 0]
            masks["new serving_encoded"] = png == 255
            reference = masks["old serving_default"]
            same = all(
                np.array_equal(mask, reference)
                for label, mask in masks.items()
                if "flip_tta" not in label
            ) and np.array_equal(masks["old serving_flip_tta"], masks["new serving_flip_tta"])
            same &= bool(np.isin(png, (0, 255)).all())
            differing += not same
            print(
                f"{old_dir} -> {new_dir} {path.rsplit('/', 1)[-1]} {reference.shape[1]}x"
                f"{reference.shape[0]}: {reference.sum()} lesion pixels, "
                f"{'identical' if same else 'DIFFERENT'} (default old/new/encoded, flip TTA "
                f"old/new: {masks['old serving_flip_tta'].sum()} lesion pixels)",
                flush=True,
            )
    assert "ph2_tf" not in sys.modules, "ph2_tf was imported"
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
