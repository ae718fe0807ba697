#!/usr/bin/env bash
# Here, before a device call of run_reference_grid.sh (no device time): the data and wheels it
# carries. Needs the TensorFlow install (pip install .) and PH2 (PH2_MANUAL_DIR).
#
#   bash benchmarks/device/prepare_grid_data.sh [TFDS_DATA_DIR]
#
# Prepares ph2/resized_256 in TFDS_DATA_DIR (default ~/tensorflow_datasets) with
# `python -m ph2_tf prepare`, then copies into .device_data/ only what tfds.data_source reads
# there: the array_record shards and the metadata (about 23 MiB; the tfrecord shards and the
# 147 MiB `original` config stay here).
set -euo pipefail
cd "$(dirname "$0")/../.."
data_dir=${1:-$HOME/tensorflow_datasets}
python -m ph2_tf prepare --data-dir "$data_dir" --configs resized_256
version_dir=$(ls -d "$data_dir"/ph2/resized_256/*/ | sort | tail -1)
target=.device_data/ph2/resized_256/$(basename "$version_dir")
rm -rf .device_data && mkdir -p "$target"
cp "$version_dir"/dataset_info.json "$version_dir"/features.json "$version_dir"/*.labels.txt \
  "$version_dir"/*.array_record-* "$target"/
[ -d .whl ] || bash ../shared/device/fetch-wheels.sh
python benchmarks/device/carry_size.py .whl .device_data || echo "stage .device_data in a call of its own first: REFERENCE_GRID.md"
