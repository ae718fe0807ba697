"""Stage 4, evaluation: segmentation metrics and scoring at each image's original size."""
