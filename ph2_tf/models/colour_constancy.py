"""Shades-of-grey colour constancy as a model layer, so serving normalises exactly as training.

Dermoscopes and cameras differ in illuminant and white balance. Shades of grey (Finlayson and
Trezzi, 2004) estimates an image's illuminant per channel as the Minkowski p-norm mean of its
intensities and rescales the channels so that the estimate becomes grey; p = 6 is the value
used for dermoscopy by Barata et al. (2015). As the first layer of a model
(`build_model(..., colour_constancy=True)`) it runs wherever the model runs: in training, in
evaluation and in the exported serving graph.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ph2_tf")
class ShadesOfGrey(keras.layers.Layer):
    """Rescales each image's channels so that its shades-of-grey illuminant estimate is grey.

    For an image `x` in [0, 1], the illuminant of channel `c` is `e_c = mean(x_c^p)^(1/p)` over
    the image's pixels; the channel is multiplied by `mean(e) / e_c` (the estimate's mean
    brightness is kept) and the result clipped to [0, 1]. Computed in float32.

    Args:
        power: the norm's `p`: 1 is grey world, larger values weigh the brightest pixels more.
        epsilon: added to each `e_c`, so that a black channel gives no division by zero.
        **kwargs: `keras.layers.Layer` arguments (`name`, ...).

    Example:

    ```python
    balanced = ShadesOfGrey()(np.random.uniform(size=(2, 64, 64, 3)).astype("float32"))
    ```
    """

    def __init__(self, power=6.0, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if not power > 0:
            raise ValueError(f"power must be > 0, received {power!r}")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, received {epsilon!r}")
        self.power, self.epsilon = float(power), float(epsilon)

    def call(self, images):
        images = ops.cast(images, "float32")
        moments = ops.mean(ops.power(images, self.power), axis=(-3, -2), keepdims=True)
        illuminant = ops.power(moments, 1.0 / self.power) + self.epsilon
        gains = ops.mean(illuminant, axis=-1, keepdims=True) / illuminant
        return ops.cast(ops.clip(images * gains, 0.0, 1.0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "power": self.power, "epsilon": self.epsilon}
