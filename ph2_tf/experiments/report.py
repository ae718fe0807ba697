"""Comparison tables and plots of a tuner run, from its per-seed records.

`write_report` writes a run's `comparison.md` and `comparison.csv` (the tables), and
`comparison.png`, `curves.png` and `masks.png` (the plots) into its directory. Spreads are the
sample standard deviation over seeds (`ddof=1`), shown only with 2 or more seeds; a diverged
seed (no metrics) is counted in its own column, not averaged in.
"""

import csv

import keras
import matplotlib
import numpy as np
import tensorflow_datasets as tfds

import tfds_ph2  # noqa: F401  (registers the 'ph2' builder)
from ph2_tf import files
from ph2_tf.data import arrays, preprocessing
from ph2_tf.experiments.records import SearchSettings, load_seed_model, seed_model_path
from ph2_tf.experiments.study import STUDY_SCORES
from ph2_tf.models.heads import lesion_probability
from ph2_tf.serving.publish import best_per_model
from ph2_tf.training.config import TrainConfig

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

# The files `write_report` writes into a run's directory.
MARKDOWN_TABLE, CSV_TABLE = "comparison.md", "comparison.csv"
COMPARISON_PLOT, CURVES_PLOT, MASKS_PLOT = "comparison.png", "curves.png", "masks.png"
MASK_EXAMPLES = 4

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


def summarize(records, configurations, study_scores=None) -> list[dict]:
    """One row per configuration that has records, in `configurations` order.

    Args:
        records: per-seed records (`records.load_records`).
        configurations: `study.Configuration`s giving the row order.
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
    """`comparison.csv`: the `summarize` rows, one per configuration (written atomically)."""
    with files.replacing(path) as partial, open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_markdown(
    rows, path, settings_line, test_images, provenance="", without_records=(), seeds_asked=None
):
    """`comparison.md`: our test-split scores (mean ± sample std over seeds) beside the study's.

    Args:
        rows: `summarize` rows.
        path: destination file.
        settings_line: one paragraph describing the setting (`settings_line`).
        test_images: the test split's size.
        provenance: `provenance_line(records)`.
        without_records: names of the run's configurations that have no record yet (a run in
            progress), listed under the table so that a missing row is never silent.
        seeds_asked: the number of seeds each configuration was to be trained with; rows with
            fewer records (a run in progress, or seeds that failed) are listed under the table.
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
    short = [
        f"{row['name']} ({row['seeds'] + row['diverged_seeds']} of {seeds_asked})"
        for row in rows
        if seeds_asked and row["seeds"] + row["diverged_seeds"] < seeds_asked
    ]
    if short:
        lines += [
            "",
            f"Fewer seeds than the {seeds_asked} asked (the run is not finished, or a seed "
            f"failed: see its run.log): {', '.join(short)}.",
        ]
    files.write_text(path, "\n".join(lines) + "\n")


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
        f"Profile `{profile_name}`: {profile_description(profile)}, AdamW (weight decay "
        f"{weight_decay}), no augmentation; seeds {list(seeds)}; scores are per-image means on "
        "the fixed test split, computed on the final weights after the configured epochs."
    )


def profile_description(profile):
    """`"96×96 inputs, filter counts ×0.125, global batch 12"` for a `profiles.Profile`."""
    return (
        f"{profile.image_size}×{profile.image_size} inputs, filter counts ×{profile.width}, "
        f"global batch {profile.batch_size}"
    )


def test_split_size(settings: SearchSettings):
    """The number of images of the test split the run's scores were computed on.

    Raises:
        FileNotFoundError: the run's TFDS config is not prepared in `settings.data_dir`.
    """
    config = preprocessing.tfds_config_for(settings.profile.image_size)
    builder = tfds.builder(f"ph2/{config}", data_dir=settings.data_dir)
    if "test" not in builder.info.splits:
        raise FileNotFoundError(
            f"ph2/{config} is not prepared in {builder.data_dir_root}: pass the --data-dir the "
            "run was trained with, or prepare it (ph2-seg prepare)"
        )
    return int(builder.info.splits["test"].num_examples)


