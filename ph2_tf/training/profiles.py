"""Training profiles: the study's full setting and a CPU-sized one."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Profile:
    """Input size, model width and global batch size for one training setting.

    Args:
        image_size: side of the square training images, in pixels.
        width: multiplier applied to every filter count (1.0 is the study's model).
        batch_size: global batch size (split over replicas under a distribution strategy).
    """

    image_size: int
    width: float
    batch_size: int


PROFILES = {
    # The study: 256x256 inputs, the published filter counts, batch 12.
    "full": Profile(image_size=256, width=1.0, batch_size=12),
    # Sized so that the whole tuning grid runs on a small CPU machine (its time:
    # results/main-job-small-seeds1/): 96x96 inputs and an eighth of the filters
    # (UNet 8..128, SegNet 8..64 filters).
    "small": Profile(image_size=96, width=0.125, batch_size=12),
    # The served models: the study's input size at a quarter of the filters, small enough to
    # serve on a CPU (sizes: docs/training.md, results/v2-models/).
    "compact": Profile(image_size=256, width=0.25, batch_size=12),
}
