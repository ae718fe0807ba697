"""The comparison table and plots of `ph2_tf.experiments.report`."""

import numpy as np
import pytest
from conftest import REPO_ROOT
from matplotlib.colors import to_rgb

from ph2_tf.experiments import records, report
from ph2_tf.experiments.study import STUDY_GRID
from ph2_tf.training.profiles import PROFILES

SMALL_REFERENCE = REPO_ROOT / "results" / "reference-grid-small-seeds2"
SETTING = f"profile small ({report.profile_description(PROFILES['small'])})"


def test_markdown_names_the_configurations_that_have_no_record_yet(tmp_path):
    path = tmp_path / "comparison.md"
    report.write_markdown([], path, "setting", 50, without_records=["a-e15", "b-e50"])
    assert "No record yet (the run is not finished): a-e15, b-e50." in path.read_text()
    report.write_markdown([], path, "setting", 50)
    assert "No record yet" not in path.read_text()


@pytest.fixture(scope="module")
def reference_records():
    """The committed records of the 15-configuration, 2-seed grid on the small profile."""
    return records.load_records(SMALL_REFERENCE)


def test_markdown_notes_the_rows_with_fewer_seeds_than_asked(reference_records, tmp_path):
    first, second = STUDY_GRID[:2]
    # One configuration lost a seed (it failed); another's second seed diverged, which is a
    # result, not a missing seed.
    kept = [r for r in reference_records if (r["name"], r["seed"]) != (first.name, 1)]
    kept = [
        dict(r, diverged="loss nan") if (r["name"], r["seed"]) == (second.name, 1) else r
        for r in kept
    ]
    rows = report.summarize(kept, STUDY_GRID)
    path = tmp_path / "comparison.md"
    report.write_markdown(rows, path, "setting", 50, seeds_asked=2)
    lines = path.read_text().splitlines()
    assert lines[-1] == (
        "Fewer seeds than the 2 asked (the run is not finished, or a seed failed: see its "
        f"run.log): {first.name} (1 of 2)."
    )
    report.write_markdown(rows, path, "setting", 50, seeds_asked=1)
    assert "Fewer seeds" not in path.read_text()


def test_curves_give_each_loss_function_its_own_axes_and_tell_apart_runs_that_overlap(
    reference_records, tmp_path
):
    figure = report.plot_curves(reference_records, tmp_path / "curves.png", SETTING)
    assert (tmp_path / "curves.png").stat().st_size > 0
    title = figure.get_suptitle()
    assert "training split" in title and "validation split" in title and SETTING in title
    axes = {ax.get_title(): ax for ax in figure.axes}
    unet_losses = ["bce", "cross_entropy", "dice", "soft_bce"]
    assert sorted(axes) == sorted(
        ["segnet: Jaccard on the validation split", "unet: Jaccard on the validation split"]
        + [f"segnet: {loss} loss on the training split" for loss in ["bce", "dice", "soft_bce"]]
        + [f"unet: {loss} loss on the training split" for loss in unet_losses]
    )
    # Every configuration of a loss, and only those, on that loss's axes.
    for loss in unet_losses:
        lines = axes[f"unet: {loss} loss on the training split"].get_lines()
        assert len(lines) == sum(c.model == "unet" and c.loss == loss for c in STUDY_GRID)

    jaccard = {
        line.get_label(): line for line in axes["unet: Jaccard on the validation split"].get_lines()
    }
    assert len(jaccard) == 7
    stops = [jaccard[f"unet-bce-lr0.0001-e{epochs}"] for epochs in (30, 50, 75)]
    # The three share a trajectory: one colour, told apart by width and end marker, each
    # marker at the run's last epoch.
    assert len({to_rgb(line.get_color()) for line in stops}) == 1
    assert len({line.get_marker() for line in stops}) == 3
    assert len({line.get_linewidth() for line in stops}) == 3
    assert [line.get_xdata()[-1] for line in stops] == [30, 50, 75]
    assert [line.get_markevery() for line in stops] == [[-1]] * 3
    # The other four configurations have colours of their own.
    assert len({to_rgb(line.get_color()) for line in jaccard.values()}) == 5


def test_comparison_names_the_split_the_profile_and_the_seeds(reference_records, tmp_path):
    rows = report.summarize(reference_records, STUDY_GRID)
    figure = report.plot_comparison(rows, tmp_path / "comparison.png", SETTING, 50)
    assert figure.get_suptitle() == f"Test split (50 images), final weights; {SETTING}"
    (ax,) = figure.axes
    labels = [label.get_text() for label in ax.get_xticklabels()]
    assert labels == [f"{config.name} (2 seeds)" for config in STUDY_GRID]
    assert ax.get_ylim() == (0, 1)


def test_masks_name_the_split_and_the_profile(tmp_path):
    images = np.zeros((2, 8, 8, 3), np.float32)
    truths = np.zeros((2, 8, 8, 1), bool)
    all_lesion = np.ones((2, 8, 8, 1), bool)
    figure = report.plot_masks(images, truths, {"unet": all_lesion}, tmp_path / "m.png", SETTING)
    assert figure.get_suptitle().startswith("Test split, first 2 images")
    assert figure.get_suptitle().endswith(SETTING)
    assert [ax.get_title() for ax in figure.axes[:3]] == ["image", "truth", "unet"]
    # Drawn on a fixed scale: all lesion is white and no lesion black, not both one colour.
    assert figure.axes[1].images[0].get_clim() == figure.axes[2].images[0].get_clim() == (0, 1)
