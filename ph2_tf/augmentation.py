"""Seeded training augmentation in numpy: one definition for the TensorFlow and JAX pipelines.

An `Augmentation` transforms one preprocessed `(image, mask)` pair with a `numpy` generator, so
the same seed gives the same augmented example on every Keras backend: the `tf.data` pipeline
calls it through `tf.numpy_function`, the numpy pipeline (`ph2_tf.arrays.Batches`) directly.

What it aims at is images from other clinics and cameras: other framings (geometric: the eight
symmetries of the square, small rotations, zoom), other optics and white balance (photometric:
brightness, contrast, saturation, hue, gamma, blur, a per-channel colour cast, dark corners).
The named presets in `AUGMENTATIONS` are what `--augment` accepts and what
`results/augmentation/` measured. Masks follow the geometric transforms (nearest neighbour)
and are never touched by the photometric ones.
"""

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

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "flips":
                if not isinstance(value, bool):
                    raise ValueError(f"flips must be True or False, received {value!r}")
            elif not (isinstance(value, (int, float)) and not isinstance(value, bool)) or not (
                0 <= value < _UPPER_BOUNDS.get(field.name, np.inf)
            ):
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


def augment_batch(augmentation, images, masks, rng, threads=None):
    """Applies `augmentation` to every example of a batch, the examples in parallel threads.

    NumPy and SciPy release the GIL in the heavy parts (warps, filters, matrix products), so
    threads run the examples on several cores: on 2 cores a batch takes about half as long
    (`benchmarks/augmentation_throughput.py`).
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

# The presets `--augment` accepts. results/augmentation/ measured all but `all_wide_zoom`: that
# one zooms out as far as half size, because lesions from other clinics' cameras are often much
# smaller in the frame than PH2's (a median of about 22 % of a PH2 image); results/v2-models/.
AUGMENTATIONS = {
    "none": Augmentation(),
    "flips": Augmentation(flips=True),
    "geometric": Augmentation(**_GEOMETRIC),
    "photometric": Augmentation(**_PHOTOMETRIC),
    "all": Augmentation(**_GEOMETRIC, **_PHOTOMETRIC),
    "all_vignette": Augmentation(**_GEOMETRIC, **_PHOTOMETRIC, vignette=0.5),
    "all_wide_zoom": Augmentation(**{**_GEOMETRIC, "zoom": 0.5}, **_PHOTOMETRIC),
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
