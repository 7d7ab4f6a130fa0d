"""LaSOT-ext reader: the 150 extension sequences (15 new classes), in the LaSOT layout.

The extension has no train/test protocol of its own (it is a test set), so ``split`` null or
``test`` takes every sequence folder under the root (sorted) and a ``split_file`` chooses a subset.
Parsing, visibility and frame paths are the LaSOT reader's.
"""

from __future__ import annotations

from pathlib import Path

from datamodules.readers.base import DatasetRootError
from datamodules.readers.lasot import GT_FILE, LasotReader
from trackers.errors import SetupError

WHOLE_SET_SPLITS = (None, "test")


class LasotExtensionReader(LasotReader):
    """Every LaSOT-layout sequence under the root, or those of a ``split_file``."""

    type_name = "lasot_extension"

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        split_file: str | Path | None = None,
        config_key: str = "data.init_args.datasets[0].root",
        name: str = "lasot_extension",
    ) -> None:
        if split not in WHOLE_SET_SPLITS and split_file is None:
            key = config_key.rsplit(".", 1)[0] + ".split"
            raise SetupError(f"LaSOT-ext has no split '{split}' at {key}: use null or test (every sequence "
                             "under the root) or a split_file of sequence names")
        super().__init__(root, split=None, split_file=split_file, config_key=config_key, name=name)
        if not self.names:
            raise DatasetRootError(f"no <class>/<class>-<k>/{GT_FILE} under '{self.root}': set {config_key} "
                                   "to the LaSOT-ext folder holding the class folders")
