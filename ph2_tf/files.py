"""Writing files that hold state so that a reader never sees half of one.

Everything is first written to a temporary name in the destination's folder, then moved over the
destination with `os.replace`, which is atomic on POSIX file systems: a kill, a crash or a full
disk leaves either the old file or the new one, plus at most a stray temporary file that the next
write replaces.
"""

import contextlib
import json
import os
import pathlib


def partial_path(path):
    """The temporary name `path` is written under before it is moved into place.

    It keeps the suffix, since some writers insist on it (Keras saves `.keras` and `.h5` only).
    """
    path = pathlib.Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}")


@contextlib.contextmanager
def replacing(path):
    """Yields a temporary path to write; on success it replaces `path` in one step.

    On an exception the temporary file is removed and `path` is left as it was.

    Example:

    ```python
    with replacing("run/best.keras") as partial:
        model.save(partial)
    ```
    """
    path = pathlib.Path(path)
    partial = partial_path(path)
    try:
        yield partial
        with open(partial, "rb") as written:
            os.fsync(written.fileno())  # on disk before the rename makes it the real file
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    with replacing(path) as partial:
        partial.write_text(text)


def write_json(path, value):
    """Writes `value` as indented JSON (with a final newline) to `path` atomically."""
    write_text(path, json.dumps(value, indent=2) + "\n")
