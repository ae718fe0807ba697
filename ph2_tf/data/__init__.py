"""Stage 1, data: PH2 through TFDS, preprocessing, augmentation, and every backend's pipeline."""
