"""Stress sets made from PH2 validation images: artefacts at the frame's edge, and small lesions.

PH2's images come from one clinic and one dermatoscope: the lesion is large and roughly centred,
and nothing else is in the frame. Other clinics' images break both habits, and a choice made on
PH2 alone (such as keeping the largest predicted component) can fail on them. These sets put each
break onto PH2 validation images, keeping PH2's own ground truth, so that what a rule gains or
loses on them comes from the break alone and not from another annotation protocol:

- `artefact_cases`: each image gets one or two artefacts (one or two with equal chance; the kinds
  tried in a random order of `ARTEFACTS`, a kind that finds no room skipped for the next) at the
  frame's edge, never within `LESION_MARGIN` of the short side from the lesion. The mask is
  unchanged. The kinds:
  - `sticker`: a colour-calibration sticker, drawn by the training augmentation
    (`ph2_tf.data.augmentation`) inside a square patch at a corner of the frame (its side
    `EDGE_PATCH` of the short side), clipped by the frame's edge but never by the patch's inner
    sides;
  - `ink`: skin-marker ink, the augmentation's open ring (and sometimes short strokes) drawn
    around a spot near the frame's edge in such a patch along one side, as a clinician circles
    another mole;
  - `dark_corners`: the round field of view of a dermatoscope, dark beyond an ellipse whose
    centre is off the frame's by up to `FIELD_OFFSET`, starting beyond the lesion;
  - `cloth`: a woven cloth (gown or drape) in a band along one side with a wavy edge.
  An image where no kind finds room is left out. A case's id names what was drawn
  (`IMD404+sticker+ink`).
- `small_lesion_cases`: each image zoomed out so that its lesion covers a share of the frame drawn
  uniformly in `SMALL_LESION_SHARES`: image and mask shrunk alike (area averaging, the mask then
  thresholded at one half), laid into a frame of the original size filled with the skin's colour
  (`skin_colour`), into which the shrunk image fades towards its inscribed ellipse except on the
  lesion (so PH2's dark corners become skin), the lesion's centre at a random point of the
  frame's middle half where the shrunk image allows. A lesion already smaller than its drawn
  share keeps its size.
- The two combine: `artefact_cases(small_lesion_cases(cases))` has artefacts beside lesions
  often smaller than they are, where keeping the largest predicted component can fail (PH2's own
  lesions are mostly larger than any artefact drawn here).

Each image's random draws come from a generator seeded with `seed`, the image's id and the set
(`image_rng`), so a set is the same pixels for the same seed, whichever other images come with
it.

Write the sets as ISIC-layout folders of PNG files, to look at or to choose on (`export
--if-better --selection-set /tmp/stress_sets/small_lesions`); outside the repository, since PH2's
images are not ours to publish:

    python -m ph2_tf.experiments.stress_sets --data-dir /tmp/tfds --output-dir /tmp/stress_sets
"""

import argparse
import pathlib
import shutil
import zlib

import numpy as np
from PIL import Image
from scipy import ndimage

from ph2_tf import files
from ph2_tf.data import augmentation, external

SEED = 0
ARTEFACTS = ("sticker", "ink", "dark_corners", "cloth")
# Artefacts keep this far from the lesion, as a fraction of the frame's short side, so that none
# joins the lesion into one component.
LESION_MARGIN = 0.03
# Side of the square patch a sticker or ink is drawn in, as a fraction of the short side.
EDGE_PATCH = 0.4
# Largest offset of the dermatoscope's field of view from the frame's centre, per axis, as a
# fraction of that axis.
FIELD_OFFSET = 0.1
# Placements tried per artefact kind before it is skipped.
ATTEMPTS = 10
SMALL_LESION_SHARES = (0.015, 0.045)
# Width of the feathered seam of a zoomed-out image, as a fraction of its inscribed ellipse's
# radius.
SEAM = 0.2

# Cloth colours, RGB in [0, 1]: white gown, light blue, surgical green, grey.
_CLOTHS = np.array(
    [[0.90, 0.90, 0.87], [0.55, 0.70, 0.85], [0.35, 0.55, 0.45], [0.60, 0.60, 0.62]], "float32"
)


def image_rng(seed, image_id, purpose):
    """The random generator of one image for one purpose (`"artefacts"`, `"small_lesions"`): the
    same for the same seed, id and purpose, and unrelated between purposes."""
    return np.random.default_rng(
        [seed, zlib.crc32(image_id.encode()), zlib.crc32(purpose.encode())]
    )