def write_report(settings: SearchSettings, configurations, records, profile_name):
    """Writes a run's tables and plots into its directory, each file atomically.

    Args:
        settings: the run's `SearchSettings`.
        configurations: the `study.Configuration`s to report, in row order.
        records: their per-seed records (`records.load_records`), at least one.
        profile_name: the profile's name, for the settings line and the plots' titles.

    Returns:
        The paths written, tables first. `masks.png` is left out, and not redrawn, when a best
        seed's model is not on disk (models are not kept in git: a report from committed
        records has none).

    Raises:
        ValueError: no records.
        FileNotFoundError: the test split is not prepared (`test_split_size`); nothing written.
    """
    if not records:
        raise ValueError(f"no records to report in {settings.run_dir}")
    run_dir = settings.run_dir
    test_images = test_split_size(settings)
    rows = summarize(records, configurations, STUDY_SCORES)
    write_csv(rows, run_dir / CSV_TABLE)
    line = settings_line(profile_name, settings.profile, settings.seeds, TrainConfig.weight_decay)
    if any(r.get("test_original_resolution_missing") for r in records):
        line += (
            " Jaccard at original size is not measured where the training machine had no "
            "full-size `original` data (only the resized configs travel to a machine without "
            "TensorFlow); the records say so in `test_original_resolution_missing`."
        )
    with_records = {r["name"] for r in records}
    write_markdown(
        rows,
        run_dir / MARKDOWN_TABLE,
        line,
        test_images,
        provenance_line(records),
        without_records=[c.name for c in configurations if c.name not in with_records],
        seeds_asked=len(settings.seeds),
    )
    setting = f"profile {profile_name} ({profile_description(settings.profile)})"
    plot_comparison(rows, run_dir / COMPARISON_PLOT, setting, test_images)
    plot_curves(records, run_dir / CURVES_PLOT, setting)
    written = [run_dir / name for name in (MARKDOWN_TABLE, CSV_TABLE, COMPARISON_PLOT, CURVES_PLOT)]
    best = best_per_model(records)
    missing = [
        path for path in (seed_model_path(settings, r) for r in best.values()) if not path.exists()
    ]
    if missing:
        print(f"{MASKS_PLOT} not redrawn: no model at {', '.join(map(str, missing))}", flush=True)
    else:
        _plot_best_masks(settings, best, run_dir / MASKS_PLOT, setting)
        written.append(run_dir / MASKS_PLOT)
    return written


def _plot_best_masks(settings, best, path, setting):
    images, truths, _ = arrays.load_arrays(
        "test",
        settings.profile.image_size,
        data_dir=settings.data_dir,
        manual_dir=settings.manual_dir,
    )
    images, truths = images[:MASK_EXAMPLES], truths[:MASK_EXAMPLES]
    predictions = {
        f"{model_name} ({record['name']}, seed {record['seed']})": keras.ops.convert_to_numpy(
            lesion_probability(load_seed_model(settings, record)(images))
        )
        > 0.5
        for model_name, record in best.items()
    }
    plot_masks(images, truths, predictions, path, setting)


def _save(fig, path, dpi):
    """Saves `fig` to `path` atomically (its format from the suffix) and closes it."""
    with files.replacing(path) as partial:
        fig.savefig(partial, dpi=dpi)
    plt.close(fig)


def plot_comparison(rows, path, setting, test_images):
    """Grouped bars of each test score per configuration, sample std as error bars.

    Args:
        rows: `summarize` rows.
        path: destination PNG.
        setting: what was trained, for the title (the profile: `profile_description`).
        test_images: the test split's size, for the title.

    Returns:
        The (closed) matplotlib figure, for inspection.
    """

    def values(key):
        return [np.nan if r[key] is None else r[key] for r in rows]

    x = np.arange(len(rows))
    bar = 0.8 / len(SCORES)
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(rows) + 2), 5), layout="constrained")
    fig.suptitle(f"Test split ({test_images} images), final weights; {setting}", fontsize=10)
    for i, (name, _, label) in enumerate(SCORES):
        means = values(f"{name}_mean")
        ax.bar(
            x + (i - (len(SCORES) - 1) / 2) * bar,
            means,
            bar,
            yerr=values(f"{name}_std"),  # NaN (one seed): no error bar
            capsize=2,
            label=label + (f" ({NOT_MEASURED})" if np.isnan(means).all() else ""),
        )
    # Seeds per row: a run in progress has rows with fewer seeds, and spreads to match.
    labels = [f"{r['name']} ({r['seeds']} seed{'s' * (r['seeds'] != 1)})" for r in rows]
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test score (mean ± sample std over seeds)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(SCORES), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path, dpi=120)
    return fig


# End markers of configurations that differ only in their epochs, shortest first.
_END_MARKERS = ("o", "s", "^", "D", "v", "P")


def _curve_styles(configurations):
    """Colour, line width and end marker of each configuration's curves.

    Configurations that differ only in their epochs (the study's UNet with bce at 1e-4 for 30,
    50 and 75 epochs) train alike until the shorter ones stop: same loss, learning rate and
    seeds, a constant learning rate, and deterministic kernels on the CPU. Their curves lie on
    one another, so they share a colour; the longest is drawn widest, faintest and underneath,
    each shorter one narrower and stronger on top, and each ends in a marker of its own shape.
    Where the runs agree a reader sees one line with the stops marked on it; where they do not
    (GPU kernels that are not deterministic), the strands part.

    Args:
        configurations: `{name: configuration dict}` of one model (at most 20 loss and
            learning-rate pairs, each then with a colour of its own).

    Returns:
        `{name: keyword arguments of Axes.plot}`.
    """
    groups = {}
    for name, config in configurations.items():
        groups.setdefault((config["loss"], config["learning_rate"]), []).append(name)
    palette = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors
    styles = {}
    for index, names in enumerate(groups.values()):
        colour = palette[index % len(palette)]
        names = sorted(names, key=lambda name: configurations[name]["epochs"])
        for rank, name in enumerate(names):  # rank 0: the shortest, narrowest, on top
            styles[name] = dict(
                color=to_rgba(colour, 1.0 if rank == 0 else 0.45 / rank),
                linewidth=1.3 + 1.8 * rank,
                zorder=3 + len(names) - rank,
                marker=_END_MARKERS[rank % len(_END_MARKERS)],
                markerfacecolor=colour,  # opaque, unlike the faint lines underneath
                markeredgecolor="black",
                markeredgewidth=0.6,
                markersize=7,
            )
    return styles


