"""LaSOT reader (spec tracking_ecosystem §1.1, §1.6); SynthTrack is written in the same layout.

Layout: ``<root>/<class>/<class>-<k>/{img/%08d.jpg, groundtruth.txt, full_occlusion.txt,
out_of_view.txt}``. Frame count = number of GT lines; ``valid = w>0 & h>0``;
``visible = valid & !full_occlusion & !out_of_view`` (the GT box of an absent frame is not reliable).
"""

from __future__ import annotations

import os
from pathlib import Path

from datamodules.readers.annotation_files import read_boxes, read_flags, read_name_list
from datamodules.readers.base import (
    DatasetRootError,
    ParsedSequence,
    SequenceFolderReader,
    SequenceInfo,
    fit_flags,
    require_root,
    visibility,
)

GT_FILE = "groundtruth.txt"
FULL_OCCLUSION_FILE = "full_occlusion.txt"
OUT_OF_VIEW_FILE = "out_of_view.txt"
IMAGE_DIR = "img"
FRAME_FILE = "{:08d}.jpg"  # frame k (1-based); GOT-10k names its frames the same way
LANGUAGE_FILE = "nlp.txt"  # the sentence describing the target (written by SynthTrack, not read)


def data_specs_dir() -> Path:
    """Folder of the official split lists: $DISTILTRACK_DATA_SPECS, else <project>/../shared/data_specs."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data_specs"
    return Path(os.environ.get("DISTILTRACK_DATA_SPECS", default))


def sequence_class_name(sequence: str) -> str:
    """LaSOT class = the sequence name before its last '-' (``airplane-13`` -> ``airplane``)."""
    return sequence.rsplit("-", 1)[0]


def read_split_file(path: Path, config_key: str) -> list[str]:
    """Names of a split list; a missing list fails naming the config key that chose it."""
    if not Path(path).is_file():
        raise DatasetRootError(f"split file '{path}' does not exist: set {config_key} to an existing split list")
    return read_name_list(Path(path))


def split_file_key(config_key: str) -> str:
    """``data.init_args.datasets[0].root`` -> ``data.init_args.datasets[0].split_file``."""
    return config_key.rsplit(".", 1)[0] + ".split_file"


class LasotReader(SequenceFolderReader):
    """LaSOT-layout dataset restricted to one split.

    ``split_file`` (one sequence name per line) wins; otherwise ``split`` 'train'/'test' selects the
    official protocol-II lists in data_specs; ``split=None`` takes every sequence folder under root.
    """

    type_name = "lasot"

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        split_file: str | Path | None = None,
        config_key: str = "data.init_args.datasets[0].root",
        name: str = "lasot",
    ) -> None:
        root_path = require_root(root, config_key)
        if split_file is None and split is not None:
            split_file = data_specs_dir() / f"lasot_{split}_split.txt"
        names = self._resolve_sequences(root_path, split_file, config_key)
        super().__init__(root_path, split, None if split_file is None else Path(split_file), name, names)

    @staticmethod
    def _resolve_sequences(root: Path, split_file: str | Path | None, config_key: str) -> list[str]:
        if split_file is None:
            return sorted(p.parent.name for p in root.glob(f"*/*/{GT_FILE}"))
        names = read_split_file(Path(split_file), split_file_key(config_key))
        for seq in names:
            if not (root / sequence_class_name(seq) / seq).is_dir():
                raise DatasetRootError(
                    f"sequence '{seq}' listed in {split_file} is missing under '{root}': "
                    f"set {config_key} to the folder holding the class folders"
                )
        return names

    def sequence_dir(self, i: int) -> Path:
        seq = self.names[i]
        return self.root / sequence_class_name(seq) / seq

    def sequence_class(self, i: int) -> str:
        return sequence_class_name(self.names[i])

    def frame_path(self, i: int, frame_id: int) -> Path:
        return self.sequence_dir(i) / IMAGE_DIR / FRAME_FILE.format(frame_id + 1)

    def annotation_files(self, i: int) -> list[Path]:
        seq_dir = self.sequence_dir(i)
        return [seq_dir / GT_FILE, seq_dir / FULL_OCCLUSION_FILE, seq_dir / OUT_OF_VIEW_FILE]

    def parse_sequence(self, i: int) -> ParsedSequence:
        gt_file, occlusion_file, out_of_view_file = self.annotation_files(i)
        boxes = read_boxes(gt_file)
        occlusion, out_of_view = read_flags(occlusion_file), read_flags(out_of_view_file)
        length = len(boxes)
        note = ""
        if occlusion.size != length or out_of_view.size != length:
            note = (f"{length} lines in '{gt_file}' but {occlusion.size} / {out_of_view.size} occlusion / "
                    "out-of-view flags: frames without a flag count as absent")
        hidden = fit_flags(occlusion, length) | fit_flags(out_of_view, length)
        valid, visible = visibility(boxes, hidden)
        return ParsedSequence(SequenceInfo(boxes, valid, visible, ~hidden), sequence_class_name(self.names[i]), note)
