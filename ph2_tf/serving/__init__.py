"""Stage 5, serving: SavedModel export, post-processing, publishing, model cards and prediction."""
