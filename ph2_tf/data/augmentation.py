"""Seeded training augmentation in numpy: one definition for the TensorFlow and JAX pipelines.

An `Augmentation` transforms one preprocessed `(image, mask)` pair with a `numpy` generator, so
the same seed gives the same augmented example on every Keras backend: the `tf.data` pipeline
calls it through `tf.numpy_function`, the numpy pipeline (`ph2_tf.data.arrays.Batches`) directly.

What it aims at is images from other clinics and cameras: other framings (geometric: the eight
symmetries of the square, small rotations, zoom), other things in the frame (artefacts: colour
calibration stickers beside the lesion, skin-marker ink circling it or marking the skin, rulers
printed on the dermoscope's contact plate, thick dark hair), other
optics and white balance (photometric: brightness, contrast, saturation, hue, gamma, blur, a
per-channel colour cast, dark corners). The named presets in `AUGMENTATIONS` are what
`--augment` accepts and what `results/augmentation/` measured. Masks follow the geometric
transforms (nearest neighbour) and are never touched by the artefacts or the photometric ones.
"""

import colorsys
import concurrent.futures
import dataclasses
import os

import numpy as np
from scipy import ndimage

# ITU-R BT.601 luma weights: the grey an image is desaturated towards.
_LUMA = np.array([0.299, 0.587, 0.114], "float32")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random transforms of a training example; every strength 0 (the default) turns one off.

    Args:
        flips: apply one of the 8 symmetries of the square (flips and quarter turns), uniformly;
            a dermoscopic image has no up or left.
        rotation: largest extra rotation, in degrees (uniform in `[-rotation, rotation]`).
        zoom: largest relative change of scale (uniform in `[1 - zoom, 1 + zoom]`; above 1
            zooms in). Rotation and zoom are one affine warp about the centre, reflecting at the
            borders, bilinear for the image and nearest for the mask.
        brightness: largest change added to intensities in [0, 1].
        contrast: largest relative change of contrast about the image's mean.
        saturation: largest relative change of the distance from grey.
        hue: largest hue rotation, as a fraction of a full turn.
        gamma: intensities are raised to `g`, with `log(g)` uniform in
            `[-log(1 + gamma), log(1 + gamma)]`.
        blur: largest Gaussian blur sigma, in pixels of the model input (uniform in
            `[0, blur]`).
        colour_cast: largest relative change of each channel's gain, the three gains then
            rescaled to a mean of 1 (another illuminant or white balance).
        vignette: largest darkening of the corners (intensities times `1 - v * r^2`, with `r`
            the distance from the centre, 1 at the corners, and `v` uniform in `[0, vignette]`).
        sticker: probability of a colour calibration sticker: an opaque disc of a random
            colour, its radius 8-20 % of the side, placed where it covers no lesion (none if 20
            random places all would). Drawn after the geometric transforms, before the
            photometric ones, which then change its colour as the skin's.
        ink: probability of skin-marker ink: a partly open ring around the lesion, sometimes
            with a few short strokes beside it, in purple, blue or black.
        ruler: probability of a millimetre ruler: a thin dark bar with ticks along one side,
            every fifth longer, at a random angle, where it covers no lesion (none if 20 random
            places all would).
        hair: probability of dark hair: 5-40 thin curved strands anywhere, the lesion
            included (the mask keeps the lesion under them, as an annotator draws it).

    Example:

    ```python
    augment = Augmentation(flips=True, brightness=0.1)
    image, mask = augment(image, mask, np.random.default_rng(0))
    ```
    """

    flips: bool = False
    rotation: float = 0.0
    zoom: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    gamma: float = 0.0
    blur: float = 0.0
    colour_cast: float = 0.0
    vignette: float = 0.0
    sticker: float = 0.0
    ink: float = 0.0
    ruler: float = 0.0
    hair: float = 0.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "flips":
                if not isinstance(value, bool):
                    raise ValueError(f"flips must be True or False, received {value!r}")
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if field.name in _PROBABILITIES:
                if not (number and 0 <= value <= 1):
                    raise ValueError(
                        f"{field.name} must be a probability in [0, 1], received {value!r}"
                    )
            elif not number or not (0 <= value < _UPPER_BOUNDS.get(field.name, np.inf)):
                bound = _UPPER_BOUNDS.get(field.name)
                expected = f"in [0, {bound})" if bound else "a finite number >= 0"
                raise ValueError(f"{field.name} must be {expected}, received {value!r}")

    @property
    def active(self):
        """Whether any transform is on."""
        return self != Augmentation()

    def __call__(self, image, mask, rng):
        """Augments one example.

        Args:
            image: float32 `(S, S, 3)` in [0, 1] (square, so that quarter turns keep the shape).
            mask: float32 `(S, S, 1)` in {0, 1}.
            rng: a `numpy.random.Generator`; the only source of randomness.

        Returns:
            New float32 arrays `(image, mask)` of the same shapes, in [0, 1] and {0, 1}.
        """
        if image.ndim != 3 or image.shape[0] != image.shape[1] or image.shape[2] != 3:
            raise ValueError(f"image must be (S, S, 3), received shape {image.shape}")
        if mask.shape != image.shape[:2] + (1,):
            raise ValueError(f"mask must be {image.shape[:2] + (1,)}, received {mask.shape}")
        image, mask = self._geometric(np.asarray(image, "float32"), np.asarray(mask), rng)
        image = self._artefacts(image, mask[..., 0] > 0.5, rng)
        return self._photometric(image, rng), mask.astype("float32")

    def _geometric(self, image, mask, rng):
        if self.flips:
            turns, flip = rng.integers(4), rng.integers(2)
            image, mask = (np.rot90(array, turns) for array in (image, mask))
            if flip:
                image, mask = image[:, ::-1], mask[:, ::-1]
        if self.rotation or self.zoom:
            angle = np.deg2rad(rng.uniform(-self.rotation, self.rotation))
            scale = rng.uniform(1 - self.zoom, 1 + self.zoom)
            # Output pixel p samples input (R / scale) (p - c) + c: a rotation and zoom about c.
            cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
            matrix = np.array([[cos, -sin], [sin, cos]])
            centre = (np.array(image.shape[:2]) - 1) / 2
            offset = centre - matrix @ centre

            def warp(channel, order):
                return ndimage.affine_transform(
                    channel, matrix, offset, order=order, mode="mirror", prefilter=False
                )

            image = np.stack([warp(image[..., c], 1) for c in range(3)], axis=-1)
            mask = warp(mask[..., 0], 0)[..., None]
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)

    def _artefacts(self, image, lesion, rng):
        # Each probability is drawn only when it is on, so that adding these fields left the
        # other presets' random streams, and so their augmented examples, as they were.
        if self.sticker and rng.uniform() < self.sticker:
            image = _add_sticker(image, lesion, rng)
        if self.ink and rng.uniform() < self.ink:
            image = _add_ink(image, lesion, rng)
        if self.ruler and rng.uniform() < self.ruler:
            image = _add_ruler(image, lesion, rng)
        if self.hair and rng.uniform() < self.hair:
            image = _add_hair(image, rng)
        return image

    def _photometric(self, image, rng):
        colours = np.eye(3, dtype="float32")
        if self.colour_cast:
            gains = rng.uniform(1 - self.colour_cast, 1 + self.colour_cast, 3)
            colours = np.diag(gains / gains.mean()).astype("float32") @ colours
        if self.saturation:
            factor = rng.uniform(1 - self.saturation, 1 + self.saturation)
            grey = np.outer(np.ones(3), _LUMA)
            colours = (factor * np.eye(3) + (1 - factor) * grey).astype("float32") @ colours
        if self.hue:
            colours = _hue_rotation(rng.uniform(-self.hue, self.hue)) @ colours
        image = image @ colours.T
        if self.brightness:
            image = image + rng.uniform(-self.brightness, self.brightness)
        if self.contrast:
            factor = rng.uniform(1 - self.contrast, 1 + self.contrast)
            image = (image - image.mean()) * factor + image.mean()
        image = np.clip(image, 0.0, 1.0)
        if self.gamma:
            bound = np.log1p(self.gamma)
            image = image ** np.exp(rng.uniform(-bound, bound))
        if self.blur:
            sigma = rng.uniform(0, self.blur)
            image = ndimage.gaussian_filter(image, (sigma, sigma, 0), mode="mirror")
        if self.vignette:
            image = image * _vignette(image.shape[0], rng.uniform(0, self.vignette))[..., None]
        return np.clip(image, 0.0, 1.0).astype("float32")


def _hue_rotation(turns):
    """The 3x3 RGB matrix that rotates hue by `turns` of a full turn about the grey axis."""
    angle = 2 * np.pi * turns
    axis = np.ones(3) / np.sqrt(3)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    # Rodrigues' formula: grey stays grey, every colour turns about it.
    matrix = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    return matrix.astype("float32")


def _vignette(size, strength):
    """`(size, size)` gains `1 - strength * r^2`, with r = 1 at the corners."""
    coordinates = np.linspace(-1, 1, size, dtype="float32")
    squared_radius = (coordinates[:, None] ** 2 + coordinates[None, :] ** 2) / 2
    return 1 - strength * squared_radius


# Skin-marker inks, RGB in [0, 1]: violet (gentian violet), blue, near black.
_INKS = np.array([[0.35, 0.15, 0.45], [0.12, 0.18, 0.50], [0.10, 0.09, 0.12]], "float32")


def _paint(image, alpha, colour):
    """`image` with `colour` (RGB, or per pixel) laid over it with opacity `alpha` (`(S, S)`)."""
    alpha = alpha[..., None].astype("float32")
    return image * (1 - alpha) + alpha * np.asarray(colour, "float32")


def _add_sticker(image, lesion, rng):
    """An opaque disc of a random colour, with a darker rim, where it covers no lesion."""
    size = image.shape[0]
    rows, cols = np.mgrid[0:size, 0:size].astype("float32")
    radius = rng.uniform(0.08, 0.2) * size
    for _ in range(20):
        centre = rng.uniform(0, size, 2)
        distance = np.hypot(rows - centre[0], cols - centre[1])
        # Soft by one pixel at the edge, so the disc is not a staircase at 256x256.
        alpha = np.clip(radius + 0.5 - distance, 0, 1)
        if not (alpha > 0)[lesion].any():
            break
    else:
        return image
    colour = np.array(colorsys.hsv_to_rgb(*rng.uniform([0, 0.3, 0.5], 1)), "float32")
    # The rim (the outer 15 % of the radius) darkens to 75 %, as a sticker's edge shades.
    shade = 1 - 0.25 * np.clip((distance / radius - 0.85) / 0.15, 0, 1)
    return _paint(image, alpha, shade[..., None] * colour)


def _add_ink(image, lesion, rng):
    """A partly open ink ring around the lesion, and sometimes a few short strokes."""
    size = image.shape[0]
    rows, cols = np.mgrid[0:size, 0:size].astype("float32")
    if lesion.any():
        lesion_rows, lesion_cols = np.nonzero(lesion)
        centre = np.array([lesion_rows.mean(), lesion_cols.mean()])
        reach = np.hypot(lesion_rows - centre[0], lesion_cols - centre[1]).max()
    else:
        centre, reach = np.full(2, (size - 1) / 2), 0.15 * size
    colour = np.clip(_INKS[rng.integers(len(_INKS))] + rng.normal(0, 0.04, 3), 0, 1)
    opacity = rng.uniform(0.5, 0.9)
    thickness = rng.uniform(0.006, 0.02) * size
    # An ellipse a little outside the lesion, open over a random arc, as a hand draws it.
    radii = reach * rng.uniform(1.1, 1.6, 2) + 0.02 * size
    angle = rng.uniform(0, np.pi)
    along = (rows - centre[0]) * np.cos(angle) + (cols - centre[1]) * np.sin(angle)
    across = -(rows - centre[0]) * np.sin(angle) + (cols - centre[1]) * np.cos(angle)
    normalised = np.hypot(along / radii[0], across / radii[1])
    alpha = np.clip(thickness / 2 + 0.5 - np.abs(normalised - 1) * radii.min(), 0, 1)
    gap_start, gap = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.35) * 2 * np.pi
    alpha[(np.arctan2(across, along) - gap_start) % (2 * np.pi) < gap] = 0
    for _ in range(rng.integers(0, 4)):
        # A short stroke anywhere; on the lesion it stays lesion in the mask, as under real ink.
        stroke_centre = rng.uniform(0, size, 2)
        length, width = rng.uniform(0.03, 0.1) * size, thickness * rng.uniform(1, 2.5)
        tilt = rng.uniform(0, np.pi)
        d_rows, d_cols = rows - stroke_centre[0], cols - stroke_centre[1]
        u = (d_rows * np.cos(tilt) + d_cols * np.sin(tilt)) / length
        v = (-d_rows * np.sin(tilt) + d_cols * np.cos(tilt)) / width
        alpha = np.maximum(alpha, np.clip((1 - np.hypot(u, v)) * width, 0, 1))
    return _paint(image, opacity * alpha, colour)


def _stroke_alpha(points, width, size):
    """Opacity `(size, size)` of strokes `width` pixels wide through `points` (`(N, 2)`, row and
    column, sampled at most half a pixel apart), soft by one pixel at the edges."""
    pixels = np.round(points).astype(int)
    pixels = pixels[np.all((pixels >= 0) & (pixels < size), axis=1)]
    centre_line = np.ones((size, size), bool)
    centre_line[pixels[:, 0], pixels[:, 1]] = False
    if centre_line.all():
        return np.zeros((size, size), "float32")
    distance = ndimage.distance_transform_edt(centre_line)
    return np.clip(width / 2 + 0.5 - distance, 0, 1).astype("float32")


def _segment_points(start, end):
    """Points every half pixel from `start` to `end` (row, column), both included."""
    steps = max(int(np.ceil(2 * np.hypot(*(end - start)))), 1)
    return start + np.linspace(0, 1, steps + 1)[:, None] * (end - start)


def _add_ruler(image, lesion, rng):
    """A dark ruler: a bar with millimetre ticks along one side, every fifth longer, placed
    where it covers no lesion."""
    size = image.shape[0]
    length = rng.uniform(0.3, 0.7) * size
    spacing = rng.uniform(0.012, 0.03) * size
    tick = rng.uniform(0.02, 0.04) * size
    width = rng.uniform(0.005, 0.012) * size
    angle = rng.uniform(0, np.pi)
    along = np.array([np.sin(angle), np.cos(angle)])
    across = np.array([np.cos(angle), -np.sin(angle)])
    for _ in range(20):
        # Centred inside the frame, so that most of the bar shows.
        start = rng.uniform(0.1, 0.9, 2) * size - length / 2 * along
        end = start + length * along
        points = [_segment_points(start, end)]
        for index, offset in enumerate(np.arange(0, length, spacing)):
            foot = start + offset * along
            reach = tick * (1.6 if index % 5 == 0 else 1.0)
            points.append(_segment_points(foot, foot + reach * across))
        alpha = _stroke_alpha(np.concatenate(points), width, size)
        if alpha.any() and not (alpha > 0)[lesion].any():
            break
    else:
        return image
    colour = np.full(3, rng.uniform(0.02, 0.25), "float32") + rng.normal(0, 0.02, 3)
    return _paint(image, rng.uniform(0.6, 0.95) * alpha, np.clip(colour, 0, 1))


def _add_hair(image, rng):
    """5-40 dark curved strands (quadratic Bezier curves) across the frame."""
    size = image.shape[0]
    points = []
    for _ in range(rng.integers(5, 41)):
        start = rng.uniform(-0.1, 1.1, 2) * size
        direction = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.2, 0.8) * size
        end = start + length * np.array([np.sin(direction), np.cos(direction)])
        bend = (start + end) / 2 + rng.normal(0, 0.1 * size, 2)
        steps = int(np.ceil(2 * (np.hypot(*(bend - start)) + np.hypot(*(end - bend))))) + 1
        t = np.linspace(0, 1, steps)[:, None]
        points.append((1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end)
    alpha = _stroke_alpha(np.concatenate(points), rng.uniform(0.005, 0.012) * size, size)
    colour = np.array([0.16, 0.11, 0.08], "float32") * rng.uniform(0.3, 1.2)
    return _paint(image, rng.uniform(0.6, 0.9) * alpha, colour)


def augment_batch(augmentation, images, masks, rng, threads=None):
    """Applies `augmentation` to every example of a batch, the examples in parallel threads.

    NumPy and SciPy release the GIL in the heavy parts (warps, filters, matrix products), so
    threads run the examples on several cores at once (`benchmarks/augmentation_throughput.py`
    measures the gain).
    Example `i` draws from the `i`-th generator spawned from `rng`, so the result is the same for
    any number of threads and any scheduling.

    Args:
        augmentation: an `Augmentation`.
        images: float32 `(B, S, S, 3)`.
        masks: float32 `(B, S, S, 1)`.
        rng: a `numpy.random.Generator`.
        threads: worker threads; None for one per example, up to the CPU count.

    Returns:
        New float32 arrays `(images, masks)`.
    """
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    generators = rng.spawn(len(images))
    threads = threads or min(len(images), os.cpu_count() or 1)

    def one(index):
        return augmentation(images[index], masks[index], generators[index])

    if threads == 1:
        pairs = [one(index) for index in range(len(images))]
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            pairs = list(pool.map(one, range(len(images))))
    return np.stack([image for image, _ in pairs]), np.stack([mask for _, mask in pairs])


# Fields that are probabilities, 1 included.
_PROBABILITIES = {"sticker", "ink", "ruler", "hair"}
# Strengths that make no sense at or above a bound (a zoom of 1 shrinks to a point).
_UPPER_BOUNDS = {
    "rotation": 180.0,
    "zoom": 1.0,
    "contrast": 1.0,
    "saturation": 1.0,
    "hue": 0.5,
    "colour_cast": 1.0,
    "vignette": 1.0,
}

_GEOMETRIC = dict(flips=True, rotation=15.0, zoom=0.15)
_PHOTOMETRIC = dict(
    brightness=0.1, contrast=0.2, saturation=0.2, hue=0.03, gamma=0.25, blur=1.0, colour_cast=0.15
)

# The presets `--augment` accepts. results/augmentation/ measured all but the last three.
# results/v2-models/ tried `all_wide_zoom`, which zooms out as far as half size, because
# lesions from other clinics' cameras are often much smaller in the frame than PH2's
# (docs/findings.md), and `all_artefacts`, which adds stickers and ink: other clinics' images
# have them, PH2's do not. `all_artefacts_rulers_hair` adds rulers and thick hair, which the
# served models marked as lesion on ISIC-select's worst images (results/rulers-and-hair/).
AUGMENTATIONS = {
    "none": Augmentation(),
    "flips": Augmentation(flips=True),
    "geometric": Augmentation(**_GEOMETRIC),
    "photometric": Augmentation(**_PHOTOMETRIC),
    "all": Augmentation(**_GEOMETRIC, **_PHOTOMETRIC),
    "all_vignette": Augmentation(**_GEOMETRIC, **_PHOTOMETRIC, vignette=0.5),
    "all_wide_zoom": Augmentation(**{**_GEOMETRIC, "zoom": 0.5}, **_PHOTOMETRIC),
    "all_artefacts": Augmentation(**_GEOMETRIC, **_PHOTOMETRIC, sticker=0.3, ink=0.3),
    "all_artefacts_rulers_hair": Augmentation(
        **_GEOMETRIC, **_PHOTOMETRIC, sticker=0.3, ink=0.3, ruler=0.3, hair=0.3
    ),
}


def get_augmentation(name):
    """Returns the preset `Augmentation` called `name`.

    Args:
        name: a key of `AUGMENTATIONS`.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; expected one of {tuple(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]
