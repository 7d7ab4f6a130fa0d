"""Dataset readers and the one factory that maps a config ``type`` to a reader."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datamodules.readers.annotation_files import AnnotationError
from datamodules.readers.base import (
    AnnotationIndex,
    DatasetRootError,
    FrameReadError,
    SequenceInfo,
    SequenceReader,
    require_root,
)
from datamodules.readers.coco import CocoReader
from datamodules.readers.got10k import Got10kReader
from datamodules.readers.lasot import LasotReader
from datamodules.readers.lasot_extension import LasotExtensionReader
from datamodules.readers.synthtrack import synthtrack_reader
from datamodules.readers.trackingnet import TrackingNetReader
from datamodules.readers.uav123 import Uav123Reader

__all__ = [
    "AnnotationError",
    "AnnotationIndex",
    "CocoReader",
    "DatasetRootError",
    "FrameReadError",
    "Got10kReader",
    "LasotExtensionReader",
    "LasotReader",
    "READER_TYPES",
    "SequenceInfo",
    "SequenceReader",
    "TrackingNetReader",
    "Uav123Reader",
    "build_reader",
    "require_root",
]


READER_TYPES: dict[str, Callable[..., SequenceReader]] = {
    "lasot": LasotReader,
    "synthtrack": synthtrack_reader,
    "got10k": Got10kReader,
    "trackingnet": TrackingNetReader,
    "coco": CocoReader,
    "lasot_extension": LasotExtensionReader,
    "uav123": Uav123Reader,
}
_COMMON_ARGS = ("root", "split", "split_file", "config_key", "name")


def build_reader(
    type: str,
    root: str | Path,
    split: str | None = "train",
    split_file: str | Path | None = None,
    config_key: str = "data.init_args.datasets[0].root",
    options: dict[str, Any] | None = None,
) -> SequenceReader:
    """Reader for a dataset ``type`` (see READER_TYPES); a missing root fails naming ``config_key``.

    ``options`` are the reader's own settings (e.g. ``{min_size: 50}`` for coco).
    """
    spec_key = config_key.rsplit(".", 1)[0]
    factory = READER_TYPES.get(type)
    if factory is None:
        raise ValueError(f"unknown dataset type '{type}' at {spec_key}.type: use one of {sorted(READER_TYPES)}")
    options = dict(options or {})
    allowed = [p for p in inspect.signature(factory).parameters if p not in _COMMON_ARGS]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {type} options {unknown} at {spec_key}.options: "
                         f"{'use one of ' + str(allowed) if allowed else 'this reader takes none'}")
    return factory(root, split=split, split_file=split_file, config_key=config_key, **options)
