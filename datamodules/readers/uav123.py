"""UAV123 reader (evaluation benchmark; scored with pytracking's UAV rules).

Layout: ``<root>/anno/UAV123/<seq>.txt`` (``x,y,w,h`` per line, ``NaN`` lines = target absent) and
``<root>/data_seq/UAV123/<folder>/%06d.jpg`` (1-based). ``visible = all four numbers finite &
w>0 & h>0``. ``split`` null or ``test`` takes every annotation file (sorted); a ``split_file``
lists sequence names.

Limitation: UAV123's sub-sequences (``bird1_1``, ``bird1_2``, ...) share one image folder
(``bird1``), and their first and last frame numbers are not derivable from the files (the
official list lives in the toolkits' configuration). Pass them as the ``frame_ranges`` option, a
YAML/JSON file ``{seq: {folder, start, end}}`` (1-based, inclusive frame numbers). Without an
entry, ``<seq>`` reads folder ``<seq>``, frames 1..N (N = annotation lines), which is right for
whole sequences only; a sub-sequence without an entry fails at start-up on its missing folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from datamodules.readers.annotation_files import AnnotationError, read_boxes
from datamodules.readers.base import (
    DatasetRootError,
    ParsedSequence,
    SequenceFolderReader,
    SequenceInfo,
    require_root,
    visibility,
)
from datamodules.readers.lasot import read_split_file, split_file_key
from trackers.errors import BadFileError, MissingFileError, SetupError

ANNO_DIR = Path("anno") / "UAV123"
DATA_DIR = Path("data_seq") / "UAV123"
WHOLE_SET_SPLITS = (None, "test")


@dataclass(frozen=True)
class FrameRange:
    """Where a sequence's frames are: ``<folder>/%06d.jpg`` for ``start..end`` (1-based, inclusive)."""

    folder: str
    start: int = 1
    end: int | None = None  # None: start + annotation lines - 1


def read_frame_ranges(path: str | Path, config_key: str) -> dict[str, FrameRange]:
    """``{seq: {folder, start, end}}`` from a YAML or JSON file; a bad entry names the file and sequence."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"frame ranges file '{path}' does not exist: set {config_key} to an existing "
                               "YAML/JSON file {seq: {folder, start, end}} or drop the option")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BadFileError(f"frame ranges file '{path}' is not YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadFileError(f"frame ranges file '{path}' must map sequence names to {{folder, start, end}}")
    ranges = {}
    for seq, entry in data.items():
        ok = isinstance(entry, dict) and set(entry) <= {"folder", "start", "end"} and "folder" in entry
        start, end = (entry.get("start", 1), entry.get("end")) if ok else (None, None)
        ok = ok and isinstance(start, int) and start >= 1 and (end is None or (isinstance(end, int) and end >= start))
        if not ok:
            raise BadFileError(f"frame ranges file '{path}', sequence '{seq}': expected {{folder: <name>, "
                               f"start: <first frame, >= 1>, end: <last frame, >= start>}}, got {entry!r}")
        ranges[str(seq)] = FrameRange(str(entry["folder"]), start, end)
    return ranges


class Uav123Reader(SequenceFolderReader):
    """UAV123 sequences, each mapped to its image folder and frame range."""

    type_name = "uav123"

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        split_file: str | Path | None = None,
        config_key: str = "data.init_args.datasets[0].root",
        name: str = "uav123",
        frame_ranges: str | Path | None = None,
    ) -> None:
        root_path = require_root(root, config_key)
        spec_key = config_key.rsplit(".", 1)[0]
        if split not in WHOLE_SET_SPLITS and split_file is None:
            raise SetupError(f"UAV123 has no split '{split}' at {spec_key}.split: use null or test (every "
                             "sequence) or a split_file of sequence names")
        anno_dir = root_path / ANNO_DIR
        if not anno_dir.is_dir():
            raise DatasetRootError(f"'{anno_dir}' does not exist: set {config_key} to the UAV123 folder "
                                   f"holding {ANNO_DIR} and {DATA_DIR}")
        if split_file is not None:
            names = read_split_file(Path(split_file), split_file_key(config_key))
            missing = [n for n in names if not (anno_dir / f"{n}.txt").is_file()]
            if missing:
                raise DatasetRootError(f"UAV123 sequence '{missing[0]}' ({len(missing)} missing) from "
                                       f"'{split_file}' has no annotation file in '{anno_dir}'")
        else:
            names = sorted(p.stem for p in anno_dir.glob("*.txt"))
        self.frame_ranges_file = None if frame_ranges is None else Path(frame_ranges)
        given = {} if frame_ranges is None else read_frame_ranges(frame_ranges, f"{spec_key}.options.frame_ranges")
        self.ranges = [given.get(n, FrameRange(n)) for n in names]
        for seq, frame_range in zip(names, self.ranges, strict=True):
            if not (root_path / DATA_DIR / frame_range.folder).is_dir():
                hint = "" if seq in given else (f"; a sub-sequence sharing another folder needs an entry in "
                                                f"{spec_key}.options.frame_ranges")
                raise DatasetRootError(f"image folder '{root_path / DATA_DIR / frame_range.folder}' of UAV123 "
                                       f"sequence '{seq}' does not exist{hint}")
        super().__init__(root_path, split, None if split_file is None else Path(split_file), name, names)

    def list_files(self) -> list[Path]:
        return [*super().list_files(), *([self.frame_ranges_file] if self.frame_ranges_file else [])]

    def frame_path(self, i: int, frame_id: int) -> Path:
        frame_range = self.ranges[i]
        return self.root / DATA_DIR / frame_range.folder / f"{frame_range.start + frame_id:06d}.jpg"

    def annotation_files(self, i: int) -> list[Path]:
        return [self.root / ANNO_DIR / f"{self.names[i]}.txt"]

    def parse_sequence(self, i: int) -> ParsedSequence:
        anno_file = self.annotation_files(i)[0]
        boxes = read_boxes(anno_file)
        frame_range = self.ranges[i]
        if frame_range.end is not None and frame_range.end - frame_range.start + 1 != len(boxes):
            raise AnnotationError(f"'{anno_file}' has {len(boxes)} lines but its frame range "
                                  f"{frame_range.start}..{frame_range.end} in '{self.frame_ranges_file}' "
                                  f"covers {frame_range.end - frame_range.start + 1} frames")
        valid, visible = visibility(boxes, hidden=~np.isfinite(boxes).all(1))
        return ParsedSequence(SequenceInfo(boxes, valid, visible))
