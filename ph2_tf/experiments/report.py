"""Comparison tables and plots from the per-seed records that `ph2_tf.experiments.tuning` writes.

Spreads are the sample standard deviation over seeds (`ddof=1`), shown only with 2 or more
seeds; a diverged seed (no metrics) is counted in its own column, not averaged in.
"""

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# (column name, record key, label in comparison.md)
SCORES = (
    ("pixel_accuracy", "pixel_accuracy", 'pixel accuracy (the study\'s "IoU" metric)'),
    ("jaccard", "jaccard", "Jaccard"),
    ("dice", "dice", "Dice"),
    ("jaccard_full_res", "jaccard", "Jaccard at original size"),
)
CSV_COLUMNS = (
    ["model", "epochs", "optimizer", "loss", "learning_rate", "seeds"]
    + [f"{name}_{stat}" for name, _, _ in SCORES for stat in ("mean", "std")]
    + ["train_seconds_mean", "diverged_seeds", "study_iou"]
)
DIVERGED = "diverged"
# A score no finished seed has: original-size data is not on a machine without TensorFlow.
NOT_MEASURED = "not measured"


def load_records(run_dir) -> list[dict]:
    """All per-seed records of a run, sorted by configuration name and seed."""
    paths = sorted((Path(run_dir) / "records").glob("*.json"))
    records = [json.loads(p.read_text()) for p in paths]
    return sorted(records, key=lambda r: (r["name"], r["seed"]))


