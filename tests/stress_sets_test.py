"""Tests of ph2_tf.experiments.stress_sets: artefacts off the lesion, small lesions, determinism."""

import numpy as np
import pytest

from ph2_tf.data import external
from ph2_tf.experiments import stress_sets

SKIN = (225, 180, 160)
LESION = (120, 60, 40)


def hand_made_case(image_id, shape, lesion_slices):
    """A skin-coloured frame with one rectangular lesion, as a `Case`."""
    mask = np.zeros(shape, bool)
    mask[lesion_slices] = True
    image = np.where(mask[..., None], LESION, SKIN).astype(np.uint8)
    return external.Case(image_id, image, mask)


@pytest.fixture(scope="module")
def validation(ph2_dummy):
    return external.ph2_cases(
        "validation", data_dir=ph2_dummy.data_dir, manual_dir=ph2_dummy.manual_dir
    )


def assert_artefacts_stay_off_the_lesion(original, stressed):
    """Each stressed case differs from its original only outside the lesion's margin."""
    originals = {case.image_id: case for case in original}
    for image_id, image, mask in stressed:
        source = originals[image_id.split("+")[0]]
        assert mask is source.mask  # the very same mask
        assert image.shape == source.image.shape and image.dtype == np.uint8
        touched = np.any(image != source.image, axis=-1)
        assert touched.any(), image_id
        assert not touched[mask].any(), image_id
        assert not touched[stress_sets.keep_clear_zone(mask)].any(), image_id


def test_the_keep_clear_zone_is_the_lesion_and_its_margin():
    lesion = np.zeros((100, 120), bool)
    lesion[50, 60] = True
    zone = stress_sets.keep_clear_zone(lesion)
    # A margin of 3 % of 100 pixels: the 29 pixels within distance 3 of the lesion pixel.
    assert zone.sum() == 29 and zone[50, 57] and zone[53, 60] and not zone[52, 63]
    assert not stress_sets.keep_clear_zone(np.zeros((5, 5), bool)).any()


def test_artefact_cases_are_deterministic_and_keep_off_the_lesion(validation):
    first = stress_sets.artefact_cases(validation, seed=3)
    again = stress_sets.artefact_cases(validation, seed=3)
    other_seed = stress_sets.artefact_cases(validation, seed=4)
    assert first and [case.image_id for case in first] == [case.image_id for case in again]
    for case, repeat in zip(first, again, strict=True):
        np.testing.assert_array_equal(case.image, repeat.image)
    assert any(
        a.image_id != b.image_id or not np.array_equal(a.image, b.image)
        for a, b in zip(first, other_seed, strict=False)
    )
    assert_artefacts_stay_off_the_lesion(validation, first)
    for case in first:
        kinds = case.image_id.split("+")[1:]
        assert 1 <= len(kinds) <= 2 and set(kinds) <= set(stress_sets.ARTEFACTS)


def test_an_image_draws_the_same_whatever_images_come_with_it(validation):
    alone = stress_sets.artefact_cases(validation[1:2], seed=0)
    together = stress_sets.artefact_cases(validation, seed=0)
    match = [case for case in together if case.image_id == alone[0].image_id]
    np.testing.assert_array_equal(match[0].image, alone[0].image)


def test_every_artefact_kind_is_drawn_and_none_touches_the_lesion():
    case = hand_made_case("roomy", (120, 160), np.s_[50:70, 70:95])
    kinds = set()
    for seed in range(12):
        stressed = stress_sets.artefact_cases([case], seed=seed)
        assert len(stressed) == 1
        assert_artefacts_stay_off_the_lesion([case], stressed)
        kinds.update(stressed[0].image_id.split("+")[1:])
    assert kinds == set(stress_sets.ARTEFACTS)


def test_a_frame_without_room_gets_no_artefact_and_is_left_out():
    full = hand_made_case("full", (40, 60), np.s_[:, :])
    rng = np.random.default_rng(0)
    image, kinds = stress_sets.add_artefacts(full.image, full.mask, rng)
    assert kinds == ()
    np.testing.assert_array_equal(image, full.image)
    assert stress_sets.artefact_cases([full]) == []