def keep_clear_zone(lesion):
    """Pixels within `LESION_MARGIN` of the short side from a lesion pixel (bool `(H, W)`)."""
    if not lesion.any():
        return np.zeros(lesion.shape, bool)
    margin = max(1.0, LESION_MARGIN * min(lesion.shape))
    return ndimage.distance_transform_edt(~lesion) <= margin


def _edge_patch(shape, top, left):
    """A square patch of side `EDGE_PATCH` of the short side at `(top, left)` of the frame.

    Returns:
        `(rows, cols, inner)`: the patch's slices, and a bool `(P, P)` map of its border pixels
        that are not on the frame's border (where an artefact would look cut off).
    """
    height, width = shape
    side = _patch_side(shape)
    inner = np.zeros((side, side), bool)
    inner[0, :] |= top > 0
    inner[-1, :] |= top + side < height
    inner[:, 0] |= left > 0
    inner[:, -1] |= left + side < width
    return slice(top, top + side), slice(left, left + side), inner


def _patch_side(shape):
    return max(4, round(EDGE_PATCH * min(shape)))


def _sticker(image, keep_clear, rng):
    """The augmentation's sticker in a patch at a random corner, off the patch's inner sides."""
    room = np.array(image.shape[:2]) - _patch_side(image.shape[:2])
    top, left = room * rng.integers(2, size=2)
    rows, cols, inner = _edge_patch(image.shape[:2], top, left)
    patch = augmentation._add_sticker(image[rows, cols], keep_clear[rows, cols] | inner, rng)
    drawn = image.copy()
    drawn[rows, cols] = patch
    return drawn


def _ink(image, keep_clear, rng):
    """The augmentation's ink ring around a spot in a patch along a random side of the frame, a
    fifth of the patch from that side."""
    side = _patch_side(image.shape[:2])
    room = np.array(image.shape[:2]) - side
    axis, far = rng.integers(2), rng.integers(2)  # the side: top, bottom, left or right
    top_left = rng.integers(0, room + 1)
    top_left[axis] = room[axis] * far
    rows, cols, inner = _edge_patch(image.shape[:2], *top_left)
    centre = np.full(2, (side - 1) / 2)
    centre[axis] = (side - 1 - 0.2 * side) if far else 0.2 * side
    patch_rows, patch_cols = np.mgrid[0:side, 0:side]
    spot = np.hypot(patch_rows - centre[0], patch_cols - centre[1]) <= 0.1 * side
    patch = augmentation._add_ink(image[rows, cols], spot, rng)
    if np.any(patch != image[rows, cols], axis=-1)[inner].any():  # a stroke cut by the patch
        return image
    drawn = image.copy()
    drawn[rows, cols] = patch
    return drawn


def _dark_corners(image, keep_clear, rng):
    """Dark beyond an off-centre ellipse, the field of view's edge starting past the lesion."""
    height, width = image.shape[:2]
    centre = (np.array([height, width]) - 1) / 2
    centre = centre + rng.uniform(-FIELD_OFFSET, FIELD_OFFSET, 2) * [height, width]
    rows, cols = np.mgrid[0:height, 0:width].astype("float32")
    # 1 at the corners of a centred field: the ellipse through the frame's corners.
    radius = np.hypot((rows - centre[0]) / (height / 2), (cols - centre[1]) / (width / 2))
    radius /= np.sqrt(2)
    start = rng.uniform(0.6, 0.85)
    if keep_clear.any():
        start = max(start, float(radius[keep_clear].max()))
    # From clear to dark over 5 % of the radius, as a lens's edge blurs.
    alpha = rng.uniform(0.85, 1.0) * np.clip((radius - start) / 0.05, 0, 1)
    if (alpha > 0.5).mean() < 0.01:  # no room for a visible dark corner
        return image
    return augmentation._paint(image, alpha, rng.uniform(0.0, 0.06, 3))


