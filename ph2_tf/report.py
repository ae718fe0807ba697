"""Comparison tables and plots from the per-seed records that `ph2_tf.tuning` writes."""

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# (column name, record key, label in comparison.md)
SCORES = (
    ("seed_score", "seed_score", "seed score (pixel acc.)"),
    ("jaccard", "jaccard", "Jaccard"),
    ("dice", "dice", "Dice"),
    ("jaccard_full_res", "jaccard", "Jaccard at original size"),
)
CSV_COLUMNS = (
    ["model", "epochs", "optimizer", "loss", "learning_rate", "seeds"]
    + [f"{name}_{stat}" for name, _, _ in SCORES for stat in ("mean", "std")]
    + ["train_seconds_mean", "study_iou"]
)


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
        row = {
            "model": config.model,
            "epochs": config.epochs,
            "optimizer": mine[0]["optimizer"],
            "loss": config.loss,
            "learning_rate": config.learning_rate,
            "seeds": len(mine),
            "name": config.name,
        }
        for name, key, _ in SCORES:
            split = "test_original_resolution" if name.endswith("_full_res") else "test"
            values = [r[split][key] for r in mine]
            row[f"{name}_mean"] = float(np.mean(values))
            row[f"{name}_std"] = float(np.std(values))
        row["train_seconds_mean"] = float(np.mean([r["train_seconds"] for r in mine]))
        # None: the study ran this configuration and it did not train; "": not in the study.
        row["study_iou"] = (study_scores or {}).get(config, "")
        rows.append(row)
    return rows


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_markdown(rows, path, settings_line, test_images):
    """`comparison.md`: our test-split scores (mean ± std over seeds) beside the study's."""
    header = ["model", "epochs", "optimizer", "loss", "lr"]
    header += [label for _, _, label in SCORES]
    header += ["train time (s)", 'study\'s "IoU" (= pixel acc.)']
    lines = [
        f"# PH2 comparison (test split, {test_images} images)",
        "",
        settings_line,
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
        ]
        for name, _, _ in SCORES:
            mean, std = row[f"{name}_mean"], row[f"{name}_std"]
            # A standard deviation over one seed would only look like certainty.
            cells.append(f"{mean:.3f} ± {std:.3f}" if row["seeds"] > 1 else f"{mean:.3f}")
        cells.append(f"{row['train_seconds_mean']:.0f}")
        study = row["study_iou"]
        cells.append({None: "did not train", "": "—"}.get(study) or f"{study:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    Path(path).write_text("\n".join(lines) + "\n")


def plot_comparison(rows, path):
    """Grouped bars of seed score, Jaccard and Dice per configuration, std as error bars."""
    x = np.arange(len(rows))
    bar = 0.8 / len(SCORES)
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(rows) + 2), 4.5))
    for i, (name, _, label) in enumerate(SCORES):
        ax.bar(
            x + (i - (len(SCORES) - 1) / 2) * bar,
            [r[f"{name}_mean"] for r in rows],
            bar,
            yerr=[r[f"{name}_std"] for r in rows],
            capsize=2,
            label=label,
        )
    ax.set_xticks(x, [r["name"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test score (mean ± std over seeds)")
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
