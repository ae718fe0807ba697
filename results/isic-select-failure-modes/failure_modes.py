"""Where the served models lose Jaccard on ISIC-select: masks too large, too small, or missed.

For each published version, through its `serving_default` signature at original size, on the
ISIC-select images: each image's Jaccard, and whether its mask is larger or smaller than the
true lesion. An image's shortfall is 1 − Jaccard; the tables split the summed shortfall, divided
by the number of images (so the parts add up to 1 − the mean Jaccard), between:
- `missed`: Jaccard under 0.05 (no overlap to speak of; the component kept is not the lesion,
  or nothing is marked);
- `too large`: the mask covers more pixels than the lesion;
- `too small`: the mask covers fewer.

A second table gives the masks' balance on each set: ISIC-select, PH2 validation with
`--data-dir`, ISIC-2017 dev with `--isic-dev` (evaluation only: reported, never chosen on). It
has the median area ratio, precision and recall, and how many masks are smaller or larger than
the lesion, to tell a model's error from a difference in how the sets' lesions were outlined.
It also has the mean Jaccard each set would have if every mask were grown by `GROWTHS` of its
equivalent radius (the radius of a disc of its area), a Euclidean margin: what a wider outline
would gain on one set and cost on another.

For the first two versions it also lists the images where either trails the other most, with
each mask's precision (share of the mask that is lesion) and recall (share of the lesion
masked), and the mean probability inside the lesion and in the mask outside it.

    python results/isic-select-failure-modes/failure_modes.py --data-dir /tmp/tfds \\
        --isic-select ../shared/external/isic2017-select \\
        --isic-dev ../shared/external/isic2017-dev \\
        saved_models/ph2_unet/10 saved_models/ph2_segnet/14 saved_models/lesion_unet/1
"""

import argparse

import numpy as np
import tensorflow as tf
from scipy import ndimage

from ph2_tf.data import external

MISSED = 0.05
GROWTHS = (0.03, 0.06)
LISTED = 12


def jaccard(mask, truth):
    union = (mask | truth).sum()
    return (mask & truth).sum() / union if union else 1.0


def grown(mask, fraction):
    """`mask` with every pixel within `fraction` of its equivalent radius added."""
    radius = fraction * np.sqrt(mask.sum() / np.pi)
    return ndimage.distance_transform_edt(~mask) <= radius


def image_record(serve, case):
    outputs = serve(images=tf.constant(case.image[None]))
    mask = outputs["mask"].numpy()[0, ..., 0] > 0
    probability = outputs["probabilities"].numpy()[0, ..., 0]
    truth = case.mask
    overlap = (mask & truth).sum()
    false_positive = mask & ~truth
    return {
        "jaccard": jaccard(mask, truth),
        **{f"jaccard_grown_{f:g}": jaccard(grown(mask, f), truth) for f in GROWTHS},
        "precision": overlap / mask.sum() if mask.any() else float("nan"),
        "recall": overlap / truth.sum(),
        "area_ratio": mask.sum() / truth.sum(),
        "probability_in_lesion": probability[truth].mean(),
        "probability_outside_in_mask": (
            probability[false_positive].mean() if false_positive.any() else float("nan")
        ),
    }


def mode(record):
    if record["jaccard"] < MISSED:
        return "missed"
    return "too large" if record["area_ratio"] > 1 else "too small"


def shortfall_table(records_by_version):
    lines = [
        "| version | mean Jaccard | shortfall: missed | too large | too small "
        "| images missed / too large / too small |",
        "|---|---|---|---|---|---|",
    ]
    for version, records in records_by_version.items():
        count = len(records)
        parts = {name: [] for name in ("missed", "too large", "too small")}
        for record in records.values():
            parts[mode(record)].append(1 - record["jaccard"])
        mean = np.mean([record["jaccard"] for record in records.values()])
        shares = " | ".join(f"{sum(values) / count:.4f}" for values in parts.values())
        counts = " / ".join(str(len(values)) for values in parts.values())
        lines.append(f"| `{version}` | {mean:.4f} | {shares} | {counts} |")
    return lines


