"""TrackingNet reader (spec tracking_ecosystem §1.3, §1.6).

Layout: ``<root>/TRAIN_<i>/{anno/<seq>.txt, frames/<seq>/<k>.jpg}`` for chunks 0..11 and ``TEST/``
alike; frames are 0-based and NOT zero-padded; the TEST annotations hold only the first box.
No absence flags: ``valid = visible = w>0 & h>0``. Classes from ``trackingnet_classmap.txt``
(unknown names -> ``Unknown``). ``split`` is a comma list of chunk ids (``"0,1,2,3"``), ``TEST``,
or None for every ``TRAIN_<i>`` folder present; sequences are the sorted annotation files of the
chosen chunks, optionally filtered by a ``split_file`` of names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.readers.annotation_files import read_annotation_text, read_boxes
from datamodules.readers.base import (
    AnnotationIndex,
    DatasetRootError,
    ParsedSequence,
    SequenceFolderReader,
    SequenceInfo,
    count_images,
    first_frame_only,
    require_root,
    visibility,
)
from datamodules.readers.lasot import data_specs_dir, read_split_file, split_file_key

NUM_TRAIN_CHUNKS = 12
TEST_CHUNK = "TEST"
CLASSMAP_FILE = "trackingnet_classmap.txt"
UNKNOWN_CLASS = "Unknown"


def chunk_folders(split: str | None, root: Path, split_key: str) -> list[str]:
    """``TRAIN_<i>`` / ``TEST`` folder names selected by ``split``."""
    if split is None:
        chunks = [f"TRAIN_{i}" for i in range(NUM_TRAIN_CHUNKS) if (root / f"TRAIN_{i}").is_dir()]
        if not chunks:
            raise DatasetRootError(f"no TRAIN_<i> folder under '{root}': set the root to the TrackingNet folder")
        return chunks
    chunks = []
    for part in str(split).replace(" ", "").split(","):
        if part.upper() == TEST_CHUNK:
            chunks.append(TEST_CHUNK)
        elif part.isdigit() and int(part) < NUM_TRAIN_CHUNKS:
            chunks.append(f"TRAIN_{int(part)}")
        else:
            raise ValueError(f"bad TrackingNet split '{split}' at {split_key}: use comma-separated chunk ids "
                             f"0..{NUM_TRAIN_CHUNKS - 1} (e.g. \"0,1,2,3\"), TEST, or null for every chunk")
    return chunks


class TrackingNetReader(SequenceFolderReader):
    """Sequences of some TrackingNet chunks."""

    type_name = "trackingnet"

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        split_file: str | Path | None = None,
        config_key: str = "data.init_args.datasets[0].root",
        name: str = "trackingnet",
    ) -> None:
        root_path = require_root(root, config_key)
        chunks = chunk_folders(split, root_path, config_key.rsplit(".", 1)[0] + ".split")
        chunk_of: list[str] = []
        names: list[str] = []
        for chunk in chunks:
            anno_dir = root_path / chunk / "anno"
            if not anno_dir.is_dir():
                raise DatasetRootError(f"TrackingNet chunk folder '{anno_dir}' does not exist: set {config_key} "
                                       "to the folder holding TRAIN_<i>/ and TEST/, or drop the chunk from the split")
            found = sorted(p.name[:-4] for p in anno_dir.iterdir() if p.name.endswith(".txt"))
            names += found
            chunk_of += [chunk] * len(found)
        if split_file is not None:
            wanted = read_split_file(Path(split_file), split_file_key(config_key))
            position = {n: k for k, n in enumerate(names)}
            missing = [n for n in wanted if n not in position]
            if missing:
                raise DatasetRootError(f"TrackingNet sequence '{missing[0]}' from '{split_file}' is not in the "
                                       f"chunks {chunks} under '{root_path}': check the split and root")
            chunk_of = [chunk_of[position[n]] for n in wanted]
            names = wanted
        self.chunks = chunk_of
        super().__init__(root_path, split, None if split_file is None else Path(split_file), name, names)

    def list_files(self) -> list[Path]:
        return [data_specs_dir() / CLASSMAP_FILE, *super().list_files()]

    def frame_path(self, i: int, frame_id: int) -> Path:
        return self.root / self.chunks[i] / "frames" / self.names[i] / f"{frame_id}.jpg"

    def annotation_files(self, i: int) -> list[Path]:
        return [self.root / self.chunks[i] / "anno" / f"{self.names[i]}.txt"]

    def parse_sequence(self, i: int) -> ParsedSequence:
        boxes = read_boxes(self.annotation_files(i)[0])
        if len(boxes) == 1:  # TEST: first box only, the frame count comes from the images
            boxes = first_frame_only(boxes, count_images(self.frame_path(i, 0).parent))
        valid, visible = visibility(boxes)
        return ParsedSequence(SequenceInfo(boxes, valid, visible))

    def build_index(self) -> AnnotationIndex:
        index = super().build_index()
        classmap = _read_classmap(data_specs_dir() / CLASSMAP_FILE)
        classes = [classmap.get(n, UNKNOWN_CLASS) for n in self.names]
        index.class_names, ids = np.unique(np.array(classes, dtype=str), return_inverse=True)
        index.class_ids = ids.astype(np.int32).reshape(len(self.names))
        return index


def _read_classmap(path: Path) -> dict[str, str]:
    """``name<TAB>class`` rows; an absent map leaves every class ``Unknown``."""
    if not path.is_file():
        return {}
    rows = (line.split("\t") for line in read_annotation_text(path).splitlines())
    return {row[0].strip(): row[1].strip() for row in rows if len(row) >= 2}
