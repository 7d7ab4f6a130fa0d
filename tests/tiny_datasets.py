"""Tiny datasets in the official on-disk layouts, with real JPEG frames, for the reader tests.

Frame ``k`` of every sequence is a flat image of gray level ``frame_value(k)`` (so a test can tell
which file was read) and its box is ``frame_box(k)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from datamodules.readers import SequenceReader, got10k, lasot
from trackers.frames import read_rgb

SIZE = (48, 32)  # (W, H)


def frame_value(k: int) -> int:
    return 20 + (10 * k) % 230


def frame_box(k: int) -> list[float]:
    return [2.0 + k, 3.0 + k, 10.0 + k, 8.5]


def load_frame(reader: SequenceReader, i: int, frame_id: int) -> np.ndarray:
    """RGB uint8 frame ``frame_id`` of sequence ``i``, decoded at full resolution (a missing or bad file raises)."""
    return read_rgb(reader.frame_path(i, frame_id))


def write_jpeg(path: Path, value: int, size: tuple[int, int] = SIZE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), value, np.uint8))


def _gt_lines(length: int, zero: Sequence[int] = ()) -> str:
    boxes = [frame_box(k) if k not in zero else [0.0, 0.0, 0.0, 0.0] for k in range(length)]
    return "".join(",".join(f"{v:g}" for v in b) + "\n" for b in boxes)


def make_lasot(root: Path, lengths: dict[str, int], occluded: dict[str, list[int]] | None = None) -> Path:
    """``<root>/<class>/<name>/`` sequences; ``occluded`` frames are flagged in full_occlusion.txt."""
    for name, length in lengths.items():
        seq = root / name.rsplit("-", 1)[0] / name
        for k in range(length):
            write_jpeg(seq / lasot.IMAGE_DIR / lasot.FRAME_FILE.format(k + 1), frame_value(k))
        hidden = set((occluded or {}).get(name, []))
        (seq / lasot.GT_FILE).write_text(_gt_lines(length))
        (seq / lasot.FULL_OCCLUSION_FILE).write_text(",".join("1" if k in hidden else "0" for k in range(length)) + "\n")
        (seq / lasot.OUT_OF_VIEW_FILE).write_text(",".join("0" for _ in range(length)) + "\n")
    return root


def make_got10k(folder: Path, lengths: dict[str, int], absent: dict[str, list[int]] | None = None,
                uncovered: dict[str, list[int]] | None = None, zero_box: dict[str, list[int]] | None = None,
                first_box_only: bool = False, classes: dict[str, str] | None = None) -> Path:
    """One GOT-10k folder (train/val/test): ``list.txt`` in the given order plus one folder per sequence."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / got10k.LIST_FILE).write_text("".join(f"{n}\n" for n in lengths))
    for name, length in lengths.items():
        seq = folder / name
        for k in range(length):
            write_jpeg(seq / lasot.FRAME_FILE.format(k + 1), frame_value(k))
        if first_box_only:
            (seq / got10k.GT_FILE).write_text(_gt_lines(1))
        else:
            (seq / got10k.GT_FILE).write_text(_gt_lines(length, (zero_box or {}).get(name, [])))
            gone = set((absent or {}).get(name, []))
            hidden = set((uncovered or {}).get(name, []))
            (seq / got10k.ABSENCE_FILE).write_text("".join(f"{int(k in gone)}\n" for k in range(length)))
            cover = [0 if k in hidden or k in gone else 8 for k in range(length)]
            (seq / got10k.COVER_FILE).write_text("".join(f"{c}\n" for c in cover))
        cls = (classes or {}).get(name, "ball")
        (seq / got10k.META_FILE).write_text(f"[METAINFO]\nurl: x\nbegin: 0\nend: 1\nanno_fps: 10Hz\n"
                                           f"object_class: {cls}\nmotion_class: roll\nmajor_class: thing\n"
                                           f"root_class: object\nmotion_adverb: slowly\nresolution: {SIZE}\n")
    return folder


def make_trackingnet(root: Path, chunks: dict[str, dict[str, int]], first_box_only: Sequence[str] = ("TEST",)) -> Path:
    """``<root>/<chunk>/{anno/<seq>.txt, frames/<seq>/<k>.jpg}``, frames 0-based and not zero-padded."""
    for chunk, seqs in chunks.items():
        for name, length in seqs.items():
            for k in range(length):
                write_jpeg(root / chunk / "frames" / name / f"{k}.jpg", frame_value(k))
            (root / chunk / "anno").mkdir(parents=True, exist_ok=True)
            lines = _gt_lines(1 if chunk in first_box_only else length)
            (root / chunk / "anno" / f"{name}.txt").write_text(lines)
    return root


def make_coco(root: Path, split: str = "train2017", image_dir_style: str = "images") -> Path:
    """Three images, five annotations: one crowd region and one small (30 px) box among them."""
    image_dir = root / "images" / split if image_dir_style == "images" else root / split
    images = [{"id": 7, "file_name": "000000000007.jpg"}, {"id": 3, "file_name": "000000000003.jpg"},
              {"id": 9, "file_name": "000000000009.jpg"}]
    for k, im in enumerate(images):
        write_jpeg(image_dir / im["file_name"], frame_value(k), size=(160, 120))
    annotations = [
        {"id": 101, "image_id": 7, "bbox": [10.0, 12.0, 60.0, 55.0], "iscrowd": 0, "category_id": 1},
        {"id": 102, "image_id": 7, "bbox": [5.0, 5.0, 30.0, 80.0], "iscrowd": 0, "category_id": 2},
        {"id": 103, "image_id": 3, "bbox": [0.0, 0.0, 100.0, 100.0], "iscrowd": 1, "category_id": 1},
        {"id": 104, "image_id": 3, "bbox": [20.5, 30.25, 70.0, 60.0], "iscrowd": 0, "category_id": 2},
        {"id": 105, "image_id": 9, "bbox": [40.0, 20.0, 55.0, 90.0], "iscrowd": 0, "category_id": 1},
    ]
    categories = [{"id": 1, "name": "person", "supercategory": "person"},
                  {"id": 2, "name": "kite", "supercategory": "sports"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root
