"""TF Serving's version layout, `<base_dir>/<model_name>/<integer version>/saved_model.pb`.

No TensorFlow import, so that commands can check paths before paying for it.
"""

import pathlib


def served_versions(model_dir):
    """Integer-named version directories holding a SavedModel, oldest first.

    Args:
        model_dir: `<base_dir>/<model_name>`.

    Returns:
        A list of `pathlib.Path`; TF Serving serves the last one.
    """
    versions = [
        p
        for p in pathlib.Path(model_dir).glob("*")
        if p.name.isdigit() and (p / "saved_model.pb").exists()
    ]
    return sorted(versions, key=lambda p: int(p.name))


def next_version(model_dir):
    """Next TF Serving version number under a model's base path (1 when there is none).

    Args:
        model_dir: `<base_dir>/<model_name>`.

    Returns:
        One more than the largest integer-named subdirectory, or 1.
    """
    model_dir = pathlib.Path(model_dir)
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def resolve(saved_model):
    """A SavedModel version directory, or the latest version under a model directory.

    Args:
        saved_model: a version directory or a model directory.

    Returns:
        The version directory, as a `pathlib.Path`.

    Raises:
        ValueError: neither holds a SavedModel.
    """
    path = pathlib.Path(saved_model)
    if (path / "saved_model.pb").exists():
        return path
    versions = served_versions(path)
    if not versions:
        raise ValueError(f"no SavedModel in {saved_model!r} or in its numbered subdirectories")
    return versions[-1]