def _cloth(image, keep_clear, rng):
    """A woven cloth in a band along one side, its wavy edge short of the lesion."""
    # Work with the chosen side at the top: rotate, draw, rotate back.
    turns = rng.integers(4)
    turned, clear = np.rot90(image, turns), np.rot90(keep_clear, turns)
    height, width = clear.shape
    short = min(height, width)
    along = np.arange(width, dtype="float32")
    wave = 0.0
    for weight, shortest, longest in ((0.6, 0.5, 1.5), (0.4, 0.1, 0.3)):
        period = rng.uniform(shortest, longest) * width
        wave = wave + weight * np.sin(2 * np.pi * along / period + rng.uniform(0, 2 * np.pi))
    profile = 0.75 + 0.25 * wave  # in [0.5, 1]
    # The first kept-clear row of each column bounds the band's depth there.
    free_rows = np.where(clear.any(axis=0), clear.argmax(axis=0), height).astype("float32")
    depth = min(rng.uniform(0.1, 0.25) * short, float((free_rows / profile).min()))
    if depth < 0.04 * short:
        return image
    rows, cols = np.mgrid[0:height, 0:width].astype("float32")
    alpha = np.clip(depth * profile[None, :] - rows, 0, 1)
    angle, thread = rng.uniform(0, np.pi), rng.uniform(3, 6)
    u = rows * np.cos(angle) + cols * np.sin(angle)
    v = -rows * np.sin(angle) + cols * np.cos(angle)
    weave = np.sin(2 * np.pi * u / thread) * np.sin(2 * np.pi * v / thread)
    fold_direction = rng.uniform(0, np.pi)
    across_folds = u * np.cos(fold_direction) + v * np.sin(fold_direction)
    fold_width = rng.uniform(0.1, 0.3) * short
    folds = np.sin(2 * np.pi * across_folds / fold_width + rng.uniform(0, 2 * np.pi))
    shade = 1 + 0.06 * weave + 0.12 * folds + rng.normal(0, 0.02, weave.shape)
    colour = np.clip(_CLOTHS[rng.integers(len(_CLOTHS))] + rng.normal(0, 0.03, 3), 0, 1)
    cloth = np.clip(shade[..., None] * colour, 0, 1)
    return np.rot90(augmentation._paint(turned, alpha, cloth), -turns)


_DRAWERS = {"sticker": _sticker, "ink": _ink, "dark_corners": _dark_corners, "cloth": _cloth}


def add_artefacts(image, mask, rng):
    """One or two artefacts at the frame's edge, none within the lesion's margin.

    Args:
        image: uint8 `(H, W, 3)`.
        mask: bool `(H, W)`, the lesion.
        rng: a `numpy.random.Generator`.

    Returns:
        `(image, kinds)`: a new uint8 image, and the names of the artefacts drawn, in drawing
        order (empty when none found room; the image is then unchanged).
    """
    drawn = image.astype("float32") / 255
    keep_clear = keep_clear_zone(np.asarray(mask, bool))
    wanted = rng.integers(1, 3)
    kinds = []
    for kind in rng.permutation(ARTEFACTS):
        for _ in range(ATTEMPTS):
            candidate = _DRAWERS[kind](drawn, keep_clear, rng)
            touched = np.any(candidate != drawn, axis=-1)
            if touched.any() and not touched[keep_clear].any():
                drawn = np.ascontiguousarray(candidate)
                kinds.append(str(kind))
                break
        if len(kinds) == wanted:
            break
    return np.round(np.clip(drawn, 0, 1) * 255).astype(np.uint8), tuple(kinds)


def artefact_cases(cases, *, seed=SEED):
    """The artefact stress set of some cases (see the module docstring).

    Args:
        cases: `ph2_tf.data.external.Case`s (PH2 validation).
        seed: seed of the draws.

    Returns:
        A list of `Case`s, ids `<image id>+<kind>[+<kind>]`, the masks the originals'; images
        where no artefact found room are left out.
    """
    stressed = []
    for image_id, image, mask in cases:
        drawn, kinds = add_artefacts(image, mask, image_rng(seed, image_id, "artefacts"))
        if kinds:
            stressed.append(external.Case("+".join([image_id, *kinds]), drawn, mask))
    return stressed


def skin_colour(image, mask):
    """The median colour of the brighter half of the pixels off the lesion (all pixels when the
    lesion fills the image): skin under the dermatoscope's light, not the dark edge of its field
    or hairs. Float32 RGB in [0, 255]."""
    skin = image[~mask] if not mask.all() else image.reshape(-1, 3)
    luma = skin @ np.array([0.299, 0.587, 0.114])
    return np.median(skin[luma >= np.median(luma)], axis=0).astype("float32")


def _shrunk(array, size):
    """`array` (uint8 RGB or float32 2-D) resized to `size` (height, width) by area averaging."""
    height, width = size
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BOX))


