"""Writes `splits.json`, the case ids of each split of the real PH2 data, and prints them.

The builder computes the split from `PH2_dataset.txt` with `split_case_ids`; this file records
the result so that it can be reviewed and so that the real-data test can compare against it.

    .venv/bin/python -m tfds_ph2.ph2.make_splits [MANUAL_DIR]   # default: $PH2_MANUAL_DIR
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from etils import epath

from tfds_ph2.ph2.ph2_dataset_builder import (
    CLASS_NAMES,
    METADATA_FILE,
    find_data_root,
    parse_metadata,
    split_case_ids,
)

SPLITS_JSON = Path(__file__).resolve().parent / "splits.json"


def compute_splits(manual_dir: Path) -> dict[str, list[str]]:
    """The split of the PH2 data in `manual_dir` (any layout the builder accepts but a zip)."""
    root = find_data_root(epath.Path(manual_dir))
    if root is None:
        raise FileNotFoundError(f"No {METADATA_FILE} found in {manual_dir} or its PH2Dataset/")
    rows = parse_metadata(root / METADATA_FILE)
    return split_case_ids({case_id: row["label"] for case_id, row in rows.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manual_dir", nargs="?", default=os.environ.get("PH2_MANUAL_DIR"))
    parser.add_argument("--out", type=Path, default=SPLITS_JSON)
    args = parser.parse_args()
    if not args.manual_dir:
        parser.error("give MANUAL_DIR or set PH2_MANUAL_DIR")
    splits = compute_splits(Path(args.manual_dir))
    args.out.write_text(json.dumps(splits, indent=1) + "\n")
    labels = parse_metadata(find_data_root(epath.Path(args.manual_dir)) / METADATA_FILE)
    for name, ids in splits.items():
        counts = "/".join(str(sum(labels[i]["label"] == c for i in ids)) for c in range(3))
        print(f"{name} ({len(ids)}; {'/'.join(CLASS_NAMES)} = {counts}): {' '.join(ids)}\n")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
