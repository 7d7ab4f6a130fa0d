"""GOT-10k reader (spec tracking_ecosystem §1.2, §1.6, §7).

Layout: ``<root>/list.txt`` and ``<root>/<seq>/{%08d.jpg (1-based), groundtruth.txt, absence.label,
cover.label, meta_info.ini}``, where root is ``<got10k>/train``, ``<got10k>/val`` or
``<got10k>/test``. ``visible = valid & !absence & cover > 0``; the class is meta_info.ini's
``object_class``. Test sequences hold only the first box (the other frames are unknown, NaN).

Split selection on the training folder: ``split`` names one of the official index files
(0-based positions in ``<root>/list.txt``), ``split_file`` lists sequence names, and no split
takes every sequence of ``list.txt`` (the official val and test folders).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from datamodules.readers.annotation_files import read_boxes, read_flags, read_key_values, read_name_list
from datamodules.readers.base import (
    DatasetRootError,
    ParsedSequence,
    SequenceFolderReader,
    SequenceInfo,
    count_images,
    first_frame_only,
    fit_flags,
    require_root,
    visibility,
)
from datamodules.readers.lasot import FRAME_FILE, data_specs_dir, read_split_file, split_file_key
from trackers.errors import BadFileError

LIST_FILE = "list.txt"
GT_FILE = "groundtruth.txt"
ABSENCE_FILE = "absence.label"
COVER_FILE = "cover.label"
META_FILE = "meta_info.ini"
CUT_BY_IMAGE_FILE = "cut_by_image.label"  # part of the layout (written by SynthTrack), not read
INDEX_FILES = {
    "train_full": "got10k_train_full_split.txt",
    "train": "got10k_train_split.txt",
    "val": "got10k_val_split.txt",
    "vottrain": "got10k_vot_train_split.txt",
    "votval": "got10k_vot_val_split.txt",
}


def read_index_split(index_file: Path, listed: list[str], list_file: Path) -> list[str]:
    """Names selected by an index file of 0-based positions in ``list.txt``."""
    values = read_flags(index_file)
    bad = values[(values < 0) | (values >= len(listed))]
    if bad.size:
        raise BadFileError(f"index {int(bad[0])} in '{index_file}' is outside the {len(listed)} entries of "
                           f"'{list_file}': the official index files need the full <got10k>/train folder as root")
    return [listed[int(i)] for i in values]


class Got10kReader(SequenceFolderReader):
    """One GOT-10k folder (train, val or test), optionally restricted to a split."""

    type_name = "got10k"

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        split_file: str | Path | None = None,
        config_key: str = "data.init_args.datasets[0].root",
        name: str = "got10k",
    ) -> None:
        root_path = require_root(root, config_key)
        list_file = root_path / LIST_FILE
        if not list_file.is_file():
            raise DatasetRootError(f"'{root_path}' has no {LIST_FILE}: set {config_key} to a GOT-10k folder "
                                   "(<got10k>/train, <got10k>/val or <got10k>/test)")
        listed = read_name_list(list_file)
        self.list_file = list_file
        self.index_file: Path | None = None
        if split_file is not None:
            names = read_split_file(Path(split_file), split_file_key(config_key))
        elif split is not None:
            if split not in INDEX_FILES:
                key = config_key.rsplit(".", 1)[0] + ".split"
                raise ValueError(f"unknown GOT-10k split '{split}' at {key}: use one of {sorted(INDEX_FILES)}, "
                                 "null (every sequence of list.txt) or a split_file of names")
            self.index_file = data_specs_dir() / INDEX_FILES[split]
            if not self.index_file.is_file():
                raise DatasetRootError(f"GOT-10k index file '{self.index_file}' does not exist: "
                                       "set DISTILTRACK_DATA_SPECS to the data_specs folder")
            names = read_index_split(self.index_file, listed, list_file)
        else:
            names = listed
        missing = [n for n in names if not (root_path / n).is_dir()]
        if missing:
            raise DatasetRootError(f"GOT-10k sequence '{missing[0]}' ({len(missing)} missing) is not under "
                                   f"'{root_path}': set {config_key} to the folder holding the sequences")
        super().__init__(root_path, split, None if split_file is None else Path(split_file), name, names)

    def list_files(self) -> list[Path]:
        return [self.list_file, *([self.index_file] if self.index_file else []), *super().list_files()]

    def sequence_dir(self, i: int) -> Path:
        return self.root / self.names[i]

    def frame_path(self, i: int, frame_id: int) -> Path:
        return self.sequence_dir(i) / FRAME_FILE.format(frame_id + 1)

    def annotation_files(self, i: int) -> list[Path]:
        seq_dir = self.sequence_dir(i)
        return [seq_dir / GT_FILE, seq_dir / ABSENCE_FILE, seq_dir / COVER_FILE, seq_dir / META_FILE]

    def frame_size(self, i: int) -> tuple[int, int] | None:
        """``resolution: (W, H)`` of meta_info.ini (the frames need not be present), else the first frame's header."""
        meta_file = self.sequence_dir(i) / META_FILE
        value = read_key_values(meta_file).get("resolution") if meta_file.is_file() else None
        if value is None:
            return super().frame_size(i)
        width, height = ast.literal_eval(value)
        return int(width), int(height)

    def parse_sequence(self, i: int) -> ParsedSequence:
        gt_file, absence_file, cover_file, meta_file = self.annotation_files(i)
        boxes = read_boxes(gt_file)
        if len(boxes) == 1:  # test set: first box only, the frame count comes from the images
            boxes = first_frame_only(boxes, count_images(self.sequence_dir(i)))
        length = len(boxes)
        hidden = np.zeros(length, bool)
        notes = []
        for label_file, absent in ((absence_file, lambda v: v != 0), (cover_file, lambda v: v == 0)):
            if not label_file.is_file():  # the test set has no labels
                continue
            values = read_flags(label_file)
            if values.size != length:
                notes.append(f"'{label_file}' has {values.size} labels for {length} frames")
            hidden |= fit_flags(absent(values).astype(np.int64), length)
        valid, visible = visibility(boxes, hidden)
        object_class = read_key_values(meta_file).get("object_class") if meta_file.is_file() else None
        note = "; ".join(notes) + (": frames without a label count as absent" if notes else "")
        return ParsedSequence(SequenceInfo(boxes, valid, visible, ~hidden), object_class, note)