def zoom_out(image, mask, share, rng):
    """An image and its mask zoomed out so that the lesion covers about `share` of the frame.

    Args:
        image: uint8 `(H, W, 3)`.
        mask: bool `(H, W)` with at least one lesion pixel.
        share: wanted fraction of the frame covered by lesion, in (0, 1).
        rng: a `numpy.random.Generator`, for where the lesion lands.

    Returns:
        `(image, mask)`: uint8 `(H, W, 3)` and bool `(H, W)`, the original shapes.

    Raises:
        ValueError: an empty mask, or `share` outside (0, 1).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("the mask has no lesion pixel: there is nothing to zoom out around")
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), received {share!r}")
    height, width = mask.shape
    scale = min(1.0, float(np.sqrt(share / mask.mean())))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small_image = _shrunk(image, size).astype("float32")
    small_mask = _shrunk(mask.astype("float32"), size) >= 0.5
    # Off the lesion, the image fades into the skin colour towards its inscribed ellipse, as a
    # dermatoscope's round field of view does; the corners (dark in PH2) become skin.
    rows, cols = np.mgrid[0 : size[0], 0 : size[1]] + 0.5
    radius = np.hypot(rows / size[0] * 2 - 1, cols / size[1] * 2 - 1)
    weight = np.where(small_mask, 1.0, np.clip((1 - radius) / SEAM, 0, 1))[..., None]
    skin = skin_colour(image, mask)
    small_image = weight * small_image + (1 - weight) * skin
    # Put the lesion's centre at a random point of the frame's middle half, where the image fits.
    lesion_centre = np.argwhere(small_mask).mean(axis=0) if small_mask.any() else np.zeros(2)
    target = rng.uniform(0.25, 0.75, 2) * [height, width]
    room = np.array([height - size[0], width - size[1]])
    top, left = np.clip(np.round(target - lesion_centre), 0, room).astype(int)
    zoomed_image = np.empty(image.shape, "float32")
    zoomed_image[...] = skin
    zoomed_image[top : top + size[0], left : left + size[1]] = small_image
    zoomed_mask = np.zeros(mask.shape, bool)
    zoomed_mask[top : top + size[0], left : left + size[1]] = small_mask
    return np.round(np.clip(zoomed_image, 0, 255)).astype(np.uint8), zoomed_mask


def small_lesion_cases(cases, *, seed=SEED):
    """The small-lesion set of some cases (see the module docstring).

    Args:
        cases: `ph2_tf.data.external.Case`s (PH2 validation), each with a lesion.
        seed: seed of the draws.

    Returns:
        A list of `Case`s with the same ids, zoomed out.

    Raises:
        ValueError: a case without lesion; the message names it.
    """
    zoomed = []
    for image_id, image, mask in cases:
        rng = image_rng(seed, image_id, "small_lesions")
        try:
            small_image, small_mask = zoom_out(image, mask, rng.uniform(*SMALL_LESION_SHARES), rng)
        except ValueError as error:
            raise ValueError(f"image {image_id}: {error}") from None
        zoomed.append(external.Case(image_id, small_image, small_mask))
    return zoomed


def write_folder(cases, folder):
    """Writes cases in the ISIC layout, losslessly: `images/<id>.png` and
    `masks/<id>_segmentation.png` (0 or 255), which `ph2_tf.data.external.folder_cases` reads
    back as the same pixels, so that a stress set can be a selection set (`export --if-better
    --selection-set`). The folder is assembled under a temporary name and renamed when complete:
    a killed write leaves no half set where a reader would take it for a whole one.

    Raises:
        FileExistsError: `folder` exists already; nothing is written then.
    """
    folder = pathlib.Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists already: give a new --output-dir")
    partial = files.partial_path(folder)
    shutil.rmtree(partial, ignore_errors=True)  # left by a killed earlier write
    for subfolder in ("images", "masks"):
        (partial / subfolder).mkdir(parents=True)
    for image_id, image, mask in cases:
        Image.fromarray(image).save(partial / "images" / f"{image_id}.png")
        segmentation = Image.fromarray(mask.astype(np.uint8) * 255)
        segmentation.save(partial / "masks" / f"{image_id}_segmentation.png")
    partial.rename(folder)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ph2_tf.experiments.stress_sets", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    parser.add_argument(
        "--output-dir",
        required=True,
        type=pathlib.Path,
        help="new folder for the sets, one ISIC-layout folder each (PNG files)",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the draws")
    args = parser.parse_args(argv)
    if not (pathlib.Path(args.data_dir) / "ph2" / "original").is_dir():
        parser.error(f"--data-dir {args.data_dir} has no prepared ph2/original")
    validation = external.ph2_cases("validation", data_dir=args.data_dir)
    small_lesions = small_lesion_cases(validation, seed=args.seed)
    for name, cases in (
        ("artefacts", artefact_cases(validation, seed=args.seed)),
        ("small_lesions", small_lesions),
        ("small_lesions_artefacts", artefact_cases(small_lesions, seed=args.seed)),
    ):
        folder = args.output_dir / name
        try:
            write_folder(cases, folder)
        except FileExistsError as error:
            parser.error(str(error))
        shares = [case.mask.mean() for case in cases]
        print(
            f"{name}: {len(cases)} of {len(validation)} images, lesion share "
            f"{min(shares):.1%}-{max(shares):.1%}, written to {folder}"
        )


if __name__ == "__main__":
    main()
