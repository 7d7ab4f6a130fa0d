"""LaSOT reader (spec tracking_ecosystem §1.1, §1.6); SynthTrack is written in the same layout.

Layout: ``<root>/<class>/<class>-<k>/{img/%08d.jpg, groundtruth.txt, full_occlusion.txt,
out_of_view.txt}``. Frame count = number of GT lines; ``valid = w>0 & h>0``;
``visible = valid & !full_occlusion & !out_of_view`` (the GT box of an absent frame is not reliable).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from datamodules.readers.base import DatasetRootError, SequenceInfo, SequenceReader, require_root

GT_FILE = "groundtruth.txt"
FULL_OCCLUSION_FILE = "full_occlusion.txt"
OUT_OF_VIEW_FILE = "out_of_view.txt"
IMAGE_DIR = "img"


def data_specs_dir() -> Path:
    """Folder of the official split lists: $DISTILTRACK_DATA_SPECS, else <project>/../shared/data_specs."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data_specs"
    return Path(os.environ.get("DISTILTRACK_DATA_SPECS", default))


def sequence_class_name(sequence: str) -> str:
    """LaSOT class = the sequence name before its last '-' (``airplane-13`` -> ``airplane``)."""
    return sequence.rsplit("-", 1)[0]


def read_split_file(path: Path, config_key: str) -> list[str]:
    if not path.is_file():
        raise DatasetRootError(f"split file '{path}' does not exist: set {config_key} to an existing split list")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def parse_number_file(path: Path, dtype: type = np.float64) -> np.ndarray:
    """All numbers of a comma/whitespace separated text file, flattened (fast: no per-line parsing)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read annotation file '{path}': {exc.strerror}") from None
    try:
        return np.array(text.replace(",", " ").split(), dtype=np.float64).astype(dtype, copy=False)
    except ValueError:
        raise ValueError(f"annotation file '{path}' holds a non-numeric entry") from None


def fit_flags(flags: np.ndarray, length: int) -> np.ndarray:
    """Flags resized to the GT length; frames lacking a flag count as absent (never sampled)."""
    out = np.ones(length, dtype=bool)
    n = min(length, flags.size)
    out[:n] = flags[:n] != 0
    return out


class LasotReader(SequenceReader):
    """LaSOT-layout dataset restricted to one split.

    ``split_file`` (one sequence name per line) wins; otherwise ``split`` 'train'/'test' selects the
    official protocol-II lists in data_specs; ``split=None`` takes every sequence folder under root.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        split_file: str | Path | None = None,
        config_key: str = "data.init_args.datasets[0].root",
        name: str = "lasot",
    ) -> None:
        super().__init__()
        self.name = name
        self.root = require_root(root, config_key)
        self.split = split
        self._sequences = self._resolve_sequences(split, split_file, config_key)

    def _resolve_sequences(self, split: str | None, split_file: str | Path | None, config_key: str) -> list[str]:
        if split_file is None and split is None:
            return sorted(p.parent.name for p in self.root.glob(f"*/*/{GT_FILE}"))
        if split_file is None:
            split_file = data_specs_dir() / f"lasot_{split}_split.txt"
        names = read_split_file(Path(split_file), config_key.rsplit(".", 1)[0] + ".split_file")
        for seq in names:
            if not (self.root / sequence_class_name(seq) / seq).is_dir():
                raise DatasetRootError(
                    f"sequence '{seq}' listed in {split_file} is missing under '{self.root}': "
                    f"set {config_key} to the folder holding the class folders"
                )
        return names

    @property
    def num_sequences(self) -> int:
        return len(self._sequences)

    def sequence_name(self, i: int) -> str:
        return self._sequences[i]

    def sequence_class(self, i: int) -> str:
        return sequence_class_name(self._sequences[i])

    def sequence_dir(self, i: int) -> Path:
        seq = self._sequences[i]
        return self.root / sequence_class_name(seq) / seq

    def frame_path(self, i: int, frame_id: int) -> Path:
        return self.sequence_dir(i) / IMAGE_DIR / f"{frame_id + 1:08d}.jpg"

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        seq_dir = self.sequence_dir(i)
        values = parse_number_file(seq_dir / GT_FILE)
        if values.size % 4:
            raise ValueError(f"'{seq_dir / GT_FILE}' must hold 4 numbers (x,y,w,h) per line")
        boxes = values.reshape(-1, 4)
        length = boxes.shape[0]
        occluded = fit_flags(parse_number_file(seq_dir / FULL_OCCLUSION_FILE, np.int64), length)
        out_of_view = fit_flags(parse_number_file(seq_dir / OUT_OF_VIEW_FILE, np.int64), length)
        valid = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        return SequenceInfo(boxes=boxes, valid=valid, visible=valid & ~occluded & ~out_of_view)
