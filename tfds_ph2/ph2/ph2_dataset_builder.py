"""PH2 dermoscopy database: images, expert lesion masks, diagnoses and dermoscopic criteria."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from tfds_ph2.ph2.image_reading import ImageReadError, read_image

DUMMY_DATA_DIR = Path(__file__).resolve().parent / "dummy_data"
"""A tiny fake PH2 database in the official layout, usable as a manual dir in tests."""

MANUAL_DIR_ENV = "PH2_MANUAL_DIR"
HOMEPAGE = "https://www.fc.up.pt/addi/ph2%20database.html"

CLASS_NAMES = ("common_nevus", "atypical_nevus", "melanoma")
ASYMMETRY_NAMES = ("fully_symmetric", "symmetric_in_one_axis", "fully_asymmetric")
COLOR_NAMES = ("white", "red", "light_brown", "dark_brown", "blue_gray", "black")

# Feature name -> the class names it takes on PH2, in the order of the official legend
# (A absent, T typical, AT atypical, P present).
CRITERIA = {
    "pigment_network": ("typical", "atypical"),
    "dots_globules": ("absent", "typical", "atypical"),
    "streaks": ("absent", "present"),
    "regression_areas": ("absent", "present"),
    "blue_whitish_veil": ("absent", "present"),
}
_CRITERION_CODES = {"A": "absent", "T": "typical", "AT": "atypical", "P": "present"}

METADATA_FILE = "PH2_dataset.txt"
IMAGES_DIR = "PH2 Dataset images"
_ARCHIVE_DIR = "PH2Dataset"
_CASE_ID = re.compile(r"IMD\d{3}")
_IMAGE_SUFFIXES = (".bmp", ".png")  # Official archive: BMP; re-encoded copies: PNG.

SPLIT_NAMES = ("train", "validation", "test")
# Threads preparing examples; TFDS writes them serially, so more would mostly wait.
_WORKERS = 4


class Ph2DataError(ValueError):
    """PH2 data that is unreadable or inconsistent; the message names the case and the file."""

    def __init__(self, message: str, *, case_id: str | None = None, path=None):
        super().__init__(message)
        self.case_id = case_id
        self.path = path


class Ph2FileNotFoundError(FileNotFoundError):
    """A PH2 file or the whole database is missing; the message names the case and the file."""

    def __init__(self, message: str, *, case_id: str | None = None, path=None):
        super().__init__(message)
        self.case_id = case_id
        self.path = path


@dataclasses.dataclass(frozen=True)
class Case:
    """One PH2 case: its files and its row of `PH2_dataset.txt`."""

    case_id: str
    image_path: epath.Path
    mask_path: epath.Path
    label: int
    histological_diagnosis: str
    asymmetry: int
    criteria: Mapping[str, str]
    colors: tuple[int, ...]  # 1-based colour codes, as in the table.


@dataclasses.dataclass(eq=False)
class Ph2Config(tfds.core.BuilderConfig):
    """`image_size`: side of the square the images and masks are resized to; None keeps them."""

    image_size: int | None = None


def split_case_ids(labels: Mapping[str, int]) -> dict[str, list[str]]:
    """Deterministic stratified split of case ids into train / validation / test.

    Within each clinical class the ids are ordered by the SHA-256 of the id; the first half goes
    to train, the next quarter to validation and the rest to test (halves rounded up). No random
    state is involved, so every machine gets the same split: 100/50/50 on PH2 (40/40/20 in train).
    """
    splits = {name: [] for name in SPLIT_NAMES}
    for label in sorted(set(labels.values())):
        ids = sorted(
            (i for i, lab in labels.items() if lab == label),
            key=lambda i: hashlib.sha256(i.encode("ascii")).hexdigest(),
        )
        n_train, n_validation = (len(ids) + 1) // 2, (len(ids) + 2) // 4
        splits["train"] += ids[:n_train]
        splits["validation"] += ids[n_train : n_train + n_validation]
        splits["test"] += ids[n_train + n_validation :]
    return {name: sorted(ids) for name, ids in splits.items()}


def _parse_row(fields: list[str]) -> dict:
    """The example fields of one table row; ValueError saying what is wrong."""
    _, histology, diagnosis, criteria, colors = fields
    criteria = [c.strip() for c in criteria.split("|")]
    if diagnosis not in ("0", "1", "2"):
        raise ValueError(f"clinical diagnosis {diagnosis!r} is not 0, 1 or 2")
    if len(criteria) != 1 + len(CRITERIA):
        raise ValueError(f"{len(criteria)} criteria instead of {1 + len(CRITERIA)}")
    if criteria[0] not in ("0", "1", "2"):
        raise ValueError(f"asymmetry {criteria[0]!r} is not 0, 1 or 2")
    named = {}
    for (feature, names), code in zip(CRITERIA.items(), criteria[1:], strict=True):
        if _CRITERION_CODES.get(code) not in names:
            raise ValueError(f"{feature} code {code!r} is not one of {names}")
        named[feature] = _CRITERION_CODES[code]
    if not all(c in "123456" and len(c) == 1 for c in colors.split()):
        raise ValueError(f"colour codes {colors!r} are not within 1-6")
    return dict(
        label=int(diagnosis),
        histological_diagnosis=histology,
        asymmetry=int(criteria[0]),
        criteria=named,
        colors=tuple(sorted({int(c) for c in colors.split()})),
    )


def parse_metadata(path: epath.Path) -> dict[str, dict]:
    """Parses the `||`-delimited table of `PH2_dataset.txt`; returns {case id: row fields}.

    Only lines that start with `||` belong to the table; the header row and the legend after
    the table are skipped.
    """
    rows = {}
    for line_no, line in enumerate(path.read_bytes().decode("latin-1").splitlines(), start=1):
        if not line.startswith("||"):
            continue
        fields = [f.strip() for f in line.strip().strip("|").split("||")]
        if fields[0] == "Name":
            continue
        case_id = fields[0] if _CASE_ID.fullmatch(fields[0]) else None
        try:
            if case_id is None or len(fields) != 5:
                raise ValueError("malformed row")
            if case_id in rows:
                raise ValueError("second row for the same case")
            rows[case_id] = _parse_row(fields)
        except ValueError as e:
            raise Ph2DataError(
                f"PH2 case {case_id or '?'}: {e} in {path} line {line_no}: {line.strip()!r}",
                case_id=case_id,
                path=path,
            ) from None
    if not rows:
        raise Ph2DataError(f"No PH2 cases found in the table of {path}", path=path)
    return rows


def find_data_root(
    directory: epath.Path, extract: Callable[[epath.Path], epath.Path] | None = None
) -> epath.Path | None:
    """Returns the folder holding `PH2_dataset.txt` and `PH2 Dataset images/`, or None.

    Accepted layouts of `directory`: the extracted archive's contents, an extracted
    `PH2Dataset/` folder, or `PH2Dataset.zip` (unpacked with `extract`). A lone
    `PH2Dataset.rar` raises `Ph2FileNotFoundError` saying how to extract it.
    """
    for root in (directory, directory / _ARCHIVE_DIR):
        if (root / METADATA_FILE).is_file() and (root / IMAGES_DIR).is_dir():
            return root
    archive = directory / f"{_ARCHIVE_DIR}.zip"
    if extract is not None and archive.is_file():
        return find_data_root(epath.Path(extract(archive)))
    rar = directory / f"{_ARCHIVE_DIR}.rar"
    if rar.is_file():
        raise Ph2FileNotFoundError(
            f"Found {rar} but TFDS cannot extract RAR archives. Extract it in place, e.g. "
            f"`cd {directory} && unrar x {rar.name}` (or `7z x {rar.name}` or "
            f"`bsdtar -xf {rar.name}`), so that {directory / _ARCHIVE_DIR / METADATA_FILE} "
            "exists, then run again.",
            path=rar,
        )
    return None


def _find_file(directory: epath.Path, stem: str, case_id: str, what: str) -> epath.Path:
    for suffix in _IMAGE_SUFFIXES:
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    expected = " or ".join(f"{stem}{s}" for s in _IMAGE_SUFFIXES)
    raise Ph2FileNotFoundError(
        f"PH2 case {case_id}: {what} not found: expected {expected} in {directory}",
        case_id=case_id,
        path=directory / f"{stem}{_IMAGE_SUFFIXES[0]}",
    )


def _image_size(path: epath.Path, case_id: str) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with path.open("rb") as f, Image.open(f) as image:
            return image.size
    except (OSError, ValueError, SyntaxError) as e:  # Pillow raises all three for bad files.
        raise Ph2DataError(
            f"PH2 case {case_id}: cannot read {path}: {e}", case_id=case_id, path=path
        ) from e


def collect_cases(root: epath.Path) -> list[Case]:
    """Checks every case of the database at `root` up front and returns them sorted by id.

    Raises `Ph2FileNotFoundError` / `Ph2DataError` naming the case and the file for a case
    without image or mask, a mask whose size differs from its image, an unreadable file header,
    a table row without a case folder, or a case folder without a table row.
    """
    metadata_path = root / METADATA_FILE
    rows = parse_metadata(metadata_path)
    images_dir = root / IMAGES_DIR
    folders = {p.name: p for p in images_dir.iterdir() if _CASE_ID.fullmatch(p.name)}
    for case_id in sorted(rows.keys() - folders.keys()):
        raise Ph2FileNotFoundError(
            f"PH2 case {case_id} is listed in {metadata_path} but its folder "
            f"{images_dir / case_id} does not exist",
            case_id=case_id,
            path=images_dir / case_id,
        )
    for case_id in sorted(folders.keys() - rows.keys()):
        raise Ph2DataError(
            f"PH2 case {case_id}: folder {folders[case_id]} has no row in {metadata_path}",
            case_id=case_id,
            path=metadata_path,
        )
    cases = []
    for case_id in sorted(rows):
        folder = folders[case_id]
        image_path = _find_file(
            folder / f"{case_id}_Dermoscopic_Image", case_id, case_id, "dermoscopic image"
        )
        mask_path = _find_file(folder / f"{case_id}_lesion", f"{case_id}_lesion", case_id, "mask")
        image_size, mask_size = _image_size(image_path, case_id), _image_size(mask_path, case_id)
        if image_size != mask_size:
            raise Ph2DataError(
                f"PH2 case {case_id}: lesion mask {mask_path} is {mask_size[0]}x{mask_size[1]} "
                f"but its image {image_path} is {image_size[0]}x{image_size[1]}",
                case_id=case_id,
                path=mask_path,
            )
        cases.append(Case(case_id, image_path, mask_path, **rows[case_id]))
    return cases


def _decode(path: epath.Path, case_id: str) -> Image.Image:
    try:
        with path.open("rb") as f:
            image = Image.open(io.BytesIO(f.read()))
            image.load()  # Decodes now, so that truncated files fail here.
        return image
    except (OSError, ValueError, SyntaxError) as e:
        raise Ph2DataError(
            f"PH2 case {case_id}: cannot decode {path}: {e}", case_id=case_id, path=path
        ) from e


def load_image(path: epath.Path, case_id: str) -> np.ndarray:
    """The dermoscopic image as uint8 (H, W, 3), read by `image_reading.read_image`.

    `ph2-seg predict` reads its inputs with the same function, so the rules (EXIF
    orientation, greyscale and 16-bit images, alpha) are the same for training and prediction.
    """
    try:
        return read_image(path)
    except ImageReadError as e:
        raise Ph2DataError(
            f"PH2 case {case_id}: cannot decode {path}: {e.reason}", case_id=case_id, path=path
        ) from e


def load_mask(path: epath.Path, case_id: str) -> np.ndarray:
    """The lesion mask as uint8 (H, W, 1) in {0, 1}.

    The masks are 1-bit BMPs except IMD002's, a 24-bit one; any non-zero value is lesion.
    """
    image = _decode(path, case_id)
    if image.mode not in ("1", "L", "RGB"):
        image = image.convert("L")  # Palette or alpha modes: compare grey levels, not indices.
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        pixels = pixels.max(axis=-1)
    return (pixels > 0).astype(np.uint8)[..., None]


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resizes to size x size exactly as the models' training and serving do.

    Both go through `resizing`, which the models' pipeline and serving graph use too: the image
    anti-aliased bilinear and rounded to uint8, the mask nearest-neighbour. So a model trained on a
    resized config sees the pixels its serving signature computes from the original image. That
    needs TensorFlow's resize, the one in the serving graph: under another Keras backend the
    resized configs are refused.
    """
    import keras  # Imported here: only the resized configs need it.

    from tfds_ph2.ph2 import resizing

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"The resized PH2 configs are resized with TensorFlow, as the serving graph does; "
            f"Keras' backend here is {keras.backend.backend()!r}: prepare them with "
            f"KERAS_BACKEND=tensorflow."
        )
    image = resizing.resize_image(image, (size, size))
    mask = resizing.resize_mask(mask, (size, size))
    return keras.ops.convert_to_numpy(image), keras.ops.convert_to_numpy(mask)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, C) array, C = 1 or 3.

    Pillow at zlib level 1 instead of TFDS's own encoder (zlib's default level 6): preparation
    spends much of its time encoding, and the fastest level costs only slightly larger files
    (preparation cost: this folder's README.md, `benchmarks/prepare_dataset.py`).
    """
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for the PH2 dermoscopy database."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: 200 cases, deterministic stratified 100/50/50 split.",
        "1.1.0": "Resized configs made with the models' own resize (TensorFlow, anti-aliased "
        "bilinear rounded to uint8; masks nearest-neighbour) instead of scikit-image, so that "
        "they hold the pixels the serving signature computes. `original` is unchanged.",
    }
    BUILDER_CONFIGS = [
        Ph2Config(name="original", description="Images and masks at their original size."),
        Ph2Config(
            name="resized_256",
            image_size=256,
            description="Images (anti-aliased bilinear) and masks (nearest) resized to 256x256.",
        ),
        Ph2Config(
            name="resized_128",
            image_size=128,
            description="Images (anti-aliased bilinear) and masks (nearest) resized to 128x128.",
        ),
    ]
    DEFAULT_CONFIG_NAME = "original"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    PH2 cannot be downloaded automatically: its authors hand it out after you accept their terms.
    1. Get `PH2Dataset.rar` from the official page {HOMEPAGE}.
    2. Extract it (TFDS cannot read RAR), e.g. `unrar x PH2Dataset.rar`, `7z x PH2Dataset.rar`
       or `bsdtar -xf PH2Dataset.rar`.
    3. Put into the manual dir (default `~/tensorflow_datasets/downloads/manual/`, or pass
       `--manual_dir` / `DownloadConfig(manual_dir=...)`) either the extracted `PH2Dataset/`
       folder, its contents (`PH2_dataset.txt` and `PH2 Dataset images/`), or the same packed
       as `PH2Dataset.zip`.
    Dermoscopic images may be the official BMP files or PNG copies. If the manual dir holds no
    PH2 data, the directory named by the environment variable {MANUAL_DIR_ENV} is used.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        """Returns the dataset metadata."""
        size = self.builder_config.image_size
        criteria = {
            name: tfds.features.ClassLabel(names=list(names)) for name, names in CRITERIA.items()
        }
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image_id": tfds.features.Text(doc="Case id, e.g. IMD002."),
                    "image": tfds.features.Image(shape=(size, size, 3), dtype=np.uint8),
                    "segmentation_mask": tfds.features.Image(
                        shape=(size, size, 1), dtype=np.uint8, doc="Lesion mask, 1 = lesion."
                    ),
                    "label": tfds.features.ClassLabel(
                        names=list(CLASS_NAMES), doc="Clinical diagnosis."
                    ),
                    "histological_diagnosis": tfds.features.Text(
                        doc="E.g. 'Melanoma'; empty for most cases."
                    ),
                    "asymmetry": tfds.features.ClassLabel(names=list(ASYMMETRY_NAMES)),
                    **criteria,
                    "colors": tfds.features.Tensor(
                        shape=(len(COLOR_NAMES),),
                        dtype=np.bool_,
                        doc=f"Multi-hot colours present, in the order {', '.join(COLOR_NAMES)}.",
                    ),
                }
            ),
            supervised_keys=("image", "segmentation_mask"),
            homepage=HOMEPAGE,
        )

    def _find_root(self, dl_manager: tfds.download.DownloadManager) -> epath.Path:
        """The PH2 data in the manual dir, else in $PH2_MANUAL_DIR (read only when needed)."""
        try:
            manual_dir = dl_manager.manual_dir
        except AssertionError as e:  # TFDS's error for a missing or empty manual dir.
            manual_dir, manual_dir_error = None, str(e).splitlines()[0]
        else:
            root = find_data_root(manual_dir, dl_manager.extract)
            if root is not None:
                return root
            manual_dir_error = f"Manual directory {manual_dir} holds no PH2 data."
        fallback = os.environ.get(MANUAL_DIR_ENV)
        if fallback:
            root = find_data_root(epath.Path(fallback).expanduser(), dl_manager.extract)
            if root is not None:
                return root
        raise Ph2FileNotFoundError(
            f"PH2 data not found. {manual_dir_error} ${MANUAL_DIR_ENV} "
            + (f"({fallback}) holds no PH2 data either." if fallback else "is not set.")
            + f"\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}",
            path=manual_dir,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        """Finds and checks all cases before anything is written, then splits them."""
        cases = {case.case_id: case for case in collect_cases(self._find_root(dl_manager))}
        splits = split_case_ids({case_id: case.label for case_id, case in cases.items()})
        for name, ids in splits.items():
            if not ids:  # TFDS cannot write an empty split; say why instead.
                raise Ph2DataError(
                    f"Only {len(cases)} PH2 cases found ({', '.join(sorted(cases))}): the "
                    f"{name!r} split would be empty. It needs 4 cases of at least one class."
                )
        return {
            name: self._generate_examples([cases[i] for i in ids]) for name, ids in splits.items()
        }

    def _generate_examples(self, cases: Sequence[Case]) -> Iterator[tuple[str, dict]]:
        """Yields (case id, example) for each case, in order.

        Decoding, resizing and PNG encoding run in `_WORKERS` threads (Pillow, zlib and SciPy
        release the GIL), at most `2 * _WORKERS` cases ahead, so memory stays bounded.
        """
        with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
            pending = collections.deque()
            for case in cases:
                pending.append(pool.submit(self._example, case))
                if len(pending) >= 2 * _WORKERS:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _example(self, case: Case) -> tuple[str, dict]:
        image = load_image(case.image_path, case.case_id)
        mask = load_mask(case.mask_path, case.case_id)
        if self.builder_config.image_size is not None:
            image, mask = resize_pair(image, mask, self.builder_config.image_size)
        colors = np.zeros(len(COLOR_NAMES), np.bool_)
        colors[[c - 1 for c in case.colors]] = True
        return case.case_id, {
            "image_id": case.case_id,
            "image": encode_png(image),
            "segmentation_mask": encode_png(mask),
            "label": case.label,
            "histological_diagnosis": case.histological_diagnosis,
            "asymmetry": case.asymmetry,
            **case.criteria,
            "colors": colors,
        }