def _mean_curve(histories, key):
    """Mean over seeds of one history key, over the epochs every seed has."""
    length = min(len(h[key]) for h in histories)
    return np.arange(1, length + 1), np.mean([h[key][:length] for h in histories], axis=0)


def plot_curves(records, path, setting):
    """Per-epoch training loss and validation Jaccard, mean over seeds, one block per model.

    Each model gets one validation-Jaccard panel holding all its configurations, and one
    training-loss panel per loss function: losses of different functions are on different
    scales and cannot be compared. Styles: `_curve_styles`.

    Args:
        records: per-seed records (`records.load_records`).
        path: destination PNG.
        setting: what was trained, for the title (the profile: `profile_description`).

    Returns:
        The (closed) matplotlib figure, for inspection.
    """
    configurations = {r["name"]: r["configuration"] for r in records}
    models = sorted({c["model"] for c in configurations.values()})
    fig = plt.figure(figsize=(15, 7.5 * len(models)), layout="constrained")
    fig.suptitle(
        "Per epoch, mean over seeds: training loss on the training split, Jaccard on the "
        f"validation split; {setting}"
    )
    for block, model in zip(
        fig.subfigures(len(models), 1, squeeze=False)[:, 0], models, strict=True
    ):
        names = sorted(n for n, c in configurations.items() if c["model"] == model)
        styles = _curve_styles({name: configurations[name] for name in names})
        losses = sorted({configurations[n]["loss"] for n in names})
        grid = block.add_gridspec(2, len(losses), height_ratios=(3, 2))
        jaccard_ax = block.add_subplot(grid[0, :])
        loss_axes = {loss: block.add_subplot(grid[1, i]) for i, loss in enumerate(losses)}
        for name in names:
            histories = [r["history"] for r in records if r["name"] == name]
            jaccard_ax.plot(
                *_mean_curve(histories, "val_jaccard"), markevery=[-1], label=name, **styles[name]
            )
            loss_axes[configurations[name]["loss"]].plot(
                *_mean_curve(histories, "loss"), markevery=[-1], **styles[name]
            )
        jaccard_ax.set_title(f"{model}: Jaccard on the validation split")
        jaccard_ax.set_ylim(0, 1)
        jaccard_ax.set_ylabel("Jaccard")
        jaccard_ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            title="same colour: same loss and lr\nmarker: last epoch",
            title_fontsize=8,
        )
        for loss, ax in loss_axes.items():
            ax.set_title(f"{model}: {loss} loss on the training split", fontsize=10)
            ax.set_ylabel(f"{loss} loss")
        for ax in [jaccard_ax, *loss_axes.values()]:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    _save(fig, path, dpi=110)
    return fig


def plot_masks(images, truths, predictions, path, setting):
    """Rows of test image | truth | one column per model's predicted mask.

    Args:
        images: float images in [0, 1], (N, H, W, 3), the first N of the test split.
        truths: binary masks, (N, H, W, 1).
        predictions: {column title: binary masks (N, H, W, 1)}.
        path: destination PNG.
        setting: what was trained, for the title (the profile: `profile_description`).

    Returns:
        The (closed) matplotlib figure, for inspection.
    """
    columns = 2 + len(predictions)
    fig, axes = plt.subplots(
        len(images),
        columns,
        figsize=(2.6 * columns, 2.2 * len(images) + 0.8),
        squeeze=False,
        layout="constrained",
    )
    fig.suptitle(
        f"Test split, first {len(images)} images, best seed of each model by validation "
        f"Jaccard; {setting}",
        fontsize=9,
    )
    titles = ["image", "truth", *predictions]
    panels = [images, truths, *predictions.values()]
    for col, (title, panel) in enumerate(zip(titles, panels, strict=True)):
        axes[0, col].set_title(title, fontsize=8)
        for row in range(len(images)):
            picture = panel[row] if panel[row].shape[-1] == 3 else panel[row][..., 0]
            # Masks on a fixed 0..1 scale: a mask all lesion must not be drawn as all black.
            axes[row, col].imshow(
                picture, **({} if picture.ndim == 3 else dict(cmap="gray", vmin=0, vmax=1))
            )
            axes[row, col].axis("off")
    _save(fig, path, dpi=110)
    return fig
