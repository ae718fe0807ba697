"""Segmentation losses on logits, selectable by name with `get_loss(name, **kwargs)`.

Every loss takes `y_true`, a lesion mask `(B, H, W, 1)` with values {0, 1}, and `y_pred`,
logits `(B, H, W, C)`. The binary losses (`bce`, `soft_bce`, `dice`, `bce_dice`, `focal`) work
on either head: for a 2-channel softmax head they use the lesion's binary logit
(`ph2_tf.models.heads.lesion_logit`). `cross_entropy` is the two-class categorical cross-entropy and
needs the 2-channel head (`num_classes=2`); the study's CrossEntropyLoss on one channel was
identically 0. Each loss returns one value per image, averaged over the batch by Keras.
"""

import keras
from keras import ops

from ph2_tf.models.heads import lesion_logit

DEFAULT_LABEL_SMOOTHING = 0.1
DEFAULT_DICE_SMOOTH = 1.0
DEFAULT_FOCAL_ALPHA = 0.25
DEFAULT_FOCAL_GAMMA = 2.0
_IMAGE_AXES = (1, 2, 3)


def _binary_crossentropy(y_true, logits, label_smoothing=0.0):
    """Per-image mean sigmoid cross-entropy, with targets pulled towards 0.5 by smoothing."""
    targets = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    per_pixel = ops.binary_crossentropy(targets, lesion_logit(logits), from_logits=True)
    return ops.mean(per_pixel, axis=_IMAGE_AXES)


def _soft_dice_loss(y_true, logits, smooth):
    """Per-image `1 - (2 |P.T| + smooth) / (|P| + |T| + smooth)` on probabilities."""
    probability = ops.sigmoid(lesion_logit(logits))
    intersection = ops.sum(probability * y_true, axis=_IMAGE_AXES)
    total = ops.sum(probability, axis=_IMAGE_AXES) + ops.sum(y_true, axis=_IMAGE_AXES)
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


