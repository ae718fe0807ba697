"""Conversions from model logits to the lesion's logit or probability.

Models output logits of shape `(B, H, W, num_classes)`: `num_classes=1` is a sigmoid head
(the single channel is the lesion's logit), `num_classes=2` a softmax head whose channel 1 is
the lesion. These helpers let losses and metrics treat both heads alike.
"""

from keras import ops

HEAD_CHANNELS = (1, 2)


def _num_channels(logits):
    channels = logits.shape[-1]
    if channels not in HEAD_CHANNELS:
        raise ValueError(
            "Expected logits with 1 (sigmoid head) or 2 (softmax head) channels in the last axis. "
            f"Received: shape={tuple(logits.shape)}"
        )
    return channels


def lesion_logit(logits):
    """Return the lesion's binary logit, shape `(B, H, W, 1)`, for either head.

    For a softmax head the binary logit is `logits[..., 1] - logits[..., 0]`, because
    `sigmoid(l1 - l0) == softmax([l0, l1])[1]`.

    Args:
        logits: Tensor `(B, H, W, C)` with `C` 1 (sigmoid head) or 2 (softmax head).

    Example:

    >>> import numpy as np
    >>> tuple(lesion_logit(np.zeros((1, 2, 2, 2), "float32")).shape)
    (1, 2, 2, 1)
    """
    logits = ops.convert_to_tensor(logits)
    if _num_channels(logits) == 1:
        return logits
    return logits[..., 1:2] - logits[..., 0:1]


def lesion_probability(logits):
    """Return the lesion probability, shape `(B, H, W, 1)`, for either head.

    Args:
        logits: Tensor `(B, H, W, C)` with `C` 1 (sigmoid head) or 2 (softmax head).

    Example:

    >>> import numpy as np
    >>> float(lesion_probability(np.zeros((1, 1, 1, 1), "float32"))[0, 0, 0, 0])
    0.5
    """
    return ops.sigmoid(lesion_logit(logits))
