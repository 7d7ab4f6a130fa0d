"""Dataset readers and the one factory that maps a config ``type`` to a reader."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

from datamodules.readers.base import (
    DatasetRootError,
    FrameReadError,
    SequenceInfo,
    SequenceReader,
    read_rgb,
    require_root,
)
from datamodules.readers.lasot import LasotReader

__all__ = [
    "DatasetRootError",
    "FrameReadError",
    "LasotReader",
    "SequenceInfo",
    "SequenceReader",
    "READER_TYPES",
    "build_reader",
    "read_rgb",
    "require_root",
]


def _lasot(root: str | Path, split: str | None, split_file: str | Path | None, config_key: str) -> SequenceReader:
    return LasotReader(root, split=split, split_file=split_file, config_key=config_key, name="lasot")


def _synthtrack(root: str | Path, split: str | None, split_file: str | Path | None, config_key: str) -> SequenceReader:
    from datamodules.synthtrack import split_file_path

    root_path = require_root(root, config_key)
    if split_file is None and split is not None:
        split_file = split_file_path(root_path, split)
    return LasotReader(root_path, split=split, split_file=split_file, config_key=config_key, name="synthtrack")


READER_TYPES: dict[str, Callable[..., SequenceReader]] = {"lasot": _lasot, "synthtrack": _synthtrack}


def build_reader(
    type: str,
    root: str | Path,
    split: str | None = "train",
    split_file: str | Path | None = None,
    config_key: str = "data.init_args.datasets[0].root",
) -> SequenceReader:
    """Reader for a dataset ``type`` (lasot | synthtrack); a missing root fails naming ``config_key``."""
    factory = READER_TYPES.get(type)
    if factory is None:
        key = config_key.rsplit(".", 1)[0] + ".type"
        raise ValueError(f"unknown dataset type '{type}' at {key}: use one of {sorted(READER_TYPES)}")
    return factory(root, split, split_file, config_key)
