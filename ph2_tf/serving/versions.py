"""TF Serving's version layout, `<base_dir>/<model_name>/<integer version>/saved_model.pb`, and
how a new version is put there without ever being half-written.

A version is assembled in a staging folder beside the versions (`STAGING_DIR`), then renamed to
its number in one step: TF Serving, `predict` and `resolve` see either no new version or a
complete one. TF Serving serves only folders whose name is all digits, so it never loads the
staging folder, and neither does `served_versions`. A staging folder left by a killed process is
removed by the next `staging` of that model.

No TensorFlow import, so that commands can check paths before paying for it.
"""

import contextlib
import errno
import fcntl
import os
import pathlib
import shutil

# The model root as TF Serving's Docker image conventionally sees it (`-v saved_models:/models`),
# written into `models.config`.
DOCKER_SERVING_ROOT = "/models"
# Where a version is assembled before it is renamed to its number: not all digits, so that TF
# Serving ignores it, and hidden from a plain `ls`.
STAGING_DIR = ".staging"


def is_version_name(name):
    """Whether a folder name is a TF Serving version number: ASCII digits only."""
    return name.isascii() and name.isdigit()


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
        if is_version_name(p.name) and (p / "saved_model.pb").exists()
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
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and is_version_name(p.name)]
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
        raise ValueError(f"no SavedModel in {str(saved_model)!r} or in its numbered subdirectories")
    return versions[-1]


class PublishingError(ValueError):
    """A version cannot be published as asked; the message names the folder."""


@contextlib.contextmanager
def staging(model_dir):
    """Holds the model's publishing lock and yields a staging folder to assemble a version in.

    The lock (an advisory `flock` on `model_dir` itself, released by the system when its process
    dies) lets one process at a time stage and number versions of a model, so that two exports
    never take the same number or remove each other's staging folder. A staging folder found
    there is a killed process's and is removed; whatever was not moved out with `promote` is
    removed when the block ends, and so is `model_dir` if the block created it and left it
    empty.

    Args:
        model_dir: `<base_dir>/<model_name>`; created if missing.

    Yields:
        The staging folder, a `pathlib.Path` that does not exist yet.

    Raises:
        PublishingError: another live process is publishing a version of this model.
    """
    model_dir = pathlib.Path(model_dir)
    created = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(model_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise PublishingError(
                f"another process is publishing a version of {str(model_dir)!r}: wait for it"
            ) from None
        folder = model_dir / STAGING_DIR
        shutil.rmtree(folder, ignore_errors=True)  # a killed export's
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if created and not any(model_dir.iterdir()):
                model_dir.rmdir()  # a first version that failed leaves no model folder
    finally:
        os.close(descriptor)  # releases the lock


def require_free(model_dir, version):
    """Refuses a version number that is not a positive int or is taken; None (the next) passes.

    Raises:
        PublishingError: naming the folder.
    """
    if version is None:
        return
    if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
        raise PublishingError(f"version must be a positive int, got {version!r}")
    path = pathlib.Path(model_dir) / str(version)
    if path.exists():
        raise PublishingError(f"version {version} already exists: {str(path)!r}")


def promote(staged, version=None):
    """Renames a staged version to its number, in one step; call inside `staging`.

    Args:
        staged: the folder `staging` yielded, holding the complete version.
        version: positive int; the next free number when None.

    Returns:
        The version directory, as a `pathlib.Path`.

    Raises:
        PublishingError: `version` is not a positive int or is taken; nothing is moved then.
    """
    staged = pathlib.Path(staged)
    model_dir = staged.parent
    version = next_version(model_dir) if version is None else version
    # A rename onto an existing empty folder would succeed: the lock makes this check hold.
    require_free(model_dir, version)
    path = model_dir / str(version)
    for written in [*staged.rglob("*"), staged]:  # on disk before the rename exposes them
        _fsync(written)
    os.rename(staged, path)
    _fsync(model_dir)  # the rename itself
    return path


def _fsync(path):
    """Flushes a file or a folder's entries to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
