"""Writes `dummy_data/`: a tiny fake PH2 database in the layout of the official archive.

Run from the repository root after changing anything here:

    .venv/bin/python -m tfds_ph2.ph2.make_dummy_data

The fake database mimics the quirks of the real one that the builder must handle: 24-bit BMP
dermoscopic images of slightly different sizes, 1-bit BMP lesion masks, one 24-bit lesion mask
stored top-down (IMD002, as in the official archive), a colour-class `_roi` folder the builder
ignores, and a `PH2_dataset.txt` with CRLF line ends and legend lines after the table. Images are
a few dozen pixels wide so that the builder tests stay fast.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
from PIL import Image

DUMMY_DATA_DIR = Path(__file__).resolve().parent / "dummy_data"
IMAGES_DIR = "PH2 Dataset images"
METADATA_FILE = "PH2_dataset.txt"

# (case id, width, height, clinical diagnosis, histological diagnosis, asymmetry, pigment
# network, dots/globules, streaks, regression areas, blue-whitish veil, colours). Four cases per
# class, so every class contributes to every split (2 train, 1 validation, 1 test).
CASES = (
    ("IMD002", 40, 30, 1, "", 1, "AT", "A", "A", "A", "A", "3 4"),
    ("IMD003", 36, 28, 0, "", 0, "T", "A", "A", "A", "A", "4"),
    ("IMD009", 42, 32, 0, "", 0, "T", "A", "A", "A", "A", "3"),
    ("IMD016", 38, 30, 0, "", 0, "T", "T", "A", "A", "A", "3 4"),
    ("IMD022", 40, 31, 0, "Intradermal Nevus", 2, "T", "A", "A", "A", "A", "2 3"),
    ("IMD048", 44, 33, 1, "Dysplastic Nevus", 2, "AT", "AT", "A", "A", "A", "3 4"),
    ("IMD049", 39, 29, 1, "", 0, "T", "T", "P", "A", "A", "4 6"),
    ("IMD057", 41, 30, 1, "", 1, "AT", "AT", "A", "P", "A", "1 3 4"),
    ("IMD058", 40, 32, 2, "Melanoma", 2, "AT", "AT", "P", "P", "P", "1 3 4 5 6"),
    ("IMD061", 37, 28, 2, "Lentigo Maligna", 2, "AT", "A", "A", "A", "A", "3 4"),
    ("IMD063", 43, 31, 2, "", 0, "AT", "A", "P", "A", "P", "3 4 5 6"),
    ("IMD064", 40, 30, 2, "Nodular Melanoma", 1, "AT", "AT", "A", "P", "P", "2 4 5"),
)

_HEADER = (
    "||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network |"
    " Dots/Globules | Streaks | Regression Areas | Blue-Whitish Veil ||           Colors ||"
)
_LEGEND = (
    "",
    "Legends:",
    "Clinical Diagnosis: 0 - Common Nevus; 1 - Atypical Nevus; 2 - Melanoma.",
    "Asymmetry: 0 - Fully Symmetric; 1 - Symetric in 1 axe; 2 - Fully Asymmetric.",
    "Pigment Network, Dots/Globules, Streaks, Regression Areas, Blue-Whitish Veil:"
    " A - Absent; AT - Atypical; P - Present; T - Typical.",
    "Colors: 1 - White; 2 - Red; 3 - Light-Brown; 4 - Dark-Brown; 5 - Blue-Gray; 6 - Black.",
)


def _table_row(case: tuple) -> str:
    case_id, _, _, diagnosis, histology, asymmetry, *criteria, colors = case
    colors = "  ".join(colors.split())
    criteria = " | ".join(f"{c:>3}" for c in criteria)
    return (
        f"|| {case_id} || {histology:>22} || {diagnosis:>18} || {asymmetry:>9} | {criteria} ||"
        f" {colors:>16} ||"
    )


def fake_lesion(width: int, height: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A brown ellipse on skin-coloured background, and its mask."""
    y, x = np.mgrid[0:height, 0:width]
    cy, cx = height / 2 + index % 3 - 1, width / 2 + index % 4 - 1.5
    ry, rx = height * (0.25 + 0.02 * index), width * (0.3 - 0.01 * index)
    mask = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
    image = np.empty((height, width, 3), np.uint8)
    image[...] = (205, 160, 140)
    image[mask] = (110 - 5 * index, 70, 50)
    # A deterministic gradient so that images differ pixel by pixel, like real photographs.
    image[..., 2] = np.clip(image[..., 2].astype(int) + (x + 2 * y) % 17, 0, 255)
    return image, mask


def _write_top_down_bmp(path: Path, rgb: np.ndarray) -> None:
    """Writes a 24-bit BMP with negative height (rows stored top-down), which Pillow cannot."""
    height, width, _ = rgb.shape
    row_size = (3 * width + 3) // 4 * 4
    rows = np.zeros((height, row_size), np.uint8)
    rows[:, : 3 * width] = rgb[..., ::-1].reshape(height, 3 * width)  # BMP stores BGR.
    pixels = rows.tobytes()
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    header = struct.pack("<2sIHHI", b"BM", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    path.write_bytes(header + info + pixels)


def write_dummy_data(out_dir: Path = DUMMY_DATA_DIR) -> None:
    """Replaces `out_dir` with a fresh fake database under `out_dir/PH2Dataset/`."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    root = out_dir / "PH2Dataset"
    images_dir = root / IMAGES_DIR
    for index, case in enumerate(CASES):
        case_id, width, height = case[:3]
        image, mask = fake_lesion(width, height, index)
        case_dir = images_dir / case_id
        (case_dir / f"{case_id}_Dermoscopic_Image").mkdir(parents=True)
        (case_dir / f"{case_id}_lesion").mkdir()
        Image.fromarray(image).save(case_dir / f"{case_id}_Dermoscopic_Image" / f"{case_id}.bmp")
        mask_path = case_dir / f"{case_id}_lesion" / f"{case_id}_lesion.bmp"
        if case_id == "IMD002":
            _write_top_down_bmp(mask_path, np.repeat(mask[..., None] * np.uint8(255), 3, axis=-1))
            (case_dir / f"{case_id}_roi").mkdir()
            Image.fromarray(mask).save(case_dir / f"{case_id}_roi" / f"{case_id}_R1_Label4.bmp")
        else:
            Image.fromarray(mask).save(mask_path)  # A bool array becomes a mode "1" (1-bit) BMP.
    lines = (_HEADER, *(_table_row(case) for case in CASES), *_LEGEND)
    (root / METADATA_FILE).write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))


def copy_cases(case_ids: list[str], dest: Path, src: Path = DUMMY_DATA_DIR) -> Path:
    """Copies some cases of the fake database, and their table rows, to `dest/PH2Dataset/`.

    Tests corrupt such copies; returns `dest/PH2Dataset`.
    """
    src_root, root = src / "PH2Dataset", dest / "PH2Dataset"
    for case_id in case_ids:
        shutil.copytree(src_root / IMAGES_DIR / case_id, root / IMAGES_DIR / case_id)
    lines = (src_root / METADATA_FILE).read_bytes().split(b"\r\n")
    kept = [
        line for line in lines if not line.startswith(b"|| IMD") or line[3:9].decode() in case_ids
    ]
    (root / METADATA_FILE).write_bytes(b"\r\n".join(kept))
    return root


if __name__ == "__main__":
    write_dummy_data()
    print(f"Wrote {len(CASES)} fake cases to {DUMMY_DATA_DIR}")
