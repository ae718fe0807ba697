"""Model factories: `build_model(name, ...)` dispatches to UNet or SegNet."""

from ph2_tf.models.segnet import build_segnet
from ph2_tf.models.unet import build_unet

_BUILDERS = {"unet": build_unet, "segnet": build_segnet}
MODEL_NAMES = tuple(_BUILDERS)


def build_model(
    name, input_shape=(None, None, 3), width=1.0, num_classes=1, colour_constancy=False
):
    """Build a segmentation model by name, returning logits `(B, H, W, num_classes)`.

    Args:
        name: One of `MODEL_NAMES`: 'unet' or 'segnet'.
        input_shape: `(height, width, 3)`; sizes may be None.
        width: Multiplier of every filter count (1.0: the study's model; `small` profile: 0.125).
        num_classes: 1 for a sigmoid lesion head, 2 for a softmax head (channel 1 = lesion).
        colour_constancy: Start with shades-of-grey colour normalisation (`ShadesOfGrey`), which
            then also runs in the exported serving graph.

    Example:

    ```python
    model = build_model("segnet", width=0.25)
    ```
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model name {name!r}; expected one of {MODEL_NAMES}.")
    return _BUILDERS[name](
        input_shape=input_shape,
        width=width,
        num_classes=num_classes,
        colour_constancy=colour_constancy,
        name=name,
    )


__all__ = ["MODEL_NAMES", "build_model", "build_segnet", "build_unet"]
