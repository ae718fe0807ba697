"""Child process: one training step under MirroredStrategy on two logical CPUs vs one device.

Usage: python mirrored_step.py RESULT_JSON

The logical CPU devices must be configured before TensorFlow initializes, hence a separate
process. For AdamW (the training optimizer) and plain SGD (whose update is proportional to the
gradient, so a mis-scaled gradient shows), the same initial weights take one step on the same
global batch of 4 under both strategies; the losses and the maximum weight differences are
written as JSON.
"""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ph2_tf import train  # noqa: E402
from ph2_tf.losses import get_loss  # noqa: E402

CFG = train.TrainConfig(
    model="unet", loss="bce", learning_rate=1e-3, image_size=32, width=0.125, batch_size=4
)
OPTIMIZERS = {
    "adamw": None,  # build_and_compile's own optimizer
    "sgd": lambda: keras.optimizers.SGD(learning_rate=0.5),
}


def one_step(strategy, initial_weights, optimizer, batch):
    """Loss and weights after one `fit` step of a model starting from `initial_weights`."""
    with strategy.scope():
        model = train.build_and_compile(CFG)
        if OPTIMIZERS[optimizer] is not None:
            model.compile(optimizer=OPTIMIZERS[optimizer](), loss=get_loss(CFG.loss))
        model.set_weights(initial_weights)
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    return history.history["loss"][0], model.get_weights()


def max_abs_diff(weights_a, weights_b):
    """Largest absolute difference between two lists of arrays."""
    return max(float(np.max(np.abs(a - b))) for a, b in zip(weights_a, weights_b, strict=True))


def main(result_path):
    train.set_seeds(0)
    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 32, 3), dtype=np.float32)
    masks = (images[..., :1] > 0.5).astype(np.float32)
    initial = train.build_and_compile(CFG).get_weights()
    single = tf.distribute.OneDeviceStrategy("/cpu:0")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": mirrored.num_replicas_in_sync}
    for optimizer in OPTIMIZERS:
        loss_1, weights_1 = one_step(single, initial, optimizer, (images, masks))
        loss_2, weights_2 = one_step(mirrored, initial, optimizer, (images, masks))
        result[optimizer] = {
            "loss_single": float(loss_1),
            "loss_mirrored": float(loss_2),
            "max_weight_diff": max_abs_diff(weights_1, weights_2),
            "max_weight_change": max_abs_diff(weights_1, initial),
        }
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