def balance_table(records_by_set):
    lines = [
        "| version | set | images | median area ratio | median precision | median recall "
        "| masks smaller / larger than the lesion | mean Jaccard | "
        + " | ".join(f"grown by {f:.0%} of the radius" for f in GROWTHS)
        + " |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(GROWTHS),
    ]
    for (version, set_name), records in records_by_set.items():
        ratios = np.array([record["area_ratio"] for record in records.values()])
        precision = np.nanmedian([record["precision"] for record in records.values()])
        recall = np.median([record["recall"] for record in records.values()])
        lines.append(
            f"| `{version}` | {set_name} | {len(records)} | {np.median(ratios):.3f} "
            f"| {precision:.3f} | {recall:.3f} | {(ratios < 1).sum()} / {(ratios > 1).sum()} "
            f"| {np.mean([record['jaccard'] for record in records.values()]):.4f} | "
            + " | ".join(
                f"{np.mean([record[f'jaccard_grown_{f:g}'] for record in records.values()]):.4f}"
                for f in GROWTHS
            )
            + " |"
        )
    return lines


def trailing_table(first, second, records_by_version):
    a, b = records_by_version[first], records_by_version[second]
    gaps = sorted(a, key=lambda image_id: a[image_id]["jaccard"] - b[image_id]["jaccard"])
    lines = [
        f"Images where `{first}` trails `{second}` most (Jaccard, precision, recall, mask area "
        "over lesion area; mean probability in the lesion, and in the mask outside it):",
        "",
        "| image | Jaccard | precision | recall | area ratio | p in lesion | p outside, in mask "
        "| other's Jaccard | other's area ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for image_id in gaps[:LISTED]:
        r, o = a[image_id], b[image_id]
        lines.append(
            f"| {image_id} | {r['jaccard']:.3f} | {r['precision']:.2f} | {r['recall']:.2f} "
            f"| {r['area_ratio']:.2f} | {r['probability_in_lesion']:.2f} "
            f"| {r['probability_outside_in_mask']:.2f} | {o['jaccard']:.3f} "
            f"| {o['area_ratio']:.2f} |"
        )
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="+", help="published version directories")
    parser.add_argument("--isic-select", required=True, help="the ISIC-select folder")
    parser.add_argument("--data-dir", help="TFDS data directory holding ph2/original")
    parser.add_argument("--isic-dev", help="the ISIC-2017 dev folder (evaluation only)")
    args = parser.parse_args()
    cases = external.folder_cases(args.isic_select)
    if not cases:
        parser.error(f"--isic-select: no images in {args.isic_select}")
    sets = {"ISIC-select": cases}
    if args.data_dir:
        sets = {"PH2 validation": external.ph2_cases("validation", data_dir=args.data_dir), **sets}
    if args.isic_dev:
        sets["ISIC-2017 dev"] = external.folder_cases(args.isic_dev)
        if not sets["ISIC-2017 dev"]:
            parser.error(f"--isic-dev: no images in {args.isic_dev}")
    records_by_version, records_by_set = {}, {}
    for version in args.versions:
        serve = tf.saved_model.load(version).signatures["serving_default"]
        for set_name, set_cases in sets.items():
            records_by_set[version, set_name] = {
                case.image_id: image_record(serve, case) for case in set_cases
            }
        records_by_version[version] = records_by_set[version, "ISIC-select"]
    print(f"ISIC-select: {len(cases)} images, each version's serving_default at original size")
    print()
    print("\n".join(shortfall_table(records_by_version)))
    print()
    print("\n".join(balance_table(records_by_set)))
    if len(args.versions) >= 2:
        first, second = args.versions[:2]
        for pair in ((first, second), (second, first)):
            print()
            print("\n".join(trailing_table(*pair, records_by_version)))


if __name__ == "__main__":
    main()
