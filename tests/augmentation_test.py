"""Tests of ph2_tf.data.augmentation: geometric consistency, photometric properties, seeding,
errors.
"""

import numpy as np
import pytest
from scipy import ndimage

from ph2_tf.data import arrays
from ph2_tf.data.augmentation import AUGMENTATIONS, Augmentation, augment_batch, get_augmentation

SIZE = 48


def lesion_example(size=SIZE):
    """An image whose red channel is bright exactly on an asymmetric lesion, and its mask."""
    yy, xx = np.mgrid[:size, :size]
    lesion = ((yy - 15) ** 2 + (xx - 30) ** 2 < 80) | ((yy > 36) & (xx < 10))
    image = np.full((size, size, 3), 0.3, np.float32)
    image[..., 0] = np.where(lesion, 0.9, 0.1)
    image[..., 2] = np.linspace(0.2, 0.6, size, dtype=np.float32)[None, :]
    return image, lesion[..., None].astype(np.float32)


def light_skin_example():
    """`lesion_example(96)` on uniform light skin, where a dark artefact shows as darkening; and
    its lesion as booleans."""
    image, mask = lesion_example(96)
    image[...] = 0.8
    return image, mask, mask[..., 0] > 0


def dihedral(array):
    """The 8 flips and quarter turns of an `(S, S, C)` array, by an independent construction."""
    turned = [np.rot90(array, k) for k in range(4)]
    return turned + [np.fliplr(t) for t in turned]