@keras.saving.register_keras_serializable(package="ph2_tf")
class BCEWithLogits(keras.losses.Loss):
    """Sigmoid cross-entropy from logits, with optional label smoothing.

    With `label_smoothing=0` this is PyTorch's BCEWithLogitsLoss, which is also what the study's
    SoftBCEWithLogitsLoss computed (it ran with no smoothing). A smoothing `s` uses the targets
    `y * (1 - s) + s / 2`, Keras' convention (as `keras.losses.BinaryCrossentropy`): `s = 0.1`
    gives targets 0.05 / 0.95. segmentation_models_pytorch's `SoftBCEWithLogitsLoss` with
    `smooth_factor=f` uses `y * (1 - f) + (1 - y) * f` instead, i.e. 0.1 / 0.9 for `f = 0.1`,
    which is `label_smoothing=2 * f` here. We keep Keras' meaning because the name
    `label_smoothing` promises it to Keras users, and because the study ran with no smoothing at
    all, so neither convention would reproduce it. Named differently from Keras' own
    `BinaryCrossentropy` on purpose: this one always takes logits and returns one value per image.

    Args:
        label_smoothing: Smoothing factor in [0, 1].
        name: Loss name.
        **kwargs: Other `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Example:

    ```python
    loss = BCEWithLogits(label_smoothing=0.1)
    value = loss(np.ones((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)))  # log(2)
    ```
    """

    def __init__(self, label_smoothing=0.0, name="bce", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1]. Received: {label_smoothing}")
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        return _binary_crossentropy(y_true, y_pred, self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="ph2_tf")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss per image from logits: `1 - (2 |P.T| + smooth) / (|P| + |T| + smooth)`.

    Args:
        smooth: Added to numerator and denominator; keeps empty masks finite.
        name: Loss name.
        **kwargs: Other `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Example:

    ```python
    value = DiceLoss()(np.ones((1, 4, 4, 1)), np.full((1, 4, 4, 1), 10.0))  # about 0
    ```
    """

    def __init__(self, smooth=DEFAULT_DICE_SMOOTH, name="dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = smooth

    def call(self, y_true, y_pred):
        return _soft_dice_loss(y_true, y_pred, self.smooth)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="ph2_tf")
class BCEDiceLoss(keras.losses.Loss):
    """Sum of the sigmoid cross-entropy and the soft Dice loss, per image.

    Args:
        smooth: Smoothing term of the Dice part.
        name: Loss name.
        **kwargs: Other `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Example:

    ```python
    value = BCEDiceLoss()(np.ones((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)))
    ```
    """

    def __init__(self, smooth=DEFAULT_DICE_SMOOTH, name="bce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = smooth

    def call(self, y_true, y_pred):
        return _binary_crossentropy(y_true, y_pred) + _soft_dice_loss(y_true, y_pred, self.smooth)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="ph2_tf")
class FocalLoss(keras.losses.Loss):
    """Sigmoid focal loss from logits: `alpha_t * (1 - p_t) ** gamma * cross-entropy`.

    Args:
        alpha: Weight of lesion pixels (background gets `1 - alpha`); None weighs both 1.
        gamma: Focusing exponent; 0 gives (alpha-weighted) cross-entropy.
        name: Loss name.
        **kwargs: Other `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Example:

    ```python
    value = FocalLoss(gamma=2.0)(np.ones((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)))
    ```
    """

    def __init__(
        self, alpha=DEFAULT_FOCAL_ALPHA, gamma=DEFAULT_FOCAL_GAMMA, name="focal", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be None or in [0, 1]. Received: {alpha}")
        self.alpha = alpha
        self.gamma = gamma

    def call(self, y_true, y_pred):
        logit = lesion_logit(y_pred)
        cross_entropy = ops.binary_crossentropy(y_true, logit, from_logits=True)
        probability = ops.sigmoid(logit)
        p_true = y_true * probability + (1.0 - y_true) * (1.0 - probability)
        per_pixel = ops.power(1.0 - p_true, self.gamma) * cross_entropy
        if self.alpha is not None:
            per_pixel *= y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)
        return ops.mean(per_pixel, axis=_IMAGE_AXES)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="ph2_tf")
class SoftmaxCrossEntropy(keras.losses.Loss):
    """Two-class softmax cross-entropy for a 2-channel head (channel 1 = lesion).

    The mask `(B, H, W, 1)` is the index of the true class. A 1-channel head is rejected: a
    softmax over one channel is the constant 1 and its cross-entropy is identically 0.

    Args:
        name: Loss name.
        **kwargs: Other `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Example:

    ```python
    value = SoftmaxCrossEntropy()(np.ones((1, 4, 4, 1)), np.zeros((1, 4, 4, 2)))  # log(2)
    ```
    """

    def __init__(self, name="cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        if y_pred.shape[-1] != 2:
            raise ValueError(
                "cross_entropy needs 2-channel logits (build the model with num_classes=2). "
                f"Received: logits of shape {tuple(y_pred.shape)}"
            )
        labels = ops.cast(ops.squeeze(y_true, axis=-1) > 0.5, "int32")
        per_pixel = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        return ops.mean(per_pixel, axis=(1, 2))


_LOSSES = {
    "bce": (BCEWithLogits, {}),
    "soft_bce": (
        BCEWithLogits,
        {"label_smoothing": DEFAULT_LABEL_SMOOTHING, "name": "soft_bce"},
    ),
    "dice": (DiceLoss, {}),
    "bce_dice": (BCEDiceLoss, {}),
    "focal": (FocalLoss, {}),
    "cross_entropy": (SoftmaxCrossEntropy, {}),
}
LOSS_NAMES = tuple(_LOSSES)


def _check_name(name):
    if name not in _LOSSES:
        raise ValueError(f"Unknown loss name {name!r}; expected one of {LOSS_NAMES}.")


def get_loss(name, **kwargs):
    """Return a new loss instance by name.

    Args:
        name: One of `LOSS_NAMES`: 'bce', 'soft_bce', 'dice', 'bce_dice', 'focal',
            'cross_entropy'.
        **kwargs: Arguments of the loss class, e.g. `label_smoothing` for 'soft_bce'
            (default 0.1; 0 reproduces the study's SoftBCEWithLogitsLoss), `smooth` for 'dice',
            `alpha` and `gamma` for 'focal'.

    Example:

    ```python
    loss = get_loss("soft_bce", label_smoothing=0.05)
    ```
    """
    _check_name(name)
    cls, defaults = _LOSSES[name]
    return cls(**{**defaults, **kwargs})


def num_classes_for(name):
    """Return the number of output channels the named loss needs: 2 for 'cross_entropy', else 1.

    Args:
        name: One of `LOSS_NAMES`.

    Example:

    >>> num_classes_for("cross_entropy")
    2
    """
    _check_name(name)
    return 2 if _LOSSES[name][0] is SoftmaxCrossEntropy else 1
