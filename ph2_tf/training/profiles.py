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
    # Sized for 2 CPU cores (the whole 15-configuration grid with one seed took 44 min,
    # dataset preparation included: results/main-job-small-seeds1):
    # 96x96 inputs and an eighth of the filters (UNet 8..128, SegNet 8..64 filters).
    "small": Profile(image_size=96, width=0.125, batch_size=12),
    # The shipped version-2 models: the study's input size at a quarter of the filters (UNet
    # 1.9 M parameters, SegNet 1.8 M; each SavedModel well under 16 MiB), for CPU serving.
    "compact": Profile(image_size=256, width=0.25, batch_size=12),
}