def summarize(records, configurations, study_scores=None) -> list[dict]:
    """One row per configuration that has records, in `configurations` order.

    Args:
        records: per-seed records (`load_records`).
        configurations: `tuning.Configuration`s giving the row order.
        study_scores: optional {configuration: the study's "IoU"} for the last column.
    """
    rows = []
    for config in configurations:
        mine = [r for r in records if r["name"] == config.name]
        if not mine:
            continue
        finished = [r for r in mine if not r.get(DIVERGED)]
        row = {
            "model": config.model,
            "epochs": config.epochs,
            "optimizer": mine[0]["optimizer"],
            "loss": config.loss,
            "learning_rate": config.learning_rate,
            "seeds": len(finished),
            "diverged_seeds": len(mine) - len(finished),
            "name": config.name,
        }
        for name, key, _ in SCORES:
            split = "test_original_resolution" if name.endswith("_full_res") else "test"
            # None at original size: that data was not on the training machine.
            values = [r[split][key] for r in finished if r[split] is not None]
            row[f"{name}_mean"] = float(np.mean(values)) if values else None
            row[f"{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        times = [r["train_seconds"] for r in finished]
        row["train_seconds_mean"] = float(np.mean(times)) if times else None
        # None: the study ran this configuration and it did not train; "": not in the study.
        row["study_iou"] = (study_scores or {}).get(config, "")
        rows.append(row)
    return rows


def provenance_line(records):
    """One sentence naming the backend, device, precision and commits the records came from."""
    seen = {}
    for record in records:
        info = record.get("provenance")
        if info is None:
            key = "provenance not recorded (records written before it was added)"
        else:
            commit = info["git"]["commit"]
            commit = "no git checkout" if commit is None else commit[:10]
            commit += " + uncommitted changes" if info["git"]["dirty"] else ""
            onednn = {True: ", oneDNN on", False: ", oneDNN off"}.get(info.get("onednn"), "")
            key = (
                f"backend {info['backend']}{onednn}, {info['device']}, {info['precision']}, "
                f"Keras {info['packages']['keras']}, commit {commit}"
            )
        seen[key] = seen.get(key, 0) + 1
    return "Produced by: " + "; ".join(f"{key} ({n} records)" for key, n in seen.items()) + "."


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_markdown(rows, path, settings_line, test_images, provenance="", without_records=()):
    """`comparison.md`: our test-split scores (mean ± sample std over seeds) beside the study's.

    Args:
        rows: `summarize` rows.
        path: destination file.
        settings_line: one paragraph describing the setting (`settings_line`).
        test_images: the test split's size.
        provenance: `provenance_line(records)`.
        without_records: names of the run's configurations that have no record yet (a run in
            progress), listed under the table so that a missing row is never silent.
    """
    header = ["model", "epochs", "optimizer", "loss", "lr", "seeds"]
    header += [label for _, _, label in SCORES]
    header += ["train time (s)", 'study\'s published "IoU"']
    lines = [
        f"# PH2 comparison (test split, {test_images} images)",
        "",
        settings_line,
        "",
        "Mean over seeds, ± the sample standard deviation (ddof 1) when there are 2 or more.",
        provenance,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [
            row["model"],
            str(row["epochs"]),
            row["optimizer"],
            row["loss"],
            f"{row['learning_rate']:g}",
            str(row["seeds"]),
        ]
        for name, _, _ in SCORES:
            mean, std = row[f"{name}_mean"], row[f"{name}_std"]
            # A standard deviation over one seed would only look like certainty.
            cells.append(_mean_std(mean, std, row["seeds"], row["diverged_seeds"]))
        time = row["train_seconds_mean"]
        cells.append(DIVERGED if time is None else f"{time:.0f}")
        study = row["study_iou"]
        cells.append({None: "did not train", "": "—"}.get(study) or f"{study:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    if without_records:
        lines += ["", f"No record yet (the run is not finished): {', '.join(without_records)}."]
    Path(path).write_text("\n".join(lines) + "\n")


def _mean_std(mean, std, finished, diverged):
    if mean is None and finished:
        return NOT_MEASURED
    if mean is None:
        return f"{DIVERGED} (all {diverged} seeds)"
    text = f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"
    return text + (f" ({diverged} diverged)" if diverged else "")


def settings_line(profile_name, profile, seeds, weight_decay):
    """The paragraph above a comparison table that says what was trained and scored.

    Args:
        profile_name: e.g. `"small"`.
        profile: its `profiles.Profile`.
        seeds: the seeds of every configuration.
        weight_decay: AdamW's weight decay.
    """
    return (
        f"Profile `{profile_name}`: {profile.image_size}×{profile.image_size} inputs, "
        f"filter counts ×{profile.width}, global batch {profile.batch_size}, AdamW (weight decay "
        f"{weight_decay}), no augmentation; seeds {list(seeds)}; scores are per-image means on "
        "the fixed test split, computed on the final weights after the configured epochs."
    )


def plot_comparison(rows, path):
    """Grouped bars of each score per configuration, sample std as error bars (none: no bar)."""

    def values(key):
        return [np.nan if r[key] is None else r[key] for r in rows]

    x = np.arange(len(rows))
    bar = 0.8 / len(SCORES)
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(rows) + 2), 4.5))
    for i, (name, _, label) in enumerate(SCORES):
        ax.bar(
            x + (i - (len(SCORES) - 1) / 2) * bar,
            values(f"{name}_mean"),
            bar,
            yerr=np.nan_to_num(values(f"{name}_std")),
            capsize=2,
            label=label,
        )
    ax.set_xticks(x, [r["name"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test score (mean ± sample std over seeds)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(SCORES), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(records, path):
    """Training loss and validation Jaccard per epoch, mean over seeds, one panel per model."""
    models = sorted({r["configuration"]["model"] for r in records})
    fig, axes = plt.subplots(len(models), 2, figsize=(12, 4 * len(models)), squeeze=False)
    for row_axes, model in zip(axes, models, strict=True):
        names = sorted({r["name"] for r in records if r["configuration"]["model"] == model})
        for name in names:
            histories = [r["history"] for r in records if r["name"] == name]
            for ax, key in zip(row_axes, ("loss", "val_jaccard"), strict=True):
                length = min(len(h[key]) for h in histories)
                mean = np.mean([h[key][:length] for h in histories], axis=0)
                ax.plot(np.arange(1, length + 1), mean, label=name)
        row_axes[0].set_title(f"{model}: training loss")
        row_axes[1].set_title(f"{model}: validation Jaccard")
        row_axes[1].set_ylim(0, 1)
        for ax in row_axes:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        row_axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_masks(images, truths, predictions, path):
    """Rows of test image | truth | one column per model's predicted mask.

    Args:
        images: float images in [0, 1], (N, H, W, 3).
        truths: binary masks, (N, H, W, 1).
        predictions: {column title: binary masks (N, H, W, 1)}.
    """
    columns = 2 + len(predictions)
    fig, axes = plt.subplots(len(images), columns, figsize=(2.2 * columns, 2.2 * len(images)))
    axes = np.atleast_2d(axes)
    titles = ["image", "truth", *predictions]
    panels = [images, truths, *predictions.values()]
    for col, (title, panel) in enumerate(zip(titles, panels, strict=True)):
        axes[0, col].set_title(title, fontsize=9)
        for row in range(len(images)):
            picture = panel[row] if panel[row].shape[-1] == 3 else panel[row][..., 0]
            axes[row, col].imshow(picture, cmap=None if picture.ndim == 3 else "gray")
            axes[row, col].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
