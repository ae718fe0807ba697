"""TFDS datasets of this project; importing the package registers the `ph2` builder."""

from tfds_ph2 import ph2

__all__ = ["ph2"]