@pytest.mark.parametrize(
    "lesion",
    [np.s_[100:130, 140:180], np.s_[40:200, 60:260], np.s_[2:238, 3:318]],
    ids=["share 1.6 %", "share 33 %", "share 97 %"],
)
def test_zoom_out_brings_the_lesion_to_1_to_5_percent(lesion):
    case = hand_made_case("hand", (240, 320), lesion)
    for share in (*stress_sets.SMALL_LESION_SHARES, np.mean(stress_sets.SMALL_LESION_SHARES)):
        image, mask = stress_sets.zoom_out(case.image, case.mask, share, np.random.default_rng(0))
        assert image.shape == case.image.shape and image.dtype == np.uint8
        assert mask.shape == case.mask.shape and mask.dtype == bool
        assert 0.01 <= mask.mean() <= 0.05
        if case.mask.mean() > share:
            assert mask.mean() == pytest.approx(share, rel=0.15)
        # The image moved with the mask: drawn white on black, the lesion's pixels are the
        # ones at least half white (the mask's own threshold).
        white_lesion = np.repeat(case.mask[..., None] * np.uint8(255), 3, axis=-1)
        image, mask = stress_sets.zoom_out(white_lesion, case.mask, share, np.random.default_rng(0))
        np.testing.assert_array_equal(image[..., 0] >= 128, mask)


def test_zoom_out_fills_the_frame_with_the_skin_colour_and_centres_roughly():
    case = hand_made_case("hand", (240, 320), np.s_[40:200, 60:260])
    image, mask = stress_sets.zoom_out(case.image, case.mask, 0.03, np.random.default_rng(1))
    np.testing.assert_array_equal(image[0, 0], SKIN)
    np.testing.assert_array_equal(stress_sets.skin_colour(case.image, case.mask), SKIN)
    centre = np.argwhere(mask).mean(axis=0)
    assert 0.25 * 240 - 1 <= centre[0] <= 0.75 * 240 + 1
    assert 0.25 * 320 - 1 <= centre[1] <= 0.75 * 320 + 1


def test_small_lesion_cases_are_deterministic_small_and_named(validation):
    first = stress_sets.small_lesion_cases(validation, seed=5)
    again = stress_sets.small_lesion_cases(validation, seed=5)
    assert [case.image_id for case in first] == [case.image_id for case in validation]
    for case, repeat, source in zip(first, again, validation, strict=True):
        np.testing.assert_array_equal(case.image, repeat.image)
        np.testing.assert_array_equal(case.mask, repeat.mask)
        assert case.image.shape == source.image.shape
        assert 0.01 <= case.mask.mean() <= 0.05
    empty = hand_made_case("IMD999", (20, 30), np.s_[0:0, 0:0])
    with pytest.raises(ValueError, match="image IMD999: the mask has no lesion pixel"):
        stress_sets.small_lesion_cases([empty])


def test_a_written_set_reads_back_as_the_same_pixels_and_is_never_overwritten(tmp_path):
    cases = [
        hand_made_case("IMD002", (30, 40), np.s_[5:12, 8:20]),
        hand_made_case("IMD001", (25, 35), np.s_[10:20, 3:9]),
    ]
    small = stress_sets.small_lesion_cases(cases)
    folder = tmp_path / "small_lesions"
    stress_sets.write_folder(small, folder)
    read = external.folder_cases(folder)
    assert [case.image_id for case in read] == ["IMD001", "IMD002"]
    for written, read_back in zip(sorted(small), read, strict=True):
        np.testing.assert_array_equal(read_back.image, written.image)
        np.testing.assert_array_equal(read_back.mask, written.mask)
    with pytest.raises(FileExistsError, match="small_lesions exists already"):
        stress_sets.write_folder(cases, folder)
    assert len(list((folder / "images").iterdir())) == 2


def test_a_killed_write_leaves_no_set_and_the_next_write_completes(tmp_path):
    folder = tmp_path / "artefacts"

    class Killed(Exception):
        pass

    def unreadable_cases():
        yield hand_made_case("IMD001", (20, 30), np.s_[5:10, 5:10])
        raise Killed  # the process dies after the first image

    with pytest.raises(Killed):
        stress_sets.write_folder(unreadable_cases(), folder)
    assert not folder.exists() and external.folder_cases(folder) == []
    stress_sets.write_folder([hand_made_case("IMD002", (20, 30), np.s_[5:10, 5:10])], folder)
    assert [case.image_id for case in external.folder_cases(folder)] == ["IMD002"]
