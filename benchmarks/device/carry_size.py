"""What a device call would carry, against the 64 MiB it may: run here before each call.

    python benchmarks/device/carry_size.py .whl .device_data

The working tree travels with every call: tracked files and untracked files that git does not
ignore. The folders named are those the call would carry (`run`'s `carry`). Prints each part in
MiB and the total; exits with status 1 when the total is over the limit, so that the call can be
split first (`benchmarks/device/stage.sh`). Imports nothing from the project.
"""

import argparse
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
LIMIT_MIB = 64
MIB = 2**20


def tree_bytes(repo=REPO_ROOT):
    """Bytes of the tracked files and the untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    paths = (repo / name.decode() for name in listed if name)
    return sum(path.stat().st_size for path in paths if path.is_file())


def folder_bytes(path):
    """Bytes of the files under `path` (or of `path`, a file)."""
    path = pathlib.Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("carry", nargs="*", help="folders the call would carry")
    args = parser.parse_args(argv)
    parts = {"working tree": tree_bytes()}
    for name in args.carry:
        path = REPO_ROOT / name
        if not path.exists():
            print(f"carry_size: {name}: not in the repository", file=sys.stderr)
            return 2
        parts[name] = folder_bytes(path)
    for name, size in parts.items():
        print(f"{size / MIB:6.1f} MiB  {name}")
    total = sum(parts.values()) / MIB
    verdict = "fits" if total <= LIMIT_MIB else "over: stage a folder in an earlier call"
    print(f"{total:6.1f} MiB  in all, of {LIMIT_MIB}: {verdict}")
    return 0 if total <= LIMIT_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
