"""Child process: two training steps under MirroredStrategy on two logical CPUs vs one device.

Usage: python mirrored_step.py RESULT_JSON

The logical CPU devices must be configured before TensorFlow initializes, hence a separate
process. For AdamW (the training optimizer), plain SGD (whose update is proportional to the
gradient, so a mis-scaled gradient shows) and AdamW with a moving average of the weights
(`ema_momentum`), the same initial weights take two steps on the same global batch of 4 under
both strategies. Written as JSON: the losses, the maximum weight differences and, with the
average, the maximum difference of the averaged weights that `averaged_weights` swaps in,
and whether it swapped the raw weights back bit for bit.
"""

import dataclasses
import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ph2_tf.training import train  # noqa: E402
from ph2_tf.training.callbacks import averaged_weights  # noqa: E402
from ph2_tf.training.config import TrainConfig  # noqa: E402
from ph2_tf.training.losses import get_loss  # noqa: E402

CFG = TrainConfig(
    model="unet", loss="bce", learning_rate=1e-3, image_size=32, width=0.125, batch_size=4
)
# Each case: its config and an optimizer factory (None: build_and_compile's own AdamW).
CASES = {
    "adamw": (CFG, None),
    "sgd": (CFG, lambda: keras.optimizers.SGD(learning_rate=0.5)),
    "adamw_ema": (dataclasses.replace(CFG, ema_momentum=0.5), None),
}


class SwapAtEpochEnd(keras.callbacks.Callback):
    """Swaps the average in and out where `train`'s callbacks do: at the end of an epoch."""

    def on_epoch_end(self, epoch, logs=None):
        self.weights = self.model.get_weights()
        with averaged_weights(self.model):
            self.averaged = self.model.get_weights()
        pairs = zip(self.model.get_weights(), self.weights, strict=True)
        self.restored = all(np.array_equal(after, before) for after, before in pairs)


def two_steps(strategy, initial_weights, case, batch):
    """Loss, weights and, with an average, `(averaged weights, restored exactly)`: two steps."""
    cfg, optimizer = CASES[case]
    with strategy.scope():
        model = train.build_and_compile(cfg)
        if optimizer is not None:
            model.compile(optimizer=optimizer(), loss=get_loss(cfg.loss))
        model.set_weights(initial_weights)
    swap = SwapAtEpochEnd()
    dataset = tf.data.Dataset.from_tensors(batch).repeat(2)
    history = model.fit(dataset, epochs=1, verbose=0, callbacks=[swap] if cfg.ema_momentum else [])
    if cfg.ema_momentum is None:
        return history.history["loss"][0], model.get_weights(), None
    # `fit` ends by putting the average into the model: the raw weights are the callback's.
    return history.history["loss"][0], swap.weights, (swap.averaged, swap.restored)


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
    for case in CASES:
        loss_1, weights_1, average_1 = two_steps(single, initial, case, (images, masks))
        loss_2, weights_2, average_2 = two_steps(mirrored, initial, case, (images, masks))
        result[case] = {
            "loss_single": float(loss_1),
            "loss_mirrored": float(loss_2),
            "max_weight_diff": max_abs_diff(weights_1, weights_2),
            "max_weight_change": max_abs_diff(weights_1, initial),
        }
        if average_1 is not None:
            (averaged_1, restored_1), (averaged_2, restored_2) = average_1, average_2
            result[case].update(
                max_average_diff=max_abs_diff(averaged_1, averaged_2),
                max_average_from_weights=max_abs_diff(averaged_1, weights_1),
                restored_exactly={"single": restored_1, "mirrored": restored_2},
            )
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
