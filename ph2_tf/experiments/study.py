"""The published study's comparison: its 15 configurations and the scores its table printed.

Plain Python, so that the command line can list and check configuration names without
importing TensorFlow or Keras Tuner.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One row of the comparison: architecture, epochs, loss and learning rate."""

    model: str
    epochs: int
    loss: str
    learning_rate: float

    @property
    def name(self) -> str:
        return f"{self.model}-{self.loss}-lr{self.learning_rate:g}-e{self.epochs}"


def _configurations(model, rows):
    return tuple(Configuration(model, epochs, loss, lr) for epochs, loss, lr in rows)


# The study's 15 configurations, in its table order; `STUDY_SCORES` holds the number its table
# printed as "IoU", which was really pixel accuracy (None: the run did not train).
STUDY_GRID = _configurations(
    "unet",
    [
        (30, "bce", 1e-4),
        (50, "bce", 1e-4),
        (75, "bce", 1e-4),
        (50, "cross_entropy", 1e-4),
        (50, "dice", 1e-5),
        (50, "soft_bce", 1e-5),
        (50, "soft_bce", 1e-4),
    ],
) + _configurations(
    "segnet",
    [
        (15, "bce", 1e-5),
        (15, "bce", 1e-4),
        (15, "bce", 1e-3),
        (15, "bce", 1e-2),
        (50, "dice", 1e-5),
        (10, "dice", 1e-4),
        (50, "soft_bce", 1e-5),
        (50, "soft_bce", 1e-4),
    ],
)
STUDY_SCORES = dict(
    zip(
        STUDY_GRID,
        [0.9215, 0.9136, 0.9314, None, 0.9149, 0.9271, 0.9335]
        + [0.2745, 0.3463, 0.2618, 0.3257, 0.9138, 0.3218, 0.9369, 0.9509],
        strict=True,
    )
)

# How the tuner chooses configurations: exactly the study's grid, or Bayesian optimization over
# `SEARCH_SPACE`.
MODES = ("grid", "search")

# Bayesian search explores the product of the values the study used.
SEARCH_SPACE = {
    "model": sorted({c.model for c in STUDY_GRID}),
    "loss": sorted({c.loss for c in STUDY_GRID}),
    "learning_rate": sorted({c.learning_rate for c in STUDY_GRID}),
    "epochs": sorted({c.epochs for c in STUDY_GRID}),
}


def select(names=None, epochs=None):
    """Part of the study's grid, in its table order.

    Args:
        names: configuration names to keep (`Configuration.name`); None keeps all 15.
        epochs: replaces every kept configuration's epochs when given. Configurations that
            then coincide (`unet-bce-lr0.0001-e30` and `-e50` with `epochs=2`) are kept once.

    Returns:
        A tuple of `Configuration`s.

    Raises:
        ValueError: a name that is not one of the study's configurations.
    """
    known = [c.name for c in STUDY_GRID]
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ValueError(
            f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    grid = [c for c in STUDY_GRID if names is None or c.name in names]
    if epochs is not None:
        grid = [dataclasses.replace(c, epochs=epochs) for c in grid]
    return tuple(dict.fromkeys(grid))