def test_none_is_the_identity():
    image, mask = lesion_example()
    new_image, new_mask = AUGMENTATIONS["none"](image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(new_image, image)
    np.testing.assert_array_equal(new_mask, mask)
    assert not AUGMENTATIONS["none"].active and AUGMENTATIONS["flips"].active


def test_flips_apply_the_same_symmetry_to_image_and_mask():
    image, mask = lesion_example()
    images, masks = dihedral(image), dihedral(mask)
    seen = set()
    for seed in range(40):
        new_image, new_mask = AUGMENTATIONS["flips"](image, mask, np.random.default_rng(seed))
        matches = [i for i, candidate in enumerate(images) if np.array_equal(candidate, new_image)]
        assert len(matches) == 1
        np.testing.assert_array_equal(new_mask, masks[matches[0]])
        seen.add(matches[0])
    assert seen == set(range(8))


# Not `all_artefacts`: a red sticker would pass for lesion in this test's red-channel reading.
@pytest.mark.parametrize("name", ["geometric", "all", "all_vignette", "all_wide_zoom"])
def test_geometric_transforms_keep_image_and_mask_aligned(name):
    image, mask = lesion_example()
    outputs = [AUGMENTATIONS[name](image, mask, np.random.default_rng(seed)) for seed in range(12)]
    for new_image, new_mask in outputs:
        assert new_image.shape == image.shape and new_image.dtype == np.float32
        assert new_mask.shape == mask.shape and new_mask.dtype == np.float32
        assert 0.0 <= new_image.min() and new_image.max() <= 1.0
        assert set(np.unique(new_mask)) <= {0.0, 1.0}
        # The lesion is where the red channel is brightest: the mask must still say so.
        red, lesion = new_image[..., 0], new_mask[..., 0] > 0
        threshold = (red[lesion].mean() + red[~lesion].mean()) / 2
        assert np.mean((red > threshold) == lesion) > 0.95
    assert len({new_mask.tobytes() for _, new_mask in outputs}) > 6


def test_wide_zoom_shrinks_and_grows_the_lesion_much_more_than_the_default_zoom():
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = ((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < 36)[..., None].astype(np.float32)
    image = np.repeat(disc * 0.8 + 0.1, 3, axis=-1)

    def area_ratios(name):
        areas = [
            AUGMENTATIONS[name](image, disc, np.random.default_rng(seed))[1].sum()
            for seed in range(40)
        ]
        return min(areas) / disc.sum(), max(areas) / disc.sum()

    smallest, largest = area_ratios("all")
    assert smallest > 0.6 and largest < 1.5  # scale in [0.85, 1.15]: area in [0.72, 1.32]
    smallest, largest = area_ratios("all_wide_zoom")
    assert smallest < 0.45 and largest > 1.8  # scale in [0.5, 1.5]: area in [0.25, 2.25]


def test_photometric_never_touches_the_mask_or_the_geometry():
    image, mask = lesion_example()
    for seed in range(5):
        new_image, new_mask = AUGMENTATIONS["photometric"](image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(new_mask, mask)
        assert not np.array_equal(new_image, image)
        assert 0.0 <= new_image.min() and new_image.max() <= 1.0


def test_hue_rotation_keeps_grey_brightness_and_colourfulness():
    rng = np.random.default_rng(1)
    image = rng.uniform(0.35, 0.65, (SIZE, SIZE, 3)).astype(np.float32)  # no clipping
    image[:4] = 0.5  # grey rows
    mask = np.zeros((SIZE, SIZE, 1), np.float32)
    new_image, _ = Augmentation(hue=0.2)(image, mask, np.random.default_rng(0))
    np.testing.assert_allclose(new_image[:4], 0.5, atol=1e-6)  # grey stays grey
    np.testing.assert_allclose(new_image.mean(-1), image.mean(-1), atol=1e-5)

    def distance_from_grey(pixels):
        return np.linalg.norm(pixels - pixels.mean(-1, keepdims=True), axis=-1)

    np.testing.assert_allclose(distance_from_grey(new_image), distance_from_grey(image), atol=1e-5)
    assert np.abs(new_image - image).max() > 0.01


def test_colour_cast_keeps_the_mean_of_a_grey_image():
    image = np.full((SIZE, SIZE, 3), 0.5, np.float32)
    mask = np.zeros((SIZE, SIZE, 1), np.float32)
    new_image, _ = Augmentation(colour_cast=0.3)(image, mask, np.random.default_rng(2))
    channels = new_image[0, 0]
    assert channels.mean() == pytest.approx(0.5, abs=1e-6)
    assert np.ptp(channels) > 0.01
    np.testing.assert_array_equal(new_image, np.broadcast_to(channels, new_image.shape))


def test_vignette_darkens_corners_not_the_centre():
    image = np.full((SIZE + 1, SIZE + 1, 3), 0.8, np.float32)
    mask = np.zeros((SIZE + 1, SIZE + 1, 1), np.float32)
    new_image, _ = Augmentation(vignette=0.9)(image, mask, np.random.default_rng(0))
    centre = SIZE // 2
    assert new_image[centre, centre, 0] == pytest.approx(0.8)
    assert new_image[0, 0, 0] < new_image[0, centre, 0] < 0.8


def test_a_sticker_never_covers_the_lesion_nor_changes_the_mask():
    image, mask = lesion_example(96)
    lesion = mask[..., 0] > 0
    placed = 0
    for seed in range(30):
        new_image, new_mask = Augmentation(sticker=1.0)(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(new_mask, mask)
        np.testing.assert_array_equal(new_image[lesion], image[lesion])
        changed = np.any(new_image != image, axis=-1)
        # One disc: its changed pixels span no more than its largest diameter (20 % of 96, + rim).
        if changed.any():
            placed += 1
            rows, cols = np.nonzero(changed)
            assert max(np.ptp(rows), np.ptp(cols)) <= 2 * 0.2 * 96 + 2
    # Where a place exists, one is found: this lesion leaves most of the image free.
    assert placed == 30


def test_ink_rings_the_lesion_in_a_dark_colour_and_leaves_the_mask():
    image, mask, lesion = light_skin_example()
    for seed in range(10):
        new_image, new_mask = Augmentation(ink=1.0)(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(new_mask, mask)
        changed = np.any(np.abs(new_image - image) > 1e-3, axis=-1)
        assert changed.sum() > 50
        assert new_image[changed].mean() < image[changed].mean() - 0.1
        # The ring lies outside the lesion: most inked pixels are not lesion.
        assert lesion[changed].mean() < 0.5


def test_a_ruler_is_a_long_thin_dark_bar_off_the_lesion_and_leaves_the_mask():
    image, mask, lesion = light_skin_example()
    for seed in range(20):
        new_image, new_mask = Augmentation(ruler=1.0)(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(new_mask, mask)
        np.testing.assert_array_equal(new_image[lesion], image[lesion])
        changed = np.any(np.abs(new_image - image) > 1e-3, axis=-1)
        assert np.all(new_image[changed] < image[changed]) and new_image.min() < 0.5
        # Long (its bar is 30-70 % of the side, most of it inside) and thin (ticks and bar
        # cover a small part of the frame).
        rows, cols = np.nonzero(changed)
        assert np.hypot(np.ptp(rows), np.ptp(cols)) > 0.15 * 96
        assert changed.mean() < 0.1


def test_hair_crosses_the_lesion_in_thin_dark_strands_and_leaves_the_mask():
    image, mask, lesion = light_skin_example()
    on_lesion = 0
    for seed in range(20):
        new_image, new_mask = Augmentation(hair=1.0)(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(new_mask, mask)
        changed = np.any(np.abs(new_image - image) > 1e-3, axis=-1)
        assert changed.any() and changed.mean() < 0.5
        assert np.all(new_image[changed] < image[changed]) and new_image.min() < 0.6
        # Thin: most changed pixels lie next to unchanged skin, even where strands cross.
        assert np.median(ndimage.distance_transform_cdt(changed)) <= 1
        on_lesion += changed[lesion].any()
    assert on_lesion > 10


@pytest.mark.parametrize("artefact", ["sticker", "ink", "ruler", "hair"])
def test_artefact_probabilities_set_how_often_they_appear(artefact):
    image, mask = lesion_example(96)
    for probability, expected in ((0.0, 0), (0.3, range(20, 41)), (1.0, 100)):
        augment = Augmentation(**{artefact: probability})
        changed = sum(
            not np.array_equal(augment(image, mask, np.random.default_rng(seed))[0], image)
            for seed in range(100)
        )
        assert changed in expected if isinstance(expected, range) else changed == expected


def test_same_generator_seed_same_result_other_seed_other_result():
    image, mask = lesion_example()
    augment = AUGMENTATIONS["all"]
    first = augment(image, mask, np.random.default_rng(5))
    again = augment(image, mask, np.random.default_rng(5))
    other = augment(image, mask, np.random.default_rng(6))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"zoom": 1.0}, r"zoom must be in \[0, 1.0\), received 1.0"),
        ({"blur": -1}, "blur must be a finite number >= 0, received -1"),
        ({"brightness": float("nan")}, "brightness must be"),
        ({"flips": 1}, "flips must be True or False, received 1"),
        ({"hue": True}, "hue must be"),
        ({"sticker": 1.5}, r"sticker must be a probability in \[0, 1\], received 1.5"),
        ({"ink": -0.1}, "ink must be a probability"),
        ({"ink": True}, "ink must be a probability"),
        ({"ruler": 2}, r"ruler must be a probability in \[0, 1\], received 2"),
        ({"hair": -0.5}, "hair must be a probability"),
    ],
)
def test_invalid_strengths_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Augmentation(**kwargs)


def test_wrong_shapes_and_unknown_names_are_refused():
    image, mask = lesion_example()
    with pytest.raises(
        ValueError, match=r"image must be \(S, S, 3\), received shape \(48, 40, 3\)"
    ):
        AUGMENTATIONS["all"](image[:, :40], mask[:, :40], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"mask must be \(48, 48, 1\)"):
        AUGMENTATIONS["all"](image, mask[..., 0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown augmentation 'heavy'; expected one of"):
        get_augmentation("heavy")


def test_augment_batch_gives_each_example_its_spawned_generator_whatever_the_threads():
    image, mask = lesion_example()
    images = np.stack([image, image[::-1], image[:, ::-1]])
    masks = np.stack([mask, mask[::-1], mask[:, ::-1]])
    augment = AUGMENTATIONS["all"]
    for threads in (1, 3, None):
        batch_images, batch_masks = augment_batch(
            augment, images, masks, np.random.default_rng(3), threads=threads
        )
        for index, generator in enumerate(np.random.default_rng(3).spawn(3)):
            expected_image, expected_mask = augment(images[index], masks[index], generator)
            np.testing.assert_array_equal(batch_images[index], expected_image)
            np.testing.assert_array_equal(batch_masks[index], expected_mask)
    with pytest.raises(ValueError, match="3 images but 2 masks"):
        augment_batch(augment, images, masks[:2], np.random.default_rng(3))


def test_numpy_batches_augment_by_seed_epoch_and_batch():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(10, SIZE, SIZE, 3)).astype(np.float32)
    masks = (images[..., :1] > 0.5).astype(np.float32)

    def batches():
        return arrays.Batches(
            images, masks, 4, shuffle=True, seed=7, augmentation=AUGMENTATIONS["all"]
        )

    forward, backward = batches(), batches()
    first = [forward[i] for i in range(len(forward))]
    last_first = [backward[i] for i in reversed(range(len(backward)))][::-1]
    for (a_images, a_masks), (b_images, b_masks) in zip(first, last_first, strict=True):
        np.testing.assert_array_equal(a_images, b_images)  # independent of request order
        np.testing.assert_array_equal(a_masks, b_masks)
    plain = arrays.Batches(images, masks, 4, shuffle=True, seed=7)
    assert not np.array_equal(first[0][0], plain[0][0])
    forward.on_epoch_end()
    assert not np.array_equal(forward[0][0], first[0][0])
