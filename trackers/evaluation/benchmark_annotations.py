"""Ground truth for evaluation, read from a benchmark folder without touching the images.

LaSOT layout (``<root>/<class>/<class>-<k>/`` or flat ``<root>/<seq>/``): groundtruth.txt plus the
full_occlusion / out_of_view flag lines (spec tracking_ecosystem §1.1). GOT-10k layout
(``<root>/<seq>/``): groundtruth.txt, cover.label, meta_info.ini (§1.2). Image sizes, needed only by
the got10k protocol's clipping, come from image_sizes.json, meta_info.ini or the first image header.
The files are parsed by the training readers' parsers (``datamodules.readers.annotation_files``),
so a malformed line is reported the same way (file and line) everywhere.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.readers.annotation_files import read_boxes, read_flags, read_key_values

DATASET_LAYOUTS = ("lasot", "got10k")
FULL_COVER = 8  # GOT-10k cover label of a fully visible target (eighths)


@dataclass(frozen=True)
class SequenceAnnotation:
    """What every protocol needs of one sequence.

    ``visible`` is the LaSOT flag pair (None where the benchmark has none, as pytracking treats
    GOT-10k); ``cover`` is the GOT-10k label (LaSOT: 0 on absent frames, 8 otherwise).
    """

    name: str
    boxes: np.ndarray  # (L, 4) float64 frame xywh
    visible: np.ndarray | None  # (L,) bool
    cover: np.ndarray | None  # (L,) int
    image_size: tuple[int, int] | None  # (W, H)


def read_flag_line(path: Path) -> np.ndarray:
    """A LaSOT flag file: one line of comma-separated 0/1."""
    return read_flags(path)


def read_groundtruth(path: Path) -> np.ndarray:
    """(L, 4) float64 ``x,y,w,h`` lines."""
    return read_boxes(path)


def load_lasot_sequence(seq_dir: Path, image_size: tuple[int, int] | None = None) -> SequenceAnnotation:
    seq_dir = Path(seq_dir)
    boxes = read_groundtruth(seq_dir / "groundtruth.txt")
    occluded = read_flag_line(seq_dir / "full_occlusion.txt")
    out_of_view = read_flag_line(seq_dir / "out_of_view.txt")
    if not len(occluded) == len(out_of_view) == len(boxes):
        raise ValueError(f"{seq_dir}: {len(boxes)} GT lines but {len(occluded)}/{len(out_of_view)} "
                         "occlusion/out-of-view flags; the flag files must have one value per frame")
    visible = (occluded == 0) & (out_of_view == 0)
    size = image_size or _first_image_size(seq_dir / "img")
    return SequenceAnnotation(seq_dir.name, boxes, visible, visible.astype(np.int64) * FULL_COVER, size)


def load_got10k_sequence(seq_dir: Path, image_size: tuple[int, int] | None = None) -> SequenceAnnotation:
    seq_dir = Path(seq_dir)
    boxes = read_groundtruth(seq_dir / "groundtruth.txt")
    cover_file = seq_dir / "cover.label"
    cover = read_flags(cover_file) if cover_file.exists() else None
    size = image_size or _meta_info_resolution(seq_dir / "meta_info.ini") or _first_image_size(seq_dir)
    return SequenceAnnotation(seq_dir.name, boxes, None, cover, size)


def load_benchmark(
    root: str | Path,
    dataset: str = "lasot",
    sequences: list[str] | None = None,
    image_sizes: str | Path | None = None,
) -> list[SequenceAnnotation]:
    """Every sequence under ``root`` (or only ``sequences``), sorted by name.

    ``image_sizes`` is a JSON ``{seq: {"width": W, "height": H}}``; by default
    ``<root>/image_sizes.json`` is used when present.
    """
    root = Path(root)
    if dataset not in DATASET_LAYOUTS:
        raise ValueError(f"dataset={dataset!r} is not a known layout; use one of {DATASET_LAYOUTS}")
    found = {p.parent.name: p.parent for p in [*root.glob("*/groundtruth.txt"), *root.glob("*/*/groundtruth.txt")]}
    if not found:
        raise FileNotFoundError(f"{root}: no <seq>/groundtruth.txt found; point dataset_root at the benchmark folder")
    names = sorted(found) if sequences is None else list(sequences)
    missing = [n for n in names if n not in found]
    if missing:
        raise FileNotFoundError(f"{root}: no ground truth for sequences {missing[:5]}; check the names or the root")
    sizes = _read_image_sizes(Path(image_sizes) if image_sizes else root / "image_sizes.json")
    load = load_lasot_sequence if dataset == "lasot" else load_got10k_sequence
    return [load(found[n], sizes.get(n)) for n in names]


def _read_image_sizes(path: Path) -> dict[str, tuple[int, int]]:
    if not path.exists():
        return {}
    return {k: (int(v["width"]), int(v["height"])) for k, v in json.loads(path.read_text()).items()}


def _meta_info_resolution(path: Path) -> tuple[int, int] | None:
    """``resolution: (W, H)`` of a GOT-10k meta_info.ini."""
    if not path.exists():
        return None
    value = read_key_values(path).get("resolution")
    if value is None:
        return None
    w, h = ast.literal_eval(value)
    return int(w), int(h)


def _first_image_size(folder: Path) -> tuple[int, int] | None:
    """(W, H) from the first frame's header; None when the folder has no images."""
    images = sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not images:
        return None
    from PIL import Image

    with Image.open(images[0]) as im:
        return im.size
