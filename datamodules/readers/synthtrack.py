"""SynthTrack's reader type: the LaSOT layout with SynthTrack's own train/test lists instead of LaSOT's.

The split-file names live here, with the reader; the generator (``datamodules.synthtrack``) writes
them through ``split_file_path``.
"""

from __future__ import annotations

from pathlib import Path

from datamodules.readers.base import SequenceReader, require_root
from datamodules.readers.lasot import LasotReader

SPLIT_FILES = {"train": "train_split.txt", "test": "test_split.txt"}


def split_file_path(root: str | Path, split: str) -> Path:
    """The split list SynthTrack writes for ``split`` ('train' or 'test')."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown SynthTrack split '{split}': use one of {sorted(SPLIT_FILES)}")
    return Path(root) / SPLIT_FILES[split]


def synthtrack_reader(root: str | Path, split: str | None = "train", split_file: str | Path | None = None,
                      config_key: str = "", name: str = "synthtrack") -> SequenceReader:
    """SynthTrack in the LaSOT layout; its own train/test lists replace LaSOT's."""
    root_path = require_root(root, config_key)
    if split_file is None and split is not None:
        split_file = split_file_path(root_path, split)
    return LasotReader(root_path, split=split, split_file=split_file, config_key=config_key, name=name)
